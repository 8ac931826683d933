"""Fake SwiftFederation LLS: concurrent viewers and stream discovery, Signature V2 verified."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from exporter.signing import SFD_DATE_FORMAT, sfd_signature

from .common import Call, Reply, VendorProfile, iso_z, serve, utc
from .curves import SimStream
from .ratelimit import retry_after_header
from .state import Simulator

PREFIX = "/swiftfederation"
POINT_SECONDS = 300.0
_DEFAULT_POINTS = 6
_MAX_POINTS = 288
_MAX_SKEW_SECONDS = 3600.0
_NONCE = re.compile(r"\d{1,18}")
_AUTH = re.compile(r"HMAC-SHA256 ([^:\s]+):([0-9a-fA-F]+)")


class SwiftFederation(VendorProfile):
    name = "swiftfederation"

    def over_limit(self, retry_after: float) -> Reply:
        reply = self.error(429, "RequestLimit.Exceeded", "The request rate limit is exceeded.")
        reply.headers["Retry-After"] = retry_after_header(retry_after)
        return reply

    def auth_refusal(self, code: int | None) -> Reply:
        return self.error(401, "Signature.NotMatch", "The signature does not match.")

    def throttle200(self, code: int | None) -> Reply:
        return self.error(200, "RequestLimit.Exceeded", "The request rate limit is exceeded.")

    def error200(self, code: int | None) -> Reply:
        return self.error(200, "InternalError", "An internal error occurred.")


def sfd_timestamp(ts: float) -> str:
    return utc(ts).strftime(SFD_DATE_FORMAT)


def malformed(timestamp: str) -> str:
    """Drop a minute digit, as the vendor's own example does (20250518T18000Z)."""
    return timestamp[:11] + timestamp[12:]


def verify(request: web.Request, sim: Simulator, body: bytes, profile: SwiftFederation) -> Reply | None:
    """None when the request carries a valid Signature V2."""
    match = _AUTH.fullmatch(request.headers.get("Authorization", "").strip())
    if match is None:
        return profile.error(401, "AccessCredential.Invalid", "The Authorization header is invalid.")
    key_id, signature = match.groups()
    secret = sim.credentials.sfd_keys.get(key_id)
    if secret is None:
        return profile.error(401, "AccessCredential.Invalid", "The access key is invalid.")
    try:
        date = datetime.strptime(request.headers.get("X-SFD-Date", ""), SFD_DATE_FORMAT)
    except ValueError:
        return profile.error(400, "Timestamp.Invalid", "X-SFD-Date is missing or invalid.")
    skew = abs(date.replace(tzinfo=UTC).timestamp() - sim.now())
    if skew > _MAX_SKEW_SECONDS:
        return profile.error(400, "Signature.Expired", "The signature has expired.")
    if not _NONCE.fullmatch(request.headers.get("X-SFD-Nonce", "")):
        return profile.error(400, "Nonce.Invalid", "X-SFD-Nonce is missing or invalid.")
    if request.headers.get("X-SFD-Signature-Version") != "2":
        return profile.error(401, "Signature.NotMatch", "Only signature version 2 is supported.")
    headers = {name: value for name, value in request.headers.items()}
    expected = sfd_signature(
        method=request.method,
        uri=request.raw_path,
        headers=headers,
        access_key_id=key_id,
        access_key_secret=secret,
        body=body,
    )
    if not hmac.compare_digest(expected, signature.lower()):
        return profile.error(401, "Signature.NotMatch", "The signature does not match.")
    return None


def _selected(sim: Simulator, query: Mapping[str, str]) -> list[SimStream]:
    return [
        s
        for s in sim.visible("swiftfederation")
        if s.attrs.get("domain") == query.get("domain")
        and (not query.get("app") or s.attrs.get("app") == query.get("app"))
        and (not query.get("stream") or s.attrs.get("stream") == query.get("stream"))
    ]


def _parse_ts(value: str) -> float:
    return datetime.strptime(value, SFD_DATE_FORMAT).replace(tzinfo=UTC).timestamp()


def concurrent_viewers(sim: Simulator, profile: SwiftFederation, query: Mapping[str, str]) -> Reply:
    if not query.get("domain"):
        return profile.error(400, "Parameter.Invalid", "domain is mandatory.")
    streams = _selected(sim, query)
    if not streams:
        return profile.error(404, "Resource.NotFound", "No such domain, app or stream.")
    now = sim.now()
    current = int(now // POINT_SECONDS)
    try:
        first = int(_parse_ts(query["started"]) // POINT_SECONDS) if query.get("started") else None
        last = int(_parse_ts(query["ended"]) // POINT_SECONDS) if query.get("ended") else None
    except ValueError:
        return profile.error(400, "LLS.Analytics.InvalidTimestamp", "Timestamp is empty or invalid.")
    last = min(current, last if last is not None else current)
    first = first if first is not None else last - _DEFAULT_POINTS + 1
    first = max(first, last - _MAX_POINTS + 1)
    data: list[dict[str, Any]] = []
    for index in range(first, last + 1):
        start = index * POINT_SECONDS
        if index == current:
            value = sum(s.viewers(now) for s in streams)
        else:
            value = sum(round(s.viewers_at(start + POINT_SECONDS / 2)) for s in streams)
        data.append({"timestamp": sfd_timestamp(start), "concurrentViewers": value})
    if len(data) >= 2 and any(s.key in sim.sfd_malformed_streams for s in streams):
        data[-2]["timestamp"] = malformed(data[-2]["timestamp"])
    body: dict[str, Any] = {"domain": query["domain"]}
    for name in ("app", "stream", "region", "protocol", "started", "ended"):
        if query.get(name):
            body[name] = query[name]
    body["data"] = data
    return Reply(200, body)


def stream_list(sim: Simulator, query: Mapping[str, str]) -> Reply:
    now = sim.now()
    streams: list[dict[str, Any]] = []
    for s in sim.visible("swiftfederation"):
        if query.get("domain") and s.attrs.get("domain") != query["domain"]:
            continue
        if query.get("app") and s.attrs.get("app") != query["app"]:
            continue
        live = s.is_live(now)
        if query.get("streamingStatus") == "streaming" and not live:
            continue
        session = s.latest_session(now)
        latest = now if live else (session.end if session and session.end else None)
        streams.append(
            {
                "id": s.session_id(0)[:8],
                "domain": s.attrs.get("domain"),
                "app": s.attrs.get("app"),
                "stream": s.attrs.get("stream"),
                "status": "active",
                "streamingStatus": "streaming" if live else "idle",
                "latestStreamingAt": iso_z(latest) if latest is not None else None,
                "createdAt": iso_z(s.created_at),
            }
        )
    return Reply(200, {"streams": streams})


def add_routes(app: web.Application, sim: Simulator) -> None:
    profile = SwiftFederation(sim)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        refusal = verify(request, sim, body, profile)
        match = _AUTH.fullmatch(request.headers.get("Authorization", "").strip())
        credential = match.group(1) if match else None
        query = request.query
        if request.match_info["endpoint"] == "stream":
            return await serve(
                request, Call(profile, "stream", credential, refusal, lambda: stream_list(sim, query))
            )
        keys = [s.key for s in _selected(sim, query)] if query.get("domain") else []
        return await serve(
            request,
            Call(
                profile,
                "queryConcurrentViewers",
                credential,
                refusal,
                lambda: concurrent_viewers(sim, profile, query),
                keys,
            ),
        )

    app.router.add_get(
        PREFIX + "/lls/v1.0/{endpoint:stream|analytics/delivery/queryConcurrentViewers}", handle
    )
