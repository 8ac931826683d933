"""The listening side under abuse: a cap on connections, a deadline for each request, and
a flood of idle connections that must not starve real scrapes or flood the log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from exporter.process import logsetup as exlog
from exporter.process.daemon import Exporter
from exporter.process.serve import with_polling
from exporter.web.app import create_app
from exporter.web.server import ConnectionGuard, GuardedSite
from tests.conftest import tv_source
from tests.exporter_process import run_exporter


@contextlib.asynccontextmanager
async def serving(
    config: Path, *, max_connections: int = 512, read_timeout: float = 30.0
) -> AsyncIterator[int]:
    exporter = Exporter(str(config), log=exlog.get_logger())
    app = create_app(exporter)
    with_polling(app, exporter, exporter.load())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    guard = ConnectionGuard(max_connections, read_timeout, exlog.get_logger())
    site = GuardedSite(runner, "127.0.0.1", 0, guard=guard)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing; TimeoutError if it kept the connection open."""
    return await asyncio.wait_for(reader.read(), seconds)


async def _get(port: int, path: str = "/-/healthy") -> int:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status


async def test_idle_connections_at_the_cap_make_room_for_a_scrape(
    vendor_url: str, write_config: Any, logs: list[str]
) -> None:
    """Five idle connections fill a cap of five: each newcomer is served, and the
    connection that waited longest for a request is closed to make room (logged once)."""
    async with serving(write_config([tv_source(vendor_url)]), max_connections=5) as port:
        idle = [await _open(port) for _ in range(5)]
        for i in range(3):
            await asyncio.sleep(0.05)
            assert await _get(port) == 200
            assert await _closed_within(idle[i][0], 2.0) == b"", "the oldest idle connection stayed"
            idle.append(await _open(port))  # the cap is full again
        await asyncio.sleep(0.05)
        assert not any(reader.at_eof() for reader, _ in idle[3:])
        assert len([line for line in logs if "max-connections reached" in line]) == 1, "not throttled"
        for _, writer in idle:
            writer.close()


async def test_a_newcomer_is_refused_with_503_when_every_connection_is_busy(
    write_config: Any, logs: list[str], aiohttp_server: Any
) -> None:
    """Two requests in flight to a slow page fill a cap of two: a third connection gets
    503 at once and is closed."""
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, guard=ConnectionGuard(2, 30.0, exlog.get_logger()))
    await site.start()
    port = runner.addresses[0][1]
    try:
        busy = [asyncio.create_task(_get(port, "/slow")) for _ in range(2)]
        await asyncio.sleep(0.2)
        reader, writer = await _open(port)
        assert (await _closed_within(reader, 2.0)).startswith(b"HTTP/1.1 503")
        writer.close()
        release.set()
        assert await asyncio.gather(*busy) == [200, 200]
        assert any("every connection busy" in line for line in logs)
    finally:
        await runner.cleanup()


async def test_idle_and_trickling_connections_close_after_the_read_timeout(
    vendor_url: str, write_config: Any
) -> None:
    """A connection that sends nothing, one that trickles its request head a byte at a
    time, and one kept alive after an answer: each is closed after the read timeout."""
    async with serving(write_config([tv_source(vendor_url)]), read_timeout=0.5) as port:
        silent_r, _ = await _open(port)
        assert await _closed_within(silent_r, 3.0) == b""

        slow_r, slow_w = await _open(port)

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                    slow_w.write(bytes([byte]))
                    await slow_w.drain()
                    await asyncio.sleep(0.05)

        sender = asyncio.create_task(trickle())
        assert await _closed_within(slow_r, 3.0) == b""
        sender.cancel()

        kept_r, kept_w = await _open(port)
        kept_w.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await _closed_within(kept_r, 3.0)
        assert answer.startswith(b"HTTP/1.1 200"), "the answer came, then the idle connection closed"


async def test_a_flood_of_idle_connections_never_starves_scrapes_or_the_log(
    vendor_url: str, write_config: Any, tmp_path: Path
) -> None:
    """With 256 file descriptors allowed, 400 idle connections: the cap (100) keeps
    descriptors free, every scrape is answered, and the refusals take one log line."""
    limit = "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))"
    async with run_exporter(
        tmp_path,
        "--web.max-connections=100",
        "--web.read-timeout=20s",
        config=write_config([tv_source(vendor_url)]),
        prelude=limit,
    ) as p:
        port = int(p.base.rsplit(":", 1)[1])
        held = []
        for _ in range(400):
            with contextlib.suppress(OSError):
                held.append(await _open(port))
        statuses = [await asyncio.wait_for(p.get("/metrics"), 5.0) for _ in range(6)]
        assert [s for s, _ in statuses] == [200] * 6
        for _, writer in held:
            writer.close()
        lines = p.stderr.splitlines()
        assert len([line for line in lines if "max-connections reached" in line]) == 1
        assert len(lines) < 30, lines[-10:]
