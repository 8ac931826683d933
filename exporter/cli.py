"""Command line: flags -> Settings, exit codes, signals.

Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 2 invalid flags or configuration (one
readable message, no traceback), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from structlog.typing import FilteringBoundLogger

from exporter import __version__, early
from exporter import logging as exlog
from exporter.clock import SYSTEM_CLOCK
from exporter.config import Config, ConfigError, describe
from exporter.daemon import Exporter
from exporter.webconfig import LiveWebConfig, load_web_config

SHUTDOWN_TIMEOUT = 4.0


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
    p.add_argument("--log.level", dest="log_level", default="info", choices=list(exlog.LEVELS))
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


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    exlog.setup(settings.log_level, settings.log_format)
    log = exlog.get_logger()
    try:
        if settings.demo:
            return _run_demo(settings, log)
        return _run(settings, log)
    except ConfigError as e:
        print(exlog.REDACTOR.scrub(str(e)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except Exception as e:
        log.error("exporter failed", exc_type=type(e).__name__, reason=str(e))
        return 1


def _check(settings: Settings, exporter: Exporter) -> int:
    config = exporter.load(warn=False)  # describe() prints the warnings
    print(describe(config, plans(config)))
    if settings.web_config_file:
        load_web_config(settings.web_config_file)
        print(f"{settings.web_config_file}: web configuration is valid")
    return 0


def plans(config: Config) -> dict[str, tuple[float, float, int]]:
    """Configured interval, effective interval and requests per cycle of every source.

    Built with the same runners the daemon uses (they send nothing until scheduled), so
    `--config.check` prints exactly the plan the daemon would follow.
    """
    import logging

    import structlog

    from exporter.scheduler import SourceRunner, new_state
    from exporter.state import Store

    # the runners only plan here; their "poll interval changed" would be noise in a check
    quiet = structlog.wrap_logger(None, wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

    store = Store()
    states = [new_state(s, config.global_.stale_after, None) for s in config.sources]
    store.set_sources(states)
    out = {}
    for source, state in zip(config.sources, states, strict=True):
        runner = SourceRunner(
            config=config, source=source, store=store, state=state, clock=SYSTEM_CLOCK, log=quiet
        )
        out[source.name] = (
            runner.configured_interval,
            runner.interval,
            sum(runner.requests_per_cycle().values()),
        )
    return out


def _run(settings: Settings, log: FilteringBoundLogger) -> int:
    exporter = Exporter(settings.config_file, log=log)
    if settings.config_check:
        return _check(settings, exporter)
    config = exporter.load()
    web_config = LiveWebConfig(settings.web_config_file, log) if settings.web_config_file else None
    return asyncio.run(serve(settings, exporter, config, web_config))


def _run_demo(settings: Settings, log: FilteringBoundLogger) -> int:
    from exporter.demo import run_demo

    code: int = asyncio.run(run_demo(settings, log))
    return code


async def serve(
    settings: Settings, exporter: Exporter, config: Config, web_config: LiveWebConfig | None
) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads."""
    from exporter.web import create_app

    log = exporter.log
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[str | None]] = set()
    started = False
    hup_before_start = False

    def on_hup() -> None:
        nonlocal hup_before_start
        if not started:  # polling is starting: reload as soon as it runs
            hup_before_start = True
            return
        task = loop.create_task(exporter.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    # first thing, so that a SIGHUP or SIGTERM during start-up is never fatal
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)

    app = create_app(exporter, config=config, telemetry_path=settings.telemetry_path, web_config=web_config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    host, port = split_address(settings.listen_address)
    site = web.TCPSite(
        runner, host, port, ssl_context=web_config.server_ssl_context() if web_config else None
    )
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        log.error("cannot listen", address=settings.listen_address, reason=e.strerror or str(e))
        return 1
    addresses = [f"{a[0]}:{a[1]}" if len(a) == 2 else f"[{a[0]}]:{a[1]}" for a in runner.addresses]
    log.info(
        "listening",
        address=",".join(addresses),
        tls=web_config is not None and web_config.config.tls_server_config is not None,
    )
    started = True
    if hup_before_start or early.take_hup():
        on_hup()
    log.info("started", version=__version__, sources=len(config.sources))
    await stop.wait()
    log.info("shutting down")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)
    for t in list(reloads):
        t.cancel()
    try:
        await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT)
    except TimeoutError:
        log.error("shutdown took too long; exiting anyway")
    log.info("stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
