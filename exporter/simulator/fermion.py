"""Fake Fermion: live event session stats (a list of calls in, a list of outputs out)."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import Reply, fingerprint, iso_z
from .core import Catalog, Limits, Settings, VendorSim, register
from .curves import SimStream
from .pipeline import Call, serve

DEMO_KEY: Final = "demo-fermion-api-key-c0ffee42"  # fake, accepted by the simulator only
_SEGMENT_SECONDS = 300.0
_MAX_SEGMENTS = 12
_MAX_TOP_USERS = 5
SCHOOL_NOT_FOUND = "Fermion School not found! Please check your API key."


def error_output(message: str) -> dict[str, Any]:
    return {"output": {"status": "error", "errorMessage": message}}


def _top_users(stream: SimStream, count: int, now: float) -> list[dict[str, Any]]:
    users = []
    first_seen = stream.sessions[0].start if stream.sessions else now
    for i in range(1, min(count, _MAX_TOP_USERS) + 1):
        users.append(
            {
                "fermionInternalUserId": f"fu_{stream.key}_{i}",
                "userId": f"user-{i:04d}",
                "email": f"viewer{i}@example.com",
                "name": f"Demo Viewer {i}",
                "username": f"viewer{i}",
                "profilePicUrl": f"https://example.com/avatars/{i}.png",
                "segmentsWatchedCount": max(1, int(stream.live_seconds // _SEGMENT_SECONDS) - i),
                "firstSeenAt": iso_z(first_seen),
                "lastSeenAt": iso_z(now),
            }
        )
    return users


def session_stats(stream: SimStream, now: float, top_user_count: int) -> dict[str, Any]:
    stream.advance(now)
    session = stream.latest_session(now)
    started = session.start if session else None
    ended = session.end if session and session.end is not None and session.end <= now else None
    segments: list[dict[str, Any]] = []
    if started is not None:
        stop = ended if ended is not None else now
        first = max(started, stop - _SEGMENT_SECONDS * _MAX_SEGMENTS)
        t = first
        while t < stop:
            end = min(t + _SEGMENT_SECONDS, stop)
            segments.append(
                {
                    "startAtIso": iso_z(t),
                    "endAtIso": iso_z(end),
                    "activelyWatchingDistinctUserCount": round(stream.viewers_at((t + end) / 2)),
                }
            )
            t = end
    viewer_seconds, live_seconds, peak = stream.viewer_seconds, stream.live_seconds, stream.peak_viewers(now)
    return {
        "estimatedStreamDurationInMinutes": int(live_seconds // 60),
        "streamStartedAt": iso_z(started) if started is not None else None,
        "streamEndedAt": iso_z(ended) if ended is not None else None,
        "totalMessagesSentCount": int(viewer_seconds // 150),
        "instructorMessagesSentCount": int(live_seconds // 120),
        "pollsConductedCount": int(live_seconds // 900),
        "uniqueUsersCount": peak + int(viewer_seconds // 900),
        "currentActivelyWatchingDistinctUserCount": stream.viewers(now),
        "peakConcurrentUsers": peak,
        "streamSegmentData": segments,
        "topUsersByWatchTime": _top_users(stream, top_user_count, now) if peak else [],
    }


def parse_calls(raw: bytes) -> list[tuple[str, int]] | None:
    """[(liveEventSessionId, topUserCount)], or None when the body is not a valid request."""
    try:
        body = json.loads(raw)
        calls = body["data"]
        if not isinstance(calls, list) or not calls:
            return None
        parsed = []
        for call in calls:
            args = call["data"]
            session_id = args["liveEventSessionId"]
            top = args.get("topUserCount", 500)
            if not isinstance(session_id, str) or not isinstance(top, int):
                return None
            parsed.append((session_id, top))
        return parsed
    except (ValueError, KeyError, TypeError):
        return None


@register
class Fermion(VendorSim):
    """API key header; a list of calls in, a list of outputs out; 60 requests a minute."""

    name = "fermion"
    prefix = "/fermion/api"
    limits: ClassVar[Limits] = {"*": [(60, 60.0)]}
    scale = 0.2
    scenarios: ClassVar[Catalog] = {  # stream key: the live event session id
        "session-algebra": "rising",
        "session-history": "falling",
        "session-physics": "drop",
        "session-chemistry": "ends",
        "session-biology": "starts",
        "session-geography": "ended",
    }
    # answer only the first call of a multi-call body
    quirks: ClassVar[Settings] = {"fermion_first_call_only": False}
    quick_first_cycle: ClassVar[Settings] = {"batch_size": len(scenarios)}  # one request for all
    demo_latency = (0.18, 0.07)
    # a list of outputs, one per call of the batch
    list_endpoints: ClassVar[frozenset[str]] = frozenset({"get-live-event-session-stats"})
    over_limit_error = ("TOO_MANY_REQUESTS", "Rate limit exceeded: 60 requests per minute.")

    api_keys: set[str]  # accepted API keys
    first_call_only: bool

    def reset(self) -> None:
        super().reset()
        self.api_keys = {DEMO_KEY}

    def set_quirk(self, name: str, value: object) -> None:
        if name == "fermion_first_call_only":
            self.first_call_only = bool(value)
        else:
            super().set_quirk(name, value)

    @classmethod
    def stream_key(cls, n: int) -> str:
        return f"session-{n:06d}"

    @classmethod
    def demo_fields(cls) -> dict[str, Any]:
        return {
            "batch_size": 2,
            "credentials": {"api_key": DEMO_KEY},
            "targets": [{"live_event_session_id": key} for key in cls.demo_keys()],
        }

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"error": {"code": code, "message": message}}

    def auth_refusal(self, code: int | None) -> Reply:
        return Reply(200, [error_output(SCHOOL_NOT_FOUND)], error="school-not-found")

    def throttle200(self, code: int | None) -> Reply:
        return Reply(200, [error_output("Too many requests. Please try again later.")], error="throttled")

    def error200(self, code: int | None) -> Reply:
        return Reply(200, [error_output("Something went wrong. Please try again.")], error="error-output")

    def add_routes(self, app: web.Application) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            key = request.headers.get("FERMION-API-KEY", "")
            credential = fingerprint(key) if key else None
            refusal = None if key in self.api_keys else self.auth_refusal(None)
            calls = parse_calls(await request.read())

            def produce() -> Reply:
                if calls is None:
                    return self.error(400, "BAD_REQUEST", "The body must be {data: [{data: {...}}]}.")
                now = self.sim.now()
                outputs: list[dict[str, Any]] = []
                for session_id, top in calls[:1] if self.first_call_only else calls:
                    stream = self.find(session_id)
                    if stream is None:
                        outputs.append(error_output(f"Live event session {session_id} not found."))
                    else:
                        outputs.append({"output": {"status": "ok", "data": session_stats(stream, now, top)}})
                return Reply(200, outputs)

            streams = [session_id for session_id, _ in calls or []]
            call = Call(self, "get-live-event-session-stats", credential, refusal, produce, streams)
            return await serve(request, call)

        app.router.add_post(self.prefix + "/public/get-live-event-session-stats", handle)
