"""The `livestream-exporter` command: early signal handling first, then the CLI."""

from __future__ import annotations

from exporter.process import early


def main() -> int:
    early.install()
    # the heavy imports (aiohttp, pydantic) come after the early signal handlers
    from exporter.process.cli import main as cli_main  # noqa: PLC0415

    return cli_main()
