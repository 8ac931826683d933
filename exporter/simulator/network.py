"""How requests and answers travel: latency with jitter, answers in pieces, connections cut or reset.

Each vendor has its own `Network` (see `Simulator.set_latency`, `Simulator.set_pieces`); the
default is none of it: every request arrives the moment it is received and every answer is
sent whole, at once, as before.

Latency: a request's answer time L is drawn uniformly from [mean - jitter, mean + jitter]
(clamped at 0) by the simulator's seedable generator. The vendor sees (counts) the request
when it ARRIVES, at send + U·L, where U is `arrival` (a fraction of L) or, when that is None,
uniform in [0, 1] per request; the answer leaves at send + L. So a request may be counted
well after it was sent, and one sent later may be counted before it.

Pieces: the body is written `size` bytes at a time with a gap between pieces (itself jittered),
with a correct Content-Length or with chunked transfer encoding. A client that reads the body
once gets the first piece only.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from .common import Reply

Sleep = Callable[[float], Awaitable[None]]

# Ways an answer can end early (see `send`).
CUT: str = "cut"  # the full Content-Length promised, the connection closed (FIN) after part of the body
RESET: str = "reset"  # the connection reset (RST) after part of the body
ENDINGS = (CUT, RESET)

_FLUSH_SPINS = 1000  # loop iterations waiting for a cut answer's part to reach the socket


def _non_negative(name: str, value: float) -> float:
    number = float(value)
    if not number >= 0.0:  # also refuses NaN
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return number


def jittered(rng: random.Random, mean: float, jitter: float) -> float:
    """Uniform in [mean - jitter, mean + jitter], clamped at 0."""
    if jitter <= 0.0:
        return mean
    return max(0.0, rng.uniform(mean - jitter, mean + jitter))


@dataclass(frozen=True)
class Latency:
    """Answer time: uniform in [mean - jitter, mean + jitter] seconds, clamped at 0; the request
    arrives at `arrival` (a fraction) of it, or at a fraction drawn per request when None."""

    mean: float = 0.0
    jitter: float = 0.0
    arrival: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _non_negative("latency mean", self.mean))
        object.__setattr__(self, "jitter", _non_negative("latency jitter", self.jitter))
        if self.arrival is not None:
            fraction = float(self.arrival)
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"arrival must be a fraction in [0, 1], got {self.arrival!r}")
            object.__setattr__(self, "arrival", fraction)

    @property
    def off(self) -> bool:
        return self.mean == 0.0 and self.jitter == 0.0

    def draw(self, rng: random.Random) -> tuple[float, float]:
        """(L, the delay until the request arrives): both 0 when off, with no draw."""
        if self.off:
            return 0.0, 0.0
        total = jittered(rng, self.mean, self.jitter)
        fraction = rng.random() if self.arrival is None else self.arrival
        return total, total * fraction

    def as_dict(self) -> dict[str, object]:
        return {"mean": self.mean, "jitter": self.jitter, "arrival": self.arrival}


@dataclass(frozen=True)
class Pieces:
    """Answers of `endpoints` (all when None) written `size` bytes at a time (0: whole), with
    `gap` seconds (jittered by `jitter`) between pieces; `chunked` for chunked transfer
    encoding instead of a Content-Length."""

    size: int = 0
    gap: float = 0.0
    jitter: float = 0.0
    chunked: bool = False
    endpoints: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"piece size must be an integer >= 0 (bytes), got {self.size!r}")
        object.__setattr__(self, "gap", _non_negative("piece gap", self.gap))
        object.__setattr__(self, "jitter", _non_negative("piece gap jitter", self.jitter))
        if self.endpoints is not None:
            object.__setattr__(self, "endpoints", frozenset(self.endpoints))

    @classmethod
    def of(
        cls,
        size: int,
        gap: float = 0.0,
        *,
        jitter: float = 0.0,
        chunked: bool = False,
        endpoints: Iterable[str] | None = None,
    ) -> Pieces:
        return cls(size, gap, jitter, chunked, None if endpoints is None else frozenset(endpoints))

    def applies(self, endpoint: str) -> bool:
        return self.endpoints is None or endpoint in self.endpoints

    def split(self, data: bytes) -> list[bytes]:
        if self.size <= 0 or len(data) <= self.size:
            return [data] if data else []
        return [data[i : i + self.size] for i in range(0, len(data), self.size)]

    def as_dict(self) -> dict[str, object]:
        endpoints = None if self.endpoints is None else sorted(self.endpoints)
        return {
            "size": self.size,
            "gap": self.gap,
            "jitter": self.jitter,
            "chunked": self.chunked,
            "endpoints": endpoints,
        }


NO_PIECES = Pieces()


@dataclass
class Network:
    """One vendor's network: how late its requests arrive and answers leave, how answers are cut."""

    latency: Latency = field(default_factory=Latency)
    pieces: Pieces = NO_PIECES

    def as_dict(self) -> dict[str, object]:
        return {"latency": self.latency.as_dict(), "pieces": self.pieces.as_dict()}


async def send(
    request: web.Request, reply: Reply, pieces: Pieces, *, sleep: Sleep, rng: random.Random
) -> web.StreamResponse:
    """Write `reply` as `pieces` says; with an `ending` (CUT or RESET) only half of its body,
    then the connection ends. An answer sent whole, at once, is an ordinary `web.Response`."""
    text = reply.text()
    data = text.encode("utf-8")
    if reply.ending is None and not pieces.chunked and len(pieces.split(data)) <= 1:
        return reply.to_response()
    response = web.StreamResponse(status=reply.status, headers=reply.headers)
    response.content_type = reply.content_type
    response.charset = "utf-8"
    if pieces.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(data)
    if reply.ending is not None:
        data = data[: len(data) // 2]
    try:
        await response.prepare(request)
        for index, piece in enumerate(pieces.split(data)):
            if index:
                gap = jittered(rng, pieces.gap, pieces.jitter)
                if gap > 0.0:
                    await sleep(gap)
            await response.write(piece)
        if reply.ending is None:
            await response.write_eof()
        else:
            await end_connection(request, reset=reply.ending == RESET)
    except ConnectionError:
        pass  # the client went away; aiohttp finishes the response quietly
    return response


async def end_connection(request: web.Request, *, reset: bool) -> None:
    """Close the request's connection now: with a FIN, or with a TCP RST when `reset`."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    for _ in range(_FLUSH_SPINS):  # what was written goes out first
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0)
    if not reset:
        transport.close()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
