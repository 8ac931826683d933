"""What every fake vendor shares: answers, the request pipeline, faults, time formats."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .ratelimit import RequestRecord, Verdict, retry_after_header
from .state import Fault, Simulator

_HANG_POLL_SECONDS = 0.05
CLIENT_GONE = 499  # logged status of a request the client gave up on (nginx's convention)


@dataclass
class Reply:
    """One answer: a JSON body, or `raw` text with its content type."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None
    content_type: str = "application/json"
    error: str | None = None  # vendor error code, for the request log

    def truncated(self) -> Reply:
        text = self.raw if self.raw is not None else json.dumps(self.body)
        return replace(self, status=200, raw=text[: max(1, len(text) // 2)], error="truncated")

    def to_response(self) -> web.Response:
        text = self.raw if self.raw is not None else json.dumps(self.body)
        return web.Response(
            status=self.status, text=text, content_type=self.content_type, headers=self.headers
        )


def html_page(status: int) -> str:
    title = f"{status} {'OK' if status == 200 else 'Bad Gateway'}"
    return (
        "<!DOCTYPE html>\n<html><head><title>" + title + "</title></head>\n"
        "<body><h1>Something went wrong</h1><p>The upstream server returned an invalid response."
        "</p><hr><center>nginx</center></body></html>\n"
    )


class VendorProfile:
    """How one vendor answers failures; subclasses override the vendor-specific ones."""

    name = "vendor"

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"code": code, "message": message}

    def error(self, status: int, code: str, message: str) -> Reply:
        return Reply(status=status, body=self.error_body(status, code, message), error=code)

    def over_limit(self, retry_after: float) -> Reply:
        reply = self.error(429, "RateLimited", "Too many requests, slow down")
        reply.headers["Retry-After"] = retry_after_header(retry_after)
        return reply

    def auth_refusal(self, code: int | None) -> Reply:
        return self.error(401, "Unauthorized", "Unauthorized")

    def throttle200(self, code: int | None) -> Reply:
        return self.error(200, "Throttled", "Too many requests")

    def error200(self, code: int | None) -> Reply:
        return self.error(200, "InternalError", "Something went wrong")

    def decorate(self, reply: Reply, verdict: Verdict | None) -> Reply:
        """Headers every answer carries (e.g. Cloudflare's X-RateLimit-*)."""
        return reply

    def fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "5xx":
            status = fault.code or 503
            return self.error(status, "InternalError", "Service temporarily unavailable")
        if fault.kind == "429":
            reply = self.over_limit(self.sim.retry_after_seconds)
            reply.status = 429
            return reply
        if fault.kind == "html":
            status = fault.code or 502
            return Reply(status=status, raw=html_page(status), content_type="text/html", error="html")
        if fault.kind == "auth":
            return self.auth_refusal(fault.code)
        if fault.kind == "throttle200":
            return self.throttle200(fault.code)
        return self.error200(fault.code)


@dataclass
class Call:
    """One request, as a vendor module hands it to `serve`."""

    profile: VendorProfile
    endpoint: str
    credential: str | None
    refusal: Reply | None
    produce: Callable[[], Reply]
    streams: Sequence[str] = ()


async def serve(request: web.Request, call: Call) -> web.Response:
    """Log, authenticate, rate-limit, apply an injected fault, answer."""
    sim = call.profile.sim
    record = sim.record(call.profile.name, call.endpoint, call.credential, call.streams)
    try:
        reply, verdict = await _answer(request, call, record)
    except asyncio.CancelledError:
        record.status, record.error = CLIENT_GONE, "client-gone"  # the client hung up
        raise
    reply = call.profile.decorate(reply, verdict)
    record.status = reply.status
    record.error = reply.error
    return reply.to_response()


async def _answer(request: web.Request, call: Call, record: RequestRecord) -> tuple[Reply, Verdict | None]:
    sim = call.profile.sim
    if call.refusal is not None:
        return call.refusal, None
    verdict = sim.check_rate(call.profile.name, call.endpoint, call.credential)
    if not verdict.allowed:
        record.throttled = True
        return call.profile.over_limit(verdict.retry_after), verdict
    fault = sim.take_fault(call.profile.name, call.streams)
    if fault is None:
        return call.produce(), verdict
    record.fault = fault.kind
    if fault.kind == "slow":
        await asyncio.sleep(sim.slow_seconds)
        return call.produce(), verdict
    if fault.kind == "timeout":
        await hang(request, sim)
        return call.profile.error(504, "GatewayTimeout", "Gateway Timeout"), verdict
    if fault.kind == "truncated":
        return call.produce().truncated(), verdict
    return call.profile.fault_reply(fault), verdict


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


# ---------------------------------------------------------------------- helpers


def fingerprint(secret: str) -> str:
    """A loggable stand-in for a secret credential."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def iso_z(ts: float, *, millis: bool = False) -> str:
    """2023-11-07T05:31:56Z, or 2025-10-29T12:05:38.367Z with millis."""
    moment = utc(ts)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_naive(ts: float) -> str:
    """2024-08-16T11:49:15 (no zone: UTC)."""
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%S")


def int_param(value: str | None, default: int, *, minimum: int = 1, maximum: int = 10_000) -> int:
    """A query parameter as an int; ValueError when present but invalid."""
    if value is None or value == "":
        return default
    number = int(value)
    if not minimum <= number <= maximum:
        raise ValueError(f"{number} outside {minimum}..{maximum}")
    return number
