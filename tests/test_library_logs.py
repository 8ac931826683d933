"""What aiohttp and asyncio log reaches the operator as one line per event, at most once
a minute per kind, without tracebacks for a client's mistakes or the client's bytes."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from pathlib import Path
from typing import Any

from exporter.model.clock import FakeClock
from exporter.model.throttle import LogThrottle
from exporter.process import logsetup
from tests.conftest import tv_source
from tests.exporter_process import run_exporter


def _send_raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return s.recv(200)


async def test_malformed_requests_log_one_line_without_traceback_or_their_bytes(
    vendor_url: str, write_config: Any, tmp_path: Path
) -> None:
    async with run_exporter(tmp_path, config=write_config([tv_source(vendor_url)])) as p:
        port = int(p.base.rsplit(":", 1)[1])
        bad = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c2VjcmV0\x01\r\n\r\n"
        for _ in range(50):
            answer = await asyncio.to_thread(_send_raw, port, bad)
            assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
        await asyncio.sleep(0.2)
        err = p.stderr
    lines = [line for line in err.splitlines() if "bad HTTP request" in line]
    assert len(lines) == 1, err[-2000:]
    assert "level=warning" in lines[0] and "client=127.0.0.1" in lines[0]
    assert "Traceback" not in err
    assert "c2VjcmV0" not in err, "the client's bytes were logged"


def _record(name: str, msg: str, exc: BaseException | None, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), (type(exc), exc, None) if exc else None)


def test_a_flood_of_one_kind_is_one_line_a_minute_with_the_count_held_back() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    logsetup.setup("info", "logfmt", stream)
    handler = logging.getLogger().handlers[0]
    flt = next(f for f in handler.filters if isinstance(f, logsetup.LibraryLogs))
    flt.throttle = LogThrottle(clock=clock)
    accept_failed = OSError(24, "Too many open files")
    for _ in range(1000):
        handler.handle(_record("asyncio", "socket.accept() out of system resource", accept_failed))
    clock.advance(61.0)
    handler.handle(_record("asyncio", "socket.accept() out of system resource", accept_failed))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "Too many open files" in lines[0] and "Traceback" not in stream.getvalue()
    assert "held_back=999" in lines[1]
