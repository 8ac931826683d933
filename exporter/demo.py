"""`--demo`: the built-in simulator on loopback and a generated configuration polling it."""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from exporter.cli import Settings


async def run_demo(settings: Settings, log: FilteringBoundLogger) -> int:
    log.error("the demo needs the simulator, which is not built yet")
    return 1
