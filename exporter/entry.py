"""The `livestream-exporter` command: early signal handling first, then the CLI."""

from __future__ import annotations

from exporter import early


def main() -> int:
    early.install()
    from exporter.cli import main as cli_main

    return cli_main()
