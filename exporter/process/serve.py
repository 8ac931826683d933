"""Serving: the web server and the polling together, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from exporter import __version__
from exporter.config.loader import Config
from exporter.process import early
from exporter.process.daemon import Exporter
from exporter.process.settings import Settings, split_address
from exporter.web.app import create_app
from exporter.web.server import ConnectionGuard, GuardedSite, raise_open_files_limit
from exporter.web.webconfig import LiveWebConfig

SHUTDOWN_TIMEOUT = 4.0


def with_polling(app: web.Application, exporter: Exporter, config: Config) -> None:
    """Run the exporter's polling for as long as `app` runs (its cleanup context)."""

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await exporter.start(config)
        yield
        await exporter.stop()

    app.cleanup_ctx.append(lifecycle)


async def serve(
    settings: Settings, exporter: Exporter, config: Config, web_config: LiveWebConfig | None
) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads."""
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

    soft, raised = raise_open_files_limit()
    if raised != soft:
        log.debug("raised the open files limit", soft_limit=raised, was=soft)
    app = create_app(
        exporter,
        telemetry_path=settings.telemetry_path,
        web_config=web_config,
        enable_lifecycle=settings.enable_lifecycle,
    )
    with_polling(app, exporter, config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    host, port = split_address(settings.listen_address)
    guard = ConnectionGuard(settings.max_connections, settings.read_timeout, log)
    site = GuardedSite(
        runner, host, port, guard=guard, ssl_context=web_config.server_ssl_context() if web_config else None
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
    # what start-up allocated stays for good: the collector need not scan it on every pass,
    # which keeps its pauses (and so the scrapes' worst times) short
    gc.freeze()
    if hup_before_start or early.take_hup():
        on_hup()
    log.info("started", version=__version__, sources=len(config.sources))
    await stop.wait()
    log.info("shutting down")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)
    pending = list(reloads)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    try:
        await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT)
    except TimeoutError:
        log.error("shutdown took too long; exiting anyway")
    log.info("stopped")
    return 0
