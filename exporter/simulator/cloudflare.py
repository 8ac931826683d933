"""Fake Cloudflare RealtimeKit: livestream list, active session, app analytics."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import Reply, bearer, fingerprint, int_param, iso_z
from .core import Catalog, Limits, Settings, VendorSim, register, str_list
from .curves import Session, SimStream
from .limits import Verdict
from .pipeline import Call, serve
from .scenarios import CREATE_BEFORE_START

# Fake demo credentials, accepted by the simulator only.
DEMO_TOKEN: Final = "demo-cloudflare-api-token-5e2a9b7c"  # noqa: S105
DEMO_ACCOUNT: Final = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
DEMO_APP: Final = "7c4d1f0e-3b2a-4c5d-8e9f-0a1b2c3d4e5f"
# Livestreams whose numbers (and `disabled`) arrive as strings by default.
STRING_NUMBERS_DEFAULT: Final = ("78dd0b50-4147-4bb8-88d3-2ccc2e98bff0",)
_LIST_FORMS = ("array", "object")
_STATUSES = ("LIVE", "IDLE", "ERRORED", "INVOKED")
# The range analytics overall covers when a request gives no start_time: the last hour, so
# that its totals can fall as older watch time leaves the window.
OVERALL_WINDOW_DEFAULT: Final = 3600.0
_STEP = 5.0  # integration step of watch time over part of a stream's sessions
_MAX_STEPS = 5000


def _number(value: float, as_string: bool) -> int | str:
    number = round(value)
    return str(number) if as_string else number


def status(stream: SimStream, now: float) -> str:
    if stream.is_live(now):
        return "LIVE"
    return "INVOKED" if stream.latest_session(now) is None else "IDLE"


def livestream(vendor: Cloudflare, stream: SimStream, now: float) -> dict[str, Any]:
    strings = stream.key in vendor.string_numbers
    changes = [t for s in stream.sessions for t in (s.start, s.end) if t is not None and t <= now]
    updated = max([stream.created_at, *changes])
    return {
        "id": stream.key,
        "created_at": iso_z(stream.created_at, millis=True),
        "disabled": "false" if strings else False,
        "ingest_server": "rtmps://live.cloudflare.com:443/live/",
        "meeting_id": None,
        "name": stream.attrs.get("name"),
        "playback_url": f"https://customer-demo.cloudflarestream.com/{stream.key}/manifest/video.m3u8",
        "status": status(stream, now),
        "stream_key": f"sk-{stream.key.replace('-', '')}",
        "updated_at": iso_z(updated, millis=True),
    }


def _viewer_seconds(stream: SimStream, start: float, end: float) -> float:
    """Watch time of the stream between `start` and `end`, integrated afresh over its sessions."""
    total = 0.0
    for session in stream.sessions:
        low = max(start, session.start)
        high = min(end, session.end if session.end is not None else end)
        if high <= low:
            continue
        step = max(_STEP, (high - low) / _MAX_STEPS)
        t = low
        while t < high:
            dt = min(step, high - t)
            total += stream.viewers_at(t + dt / 2.0) * dt
            t += dt
    return total


def _live_seconds(stream: SimStream, start: float, end: float) -> float:
    """How long the stream was live between `start` and `end`."""
    total = 0.0
    for session in stream.sessions:
        high = min(end, session.end if session.end is not None else end)
        total += max(0.0, high - max(start, session.start))
    return total


def watched(stream: SimStream, start: float, end: float, now: float) -> tuple[float, float]:
    """(viewer seconds, ingest seconds) of the stream between `start` and `end` (at most `now`):
    its running counters less what lies outside the range, so that a range holding everything
    up to now gives exactly the counters."""
    stream.advance(now)
    end = min(end, now)
    if end <= start:
        return 0.0, 0.0
    viewers = stream.viewer_seconds
    live = stream.live_seconds
    if start > -math.inf:
        viewers -= _viewer_seconds(stream, -math.inf, start)
        live -= _live_seconds(stream, -math.inf, start)
    if end < now:
        viewers -= _viewer_seconds(stream, end, now)
        live -= _live_seconds(stream, end, now)
    return max(0.0, viewers), max(0.0, live)


def session_details(
    vendor: Cloudflare, stream: SimStream, now: float, session: Session | None = None
) -> dict[str, Any] | None:
    """One session (the latest that has started when not given), with its own counters."""
    session = session or stream.latest_session(now)
    if session is None:
        return None
    strings = stream.key in vendor.string_numbers
    stopped = session.end if session.end is not None and session.end <= now else None
    viewer_seconds, ingest_seconds = watched(stream, session.start, stopped or now, now)
    return {
        "id": session.id,
        "created_at": iso_z(session.start, millis=True),
        "err_message": None,
        "ingest_seconds": _number(ingest_seconds, strings),
        "invoked_time": iso_z(session.start, millis=True),
        "livestream_id": stream.key,
        "started_time": iso_z(session.start, millis=True),
        "stopped_time": iso_z(stopped, millis=True) if stopped is not None else None,
        "updated_at": iso_z(now, millis=True),
        "viewer_seconds": _number(viewer_seconds, strings),
    }


def parse_time(value: str) -> float:
    """Unix seconds of an ISO 8601 time (UTC without a zone); ValueError when malformed."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def overall_range(vendor: Cloudflare, query: Mapping[str, str], now: float) -> tuple[float, float]:
    """(start, end) of analytics overall: `start_time` and `end_time` when given, else the
    rolling window before now; ValueError when malformed."""
    end = parse_time(query["end_time"]) if query.get("end_time") else now
    start = parse_time(query["start_time"]) if query.get("start_time") else end - vendor.overall_window
    if end < start:
        raise ValueError("end_time is before start_time")
    return start, end


