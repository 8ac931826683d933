"""The HTTP client reads whole answers, however they arrive, and holds the budget until then.

Against real loopback servers that send their answers in pieces, cut them short, reset the
connection mid-answer, or answer late on the fake clock.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from exporter.engine.http import MAX_BODY, HttpClient
from exporter.engine.limiter import SourceLimiter
from exporter.model.clock import FakeClock, SystemClock
from exporter.model.errors import ParseError, PollTimeout, UpstreamError
from exporter.model.windows import Window

#: a list of 300 livestreams, about 120 kB, as a large discovery answer is
BIG = {
    "success": True,
    "data": [
        {"id": f"{i:08d}-3c41-456e-bfba-6ebd51e16d2d", "name": f"Stream {i} " + "x" * 300} for i in range(300)
    ],
}


class Observer:
    def __init__(self) -> None:
        self.done: list[tuple[str, str, float]] = []
        self.started = 0

    def request_started(self) -> None:
        self.started += 1

    def request_done(self, endpoint: str, code: str, duration: float) -> None:
        self.done.append((endpoint, code, duration))

    def limiter_waited(self) -> None:
        pass

    def points_skipped(self, points: int) -> None:
        pass


def client(clock: Any = None, timeout: float = 5.0) -> tuple[HttpClient, Observer, SourceLimiter]:
    clock = clock or SystemClock()
    limiter = SourceLimiter({"default": [Window(1000, 1.0)]}, clock)
    observer = Observer()
    return HttpClient(limiter=limiter, observer=observer, clock=clock, timeout=timeout), observer, limiter


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(aiohttp_server: Any, handler: Handler) -> str:
    app = web.Application()
    app.router.add_get("/answer", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/answer"))


def in_pieces(body: bytes, size: int, gap: float, *, chunked: bool = False) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(body)
        await resp.prepare(request)
        for i in range(0, len(body), size):
            await resp.write(body[i : i + size])
            await asyncio.sleep(gap)
        await resp.write_eof()
        return resp

    return handler


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_in_pieces_is_read_whole(aiohttp_server, chunked):
    """120 kB in 4 kB pieces a millisecond apart, as a large answer arrives over TLS."""
    body = json.dumps(BIG).encode()
    url = await serve(aiohttp_server, in_pieces(body, 4096, 0.001, chunked=chunked))
    http, observer, _ = client()
    try:
        r = await http.request("GET", url, endpoint="livestreams")
    finally:
        await http.close()
    assert r.body == body
    assert len(r.json()["data"]) == 300
    assert observer.done[0][:2] == ("livestreams", "200")


def broken_off(body: bytes, sent: int, *, reset: bool) -> Handler:
    """Promise all of `body`, send `sent` bytes of it, then close the connection (with a TCP
    reset when `reset`)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:sent])
        await asyncio.sleep(0.01)
        assert request.transport is not None
        if reset:
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()
        else:
            request.transport.close()
        return resp

    return handler


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_an_answer_broken_off_is_an_upstream_error_never_parsed(aiohttp_server, reset):
    """The server promises 120 kB and the connection ends after part of it (closed, or reset
    with a TCP RST): a failure, never half a list."""
    body = json.dumps(BIG).encode()
    url = await serve(aiohttp_server, broken_off(body, len(body) // 2, reset=reset))
    http, observer, _ = client()
    try:
        with pytest.raises(UpstreamError):
            await http.request("GET", url, endpoint="livestreams")
    finally:
        await http.close()
    assert observer.done[0][:2] == ("livestreams", "error")


async def test_an_answer_larger_than_the_cap_is_refused(aiohttp_server):
    body = b"[" + b"0," * (MAX_BODY // 2) + b"0]"
    url = await serve(aiohttp_server, in_pieces(body, 1 << 20, 0.0))
    http, _, _ = client()
    try:
        with pytest.raises(ParseError, match="larger than"):
            await http.request("GET", url, endpoint="big")
    finally:
        await http.close()


async def test_the_timeout_is_kept_on_the_clock_and_holds_the_budget_until_then(aiohttp_server):
    """An answer 20 s late on the fake clock: the request times out at 10 s, and it kept its
    place in the budget's window until then, not only at its send."""
    clock = FakeClock()

    async def late(request: web.Request) -> web.Response:
        await clock.sleep(20.0)
        return web.json_response({})

    http, observer, limiter = client(clock, timeout=10.0)
    sent = clock.monotonic()
    try:
        with pytest.raises(PollTimeout):
            await http.request("GET", await serve(aiohttp_server, late), endpoint="slow")
    finally:
        await http.close()
    assert clock.monotonic() == pytest.approx(sent + 10.0)
    assert observer.done == [("slow", "timeout", pytest.approx(10.0))]
    assert limiter.buckets["default"].history() == [pytest.approx(sent + 10.0)]
    assert limiter.buckets["default"].in_flight == 0
