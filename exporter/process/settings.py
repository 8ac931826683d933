"""Flags -> Settings (the Prometheus exporter conventions: `--config.file`, `--web.*`, `--log.*`).

The defaults live here once: in `Settings`, which the parser reads them from.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from exporter import __version__
from exporter.model.durations import format_duration, parse_duration
from exporter.process.logsetup import LEVELS

#: where `--demo` listens unless told otherwise: loopback, as a demo should
DEMO_LISTEN_ADDRESS = "127.0.0.1:9733"


@dataclass(frozen=True)
class Settings:
    config_file: str = "config.yaml"
    config_check: bool = False
    listen_address: str = ":9733"
    telemetry_path: str = "/metrics"
    web_config_file: str | None = None
    enable_lifecycle: bool = False
    max_connections: int = 512
    read_timeout: float = 30.0
    log_level: str = "info"
    log_format: str = "logfmt"
    demo: bool = False
    cluster_redis_url: str | None = None


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Settings)}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0s")
    return seconds


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of at least 1")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> Settings:
    d = _DEFAULTS
    p = _Parser(
        prog="livestream-exporter",
        description="Prometheus exporter for live-stream audience analytics.",
        allow_abbrev=False,
    )
    p.add_argument(
        "--config.file",
        dest="config_file",
        metavar="FILE",
        default=d["config_file"],
        help=f"YAML configuration file (default: {d['config_file']})",
    )
    p.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration, print what it would poll, exit 0 (valid) or 2 (invalid)",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="ADDRESS",
        default=None,
        help=f"address to serve on (default: {d['listen_address']}; with --demo {DEMO_LISTEN_ADDRESS})",
    )
    p.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        metavar="PATH",
        default=d["telemetry_path"],
        help=f"path of the metrics (default: {d['telemetry_path']})",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        default=None,
        help="exporter-toolkit web configuration: TLS, basic auth, headers (default: none)",
    )
    p.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="serve POST /-/reload (off: it answers 403; SIGHUP always reloads)",
    )
    p.add_argument(
        "--web.max-connections",
        dest="max_connections",
        metavar="N",
        type=_positive,
        default=d["max_connections"],
        help=f"connections served at once; more are refused with 503 (default: {d['max_connections']})",
    )
    p.add_argument(
        "--web.read-timeout",
        dest="read_timeout",
        metavar="DURATION",
        type=_duration,
        default=d["read_timeout"],
        help="time a client has to send a whole request; idle keep-alive connections close "
        f"after it too (default: {format_duration(d['read_timeout'])})",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        default=d["log_level"],
        choices=list(LEVELS),
        help=f"(default: {d['log_level']})",
    )
    p.add_argument(
        "--log.format",
        dest="log_format",
        default=d["log_format"],
        choices=["logfmt", "json"],
        help=f"(default: {d['log_format']})",
    )
    p.add_argument(
        "--cluster.redis-url",
        dest="cluster_redis_url",
        metavar="URL",
        default=d["cluster_redis_url"],
        help="join the replicas sharing each source's budget through this Redis"
        " (redis://, rediss:// or unix://; the same as cluster.redis_url in the file, which it overrides)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="poll the built-in simulator of the five vendor APIs (no credentials needed)",
    )
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
    if a.demo and a.cluster_redis_url:
        p.error("--cluster.redis-url cannot be combined with --demo, which polls a simulator of its own")
    if a.listen_address is None:
        a.listen_address = DEMO_LISTEN_ADDRESS if a.demo else d["listen_address"]
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