def overall(vendor: Cloudflare, query: Mapping[str, str]) -> Reply:
    now = vendor.sim.now()
    try:
        start, end = overall_range(vendor, query, now)
    except ValueError:
        return vendor.error(400, "7003", "start_time and end_time must be ISO 8601 times, in order")
    every = list(vendor.sim.streams[vendor.name].values())
    viewers = ingest = 0.0
    for stream in every:
        v, i = watched(stream, start, end, now)
        viewers += v
        ingest += i
    data = {
        "count": len([s for s in every if start <= s.created_at <= min(end, now)]),
        "total_ingest_seconds": round(ingest),
        "total_viewer_seconds": round(viewers),
    }
    return Reply(200, {"success": True, "data": data})


def sessions_page(vendor: Cloudflare, stream: SimStream, query: Mapping[str, str], now: float) -> Reply:
    """GET livestreams/{id}: the livestream and one page of its sessions, oldest first; the
    page's first session is `session` (without paging: the oldest)."""
    try:
        page_no = int_param(query.get("page_no"), 1)
        per_page = int_param(query.get("per_page"), 20, maximum=100)
    except ValueError:
        return vendor.error(400, "7003", "page_no and per_page must be positive numbers")
    started = [s for s in stream.sessions if s.start <= now]
    first = (page_no - 1) * per_page
    page = started[first : first + per_page]
    data: dict[str, Any] = {
        "livestream": livestream(vendor, stream, now),
        "session": session_details(vendor, stream, now, page[0]) if page else None,
        "paging": {
            "start_offset": first + 1 if page else first,
            "end_offset": first + len(page),
            "total_count": len(started),
        },
    }
    return Reply(200, {"success": True, "data": data})


