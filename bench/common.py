"""What the benchmarks share: a simulator on loopback, runners on its clock, the machine."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import web

import exporter.providers  # noqa: F401 - registers the vendors
from exporter.config.loader import load_config
from exporter.engine.runner import SourceMemory, SourceRunner
from exporter.engine.scheduler import PollScheduler
from exporter.model.clock import Clock
from exporter.process import logsetup
from exporter.simulator import Simulator, create_app, demo_config
from exporter.store.store import Store


def machine() -> str:
    """One line about the machine the numbers come from."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {system}"


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def quiet_logs() -> None:
    logsetup.setup("error", "logfmt")


@dataclass
class SimServer:
    sim: Simulator
    runner: web.AppRunner
    root: str

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_simulator(sim: Simulator) -> SimServer:
    runner = web.AppRunner(create_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return SimServer(sim, runner, f"http://{host}:{port}")


def demo_source(root: str, provider: str, **overrides: Any) -> dict[str, Any]:
    (source,) = [s for s in demo_config(root)["sources"] if s["provider"] == provider]
    return {**source, **overrides}


@dataclass
class Engine:
    """Runners of a configuration, writing to a Store, on `clock`."""

    clock: Clock
    store: Store = field(default_factory=Store)
    runners: dict[str, SourceRunner] = field(default_factory=dict)

    @classmethod
    def of(cls, sources: list[dict[str, Any]], clock: Clock, **global_: str) -> Engine:
        doc = {
            "global": {"interval": "10s", "timeout": "10s", "stale_after": "5m", **global_},
            "sources": sources,
        }
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(doc, f)
        try:
            config = load_config(f.name)
        finally:
            os.unlink(f.name)
        engine = cls(clock)
        memories = {s.name: SourceMemory.carried(s, None) for s in config.sources}
        engine.store.keep_sources((s.name, s.provider, memories[s.name].stats) for s in config.sources)
        log = structlog.get_logger()
        for source in config.sources:
            engine.runners[source.name] = SourceRunner(
                config=config,
                source=source,
                sink=engine.store,
                memory=memories[source.name],
                clock=clock,
                log=log,
            )
        return engine

    async def run(self, seconds: float) -> None:
        """The daemon's loops for `seconds` on the engine's clock."""
        scheduler = PollScheduler(self.clock)
        for runner in self.runners.values():
            scheduler.add(runner)
        end = self.clock.monotonic() + seconds
        try:
            await until(lambda: self.clock.monotonic() >= end)
        finally:
            await scheduler.shutdown()


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop (and a fake clock) run until `condition` holds."""
    while True:
        if condition():
            return
        await asyncio.sleep(0.001)


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
