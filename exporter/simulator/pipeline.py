"""The request pipeline every vendor's handlers share: log, authenticate, rate-limit, fault, answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from .common import Reply
from .core import Simulator, VendorSim
from .limits import RequestRecord, Verdict

_HANG_POLL_SECONDS = 0.05
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


async def serve(request: web.Request, call: Call) -> web.Response:
    """Log, authenticate, rate-limit, apply an injected fault, answer."""
    sim = call.vendor.sim
    record = sim.record(call.vendor.name, call.endpoint, call.credential, call.streams)
    try:
        reply, verdict = await _answer(request, call, record)
    except asyncio.CancelledError:
        record.status, record.error = CLIENT_GONE, "client-gone"  # the client hung up
        raise
    reply = call.vendor.decorate(reply, verdict)
    record.status = reply.status
    record.error = reply.error
    return reply.to_response()


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
        await asyncio.sleep(sim.slow_seconds)
        return call.produce(), verdict
    if fault.kind == "timeout":
        await hang(request, sim)
        return vendor.error(504, "GatewayTimeout", "Gateway Timeout"), verdict
    if fault.kind == "truncated":
        return call.produce().truncated(), verdict
    return vendor.fault_reply(fault), verdict


async def hang(request: web.Request, sim: Simulator) -> None:
    """Wait until the client goes away, the app stops, the simulator resets or hang_seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + sim.hang_seconds
    generation = sim.generation
    while loop.time() < deadline and not sim.closing and sim.generation == generation:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(_HANG_POLL_SECONDS)
