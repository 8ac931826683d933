"""Fake Fermion: live event session stats (a list of calls in, a list of outputs out)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .common import Call, Reply, VendorProfile, fingerprint, iso_z, serve
from .curves import SimStream
from .ratelimit import retry_after_header
from .state import Simulator

PREFIX = "/fermion/api"
_SEGMENT_SECONDS = 300.0
_MAX_SEGMENTS = 12
_MAX_TOP_USERS = 5
SCHOOL_NOT_FOUND = "Fermion School not found! Please check your API key."


def error_output(message: str) -> dict[str, Any]:
    return {"output": {"status": "error", "errorMessage": message}}


class Fermion(VendorProfile):
    name = "fermion"

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"error": {"code": code, "message": message}}

    def over_limit(self, retry_after: float) -> Reply:
        reply = self.error(429, "TOO_MANY_REQUESTS", "Rate limit exceeded: 60 requests per minute.")
        reply.headers["Retry-After"] = retry_after_header(retry_after)
        return reply

    def auth_refusal(self, code: int | None) -> Reply:
        return Reply(200, [error_output(SCHOOL_NOT_FOUND)], error="school-not-found")

    def throttle200(self, code: int | None) -> Reply:
        return Reply(200, [error_output("Too many requests. Please try again later.")], error="throttled")

    def error200(self, code: int | None) -> Reply:
        return Reply(200, [error_output("Something went wrong. Please try again.")], error="error-output")


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


def add_routes(app: web.Application, sim: Simulator) -> None:
    profile = Fermion(sim)

    async def handle(request: web.Request) -> web.Response:
        key = request.headers.get("FERMION-API-KEY", "")
        credential = fingerprint(key) if key else None
        refusal = None if key in sim.credentials.fermion_keys else profile.auth_refusal(None)
        calls = parse_calls(await request.read())

        def produce() -> Reply:
            if calls is None:
                return profile.error(400, "BAD_REQUEST", "The body must be {data: [{data: {...}}]}.")
            now = sim.now()
            outputs: list[dict[str, Any]] = []
            answered = calls[:1] if sim.fermion_first_call_only else calls
            for session_id, top in answered:
                stream = sim.find("fermion", session_id)
                if stream is None:
                    outputs.append(error_output(f"Live event session {session_id} not found."))
                else:
                    outputs.append({"output": {"status": "ok", "data": session_stats(stream, now, top)}})
            return Reply(200, outputs)

        streams = [session_id for session_id, _ in calls or []]
        return await serve(
            request, Call(profile, "get-live-event-session-stats", credential, refusal, produce, streams)
        )

    app.router.add_post(PREFIX + "/public/get-live-event-session-stats", handle)
