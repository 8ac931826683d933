"""The request pipeline every vendor's handlers share: arrive, log, authenticate, rate-limit,
fault, answer, send (in pieces).

With the vendor's latency L (see network.py) a request received now ARRIVES after the
drawn part of L: it is logged, refused or counted by the rate limits, given its fault and
answered from the state of that moment; its answer leaves when L has passed since it was
received. Every wait is the simulator's `sleep`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from .common import Reply
from .core import Simulator, VendorSim
from .limits import RequestRecord, Verdict
from .network import CUT, NO_PIECES, RESET, send

_HANG_POLL_SECONDS = 0.02  # how often a hanging answer looks whether its client is still there
CLIENT_GONE = 499  # logged status of a request the client gave up on (nginx's convention)


@dataclass
class Call:
    """One request, as a vendor's handler hands it to `serve`."""

    vendor: VendorSim
    endpoint: str
    credential: str | None
    refusal: Reply | None
    produce: Callable[[], Reply]
    streams: Sequence[str] = ()


async def serve(request: web.Request, call: Call) -> web.StreamResponse:
    """Arrive, log, authenticate, rate-limit, apply an injected fault, answer, send."""
    vendor = call.vendor
    sim = vendor.sim
    network = sim.network[vendor.name]
    received = sim.monotonic()
    latency, arrival = network.latency.draw(sim.random)
    if arrival > 0.0:
        await sim.sleep(arrival)
    record = sim.record(
        vendor.name, call.endpoint, call.credential, call.streams, received=received, latency=latency
    )
    try:
        reply, verdict = await _answer(request, call, record)
        if latency > arrival:
            await sim.sleep(latency - arrival)
    except asyncio.CancelledError:
        record.status, record.error = CLIENT_GONE, "client-gone"  # the client hung up
        raise
    reply = vendor.decorate(reply, verdict)
    record.status = reply.status
    record.error = reply.error
    record.answered = sim.monotonic()
    pieces = network.pieces if network.pieces.applies(call.endpoint) else NO_PIECES
    try:
        response = await send(request, reply, pieces, sleep=sim.sleep, rng=sim.random)
    finally:
        record.finished = sim.monotonic()
    return response


async def _answer(request: web.Request, call: Call, record: RequestRecord) -> tuple[Reply, Verdict | None]:
    vendor = call.vendor
    sim = vendor.sim
    if call.refusal is not None:
        return call.refusal, None
    verdict = sim.check_rate(vendor.name, call.endpoint, call.credential)
    if not verdict.allowed:
        record.throttled = True
        return vendor.over_limit(verdict.retry_after), verdict
    fault = sim.take_fault(vendor.name, call.streams)
    if fault is None:
        return call.produce(), verdict
    record.fault = fault.kind
    if fault.kind == "slow":
        await wait(request, sim, sim.slow_seconds)
        return call.produce(), verdict
    if fault.kind == "timeout":
        await wait(request, sim, sim.hang_seconds)
        return vendor.error(504, "GatewayTimeout", "Gateway Timeout"), verdict
    if fault.kind == "truncated":
        return call.produce().truncated(), verdict
    if fault.kind in (CUT, RESET):
        reply = call.produce()
        reply.ending = fault.kind
        return reply, verdict
    return vendor.fault_reply(fault), verdict


async def wait(request: web.Request, sim: Simulator, seconds: float) -> None:
    """Wait `seconds` on the simulator's sleep, in short steps, and stop early when the client
    goes away, the app stops or the simulator resets (so no wait outlives its client)."""
    generation = sim.generation
    left = seconds
    while left > 0.0 and not sim.closing and sim.generation == generation:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        step = min(_HANG_POLL_SECONDS, left)
        await sim.sleep(step)
        left -= step
