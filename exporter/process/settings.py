"""Flags -> Settings (the Prometheus exporter conventions: `--config.file`, `--web.*`, `--log.*`)."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Sequence
from dataclasses import dataclass

from exporter import __version__
from exporter.process.logsetup import LEVELS


@dataclass(frozen=True)
class Settings:
    config_file: str = "config.yaml"
    config_check: bool = False
    listen_address: str = ":9733"
    telemetry_path: str = "/metrics"
    web_config_file: str | None = None
    log_level: str = "info"
    log_format: str = "logfmt"
    demo: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: Sequence[str] | None) -> Settings:
    p = _Parser(
        prog="livestream-exporter",
        description="Prometheus exporter for live-stream audience analytics.",
        allow_abbrev=False,
    )
    p.add_argument("--config.file", dest="config_file", default="config.yaml", help="YAML configuration file")
    p.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration, print what it would poll, exit",
    )
    p.add_argument("--web.listen-address", dest="listen_address", default=":9733", help="address to serve on")
    p.add_argument(
        "--web.telemetry-path", dest="telemetry_path", default="/metrics", help="path of the metrics"
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="exporter-toolkit web configuration (TLS, basic auth, headers)",
    )
    p.add_argument("--log.level", dest="log_level", default="info", choices=list(LEVELS))
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])
    p.add_argument("--demo", action="store_true", help="poll the built-in simulator of the five vendor APIs")
    p.add_argument(
        "--version",
        action="version",
        version=f"livestream-exporter, version {__version__} (python {platform.python_version()})",
    )
    a = p.parse_args(argv)
    if not a.telemetry_path.startswith("/") or a.telemetry_path in (
        "/",
        "/-/healthy",
        "/-/ready",
        "/-/reload",
    ):
        p.error(
            f"--web.telemetry-path {a.telemetry_path!r} must start with / and not clash with another page"
        )
    try:
        split_address(a.listen_address)
    except ValueError as e:
        p.error(str(e))
    return Settings(**vars(a))


def split_address(address: str) -> tuple[str | None, int]:
    """':9733' -> (None, 9733) (every interface); '[::1]:9733' -> ('::1', 9733)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--web.listen-address {address!r} must be host:port or :port")
    host = host.strip("[]")
    return (host or None), int(port)