def list_livestreams(vendor: Cloudflare, query: Mapping[str, str]) -> Reply:
    object_form = vendor.list_form == "object"
    try:
        page_no = int_param(query.get("page_no"), 1)
        per_page = 1 if object_form else int_param(query.get("per_page"), 20, maximum=100)
    except ValueError:
        return vendor.error(400, "7003", "page_no and per_page must be positive numbers")
    now = vendor.sim.now()
    wanted = query.get("status")
    if wanted and wanted not in _STATUSES:
        return vendor.error(400, "7003", f"status must be one of {', '.join(_STATUSES)}")
    if wanted:
        streams = vendor.view(("status", wanted), lambda s, t: status(s, t) == wanted)
    else:
        streams = vendor.visible()
    first = (page_no - 1) * per_page
    page = [livestream(vendor, s, now) for s in streams[first : first + per_page]]
    paging = {
        "start_offset": first + 1 if page else first,
        "end_offset": first + len(page),
        "total_count": len(streams),
    }
    if object_form:
        data: Any = dict(page[0]) if page else {}
        data["paging"] = paging
        return Reply(200, {"success": True, "data": data})
    return Reply(200, {"success": True, "data": page, "paging": paging})


@register
class Cloudflare(VendorSim):
    """RealtimeKit: bearer API token, one account and app; 250 requests in 10 s, 1200 in 5 minutes."""

    name = "cloudflare"
    prefix = "/cloudflare/client/v4"
    limits: ClassVar[Limits] = {"*": [(250, 10.0), (1200, 300.0)]}
    scale = 1.0
    scenarios: ClassVar[Catalog] = {  # stream key: the livestream id
        "3fd739f4-3c41-456e-bfba-6ebd51e16d2d": "rising",
        "78dd0b50-4147-4bb8-88d3-2ccc2e98bff0": "falling",
        "a1c2e3f4-5b6d-4e8f-9a0b-1c2d3e4f5a6b": "drop",
        "b7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f": "ends",
        "c9e0f1a2-3b4c-4d5e-9f6a-7b8c9d0e1f2a": "starts",
        "d4f5a6b7-8c9d-4e0f-8a1b-2c3d4e5f6a7b": "ended",
    }
    quirks: ClassVar[Settings] = {
        "cf_list_form": "array",  # "array" (data list, paging beside) or "object" (one item, paging inside)
        "cf_string_numbers": STRING_NUMBERS_DEFAULT,  # livestream ids whose numbers arrive as strings
        "cf_inactive_session_404": False,  # active-livestream-session answers 404 when none is live
        "cf_overall_window": OVERALL_WINDOW_DEFAULT,  # seconds analytics overall covers without start_time
    }
    quick_first_cycle: ClassVar[Settings] = {"rate_limit": [{"requests": 250, "per": "10s"}]}
    demo_latency = (0.09, 0.04)
    demo_troubles = True
    list_endpoints: ClassVar[frozenset[str]] = frozenset({"livestreams"})
    over_limit_error = ("971", "Please wait and consider throttling your request speed")
    auth_error = ("10000", "Authentication error")
    throttle_error = ("971", "Please wait and consider throttling your request speed")
    failure_error = ("10001", "Internal error, please try again")

    tokens: set[str]  # accepted API tokens
    account: str  # the one account id and app id the tokens reach
    app: str
    list_form: str
    string_numbers: set[str]
    inactive_session_404: bool
    overall_window: float

    def reset(self) -> None:
        super().reset()
        self.tokens = {DEMO_TOKEN}
        self.account = DEMO_ACCOUNT
        self.app = DEMO_APP

    def set_quirk(self, name: str, value: object) -> None:
        if name == "cf_list_form":
            if value not in _LIST_FORMS:
                raise ValueError(f"cf_list_form is one of {', '.join(_LIST_FORMS)}")
            self.list_form = str(value)
        elif name == "cf_string_numbers":
            self.string_numbers = set(str_list(value))
        elif name == "cf_inactive_session_404":
            self.inactive_session_404 = bool(value)
        elif name == "cf_overall_window":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError("cf_overall_window is a positive number of seconds")
            self.overall_window = float(value)
        else:
            super().set_quirk(name, value)

    @classmethod
    def stream_key(cls, n: int) -> str:
        """A livestream id (a UUID)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"livestream-sim/livestream/{n}"))

    def adjust_demo_stream(self, stream: SimStream, scenario: str) -> None:
        if scenario == "starts":  # the livestream exists before it goes live
            stream.created_at = stream.sessions[0].start - CREATE_BEFORE_START

    @classmethod
    def demo_fields(cls) -> dict[str, Any]:
        return {
            "account_id": DEMO_ACCOUNT,
            "app_id": DEMO_APP,
            "discover": True,
            "credentials": {"api_token": DEMO_TOKEN},
            "targets": [{"livestream_id": key} for key in cls.demo_keys(discover=True)],
        }

    def error_body(self, status: int, code: str, message: str) -> Any:
        number = int(code) if code.isdigit() else 10001
        return {"success": False, "errors": [{"code": number, "message": message}], "messages": []}

    def decorate(self, reply: Reply, verdict: Verdict | None) -> Reply:
        if verdict is not None and verdict.limit is not None:
            reply.headers["X-RateLimit-Limit"] = str(verdict.limit)
            reply.headers["X-RateLimit-Remaining"] = str(verdict.remaining or 0)
        return reply

    def add_routes(self, app: web.Application) -> None:
        kit = self.prefix + "/accounts/{account_id}/realtime/kit/{app_id}"

        def wrong_app(request: web.Request) -> Reply | None:
            info = request.match_info
            if info["account_id"] != self.account or info["app_id"] != self.app:
                return self.error(403, "9109", "Unauthorized to access requested resource")
            return None

        def authenticate(request: web.Request) -> tuple[str | None, Reply | None]:
            token = bearer(request.headers.get("Authorization"))
            credential = fingerprint(token) if token else None
            return credential, None if token in self.tokens else self.auth_refusal(None)

        async def livestreams(request: web.Request) -> web.StreamResponse:
            credential, refusal = authenticate(request)

            def produce() -> Reply:
                return wrong_app(request) or list_livestreams(self, request.query)

            return await serve(request, Call(self, "livestreams", credential, refusal, produce))

        def session_reply(request: web.Request, livestream_id: str, *, active_only: bool) -> Reply:
            refused = wrong_app(request)
            if refused is not None:
                return refused
            stream = self.find(livestream_id)
            if stream is None:
                return self.error(404, "1404", f"Livestream {livestream_id} not found")
            now = self.sim.now()
            if not active_only:
                return sessions_page(self, stream, request.query, now)
            if self.inactive_session_404 and not stream.is_live(now):
                return self.error(404, "1404", f"No active livestream session for {livestream_id}")
            data: dict[str, Any] = {
                "livestream": livestream(self, stream, now),
                "session": session_details(self, stream, now),
            }
            return Reply(200, {"success": True, "data": data})

        async def active_session(request: web.Request) -> web.StreamResponse:
            return await one_livestream(request, active_only=True)

        async def livestream_sessions(request: web.Request) -> web.StreamResponse:
            return await one_livestream(request, active_only=False)

        async def one_livestream(request: web.Request, *, active_only: bool) -> web.StreamResponse:
            credential, refusal = authenticate(request)
            livestream_id = request.match_info["livestream_id"]
            endpoint = "active-livestream-session" if active_only else "livestream"

            def produce() -> Reply:
                return session_reply(request, livestream_id, active_only=active_only)

            call = Call(self, endpoint, credential, refusal, produce, (livestream_id,))
            return await serve(request, call)

        async def analytics_overall(request: web.Request) -> web.StreamResponse:
            credential, refusal = authenticate(request)

            def produce() -> Reply:
                return wrong_app(request) or overall(self, request.query)

            return await serve(request, Call(self, "analytics-overall", credential, refusal, produce))

        app.router.add_get(kit + "/livestreams", livestreams)
        app.router.add_get(kit + "/livestreams/{livestream_id}/active-livestream-session", active_session)
        app.router.add_get(kit + "/livestreams/{livestream_id}", livestream_sessions)
        app.router.add_get(kit + "/analytics/livestreams/overall", analytics_overall)
