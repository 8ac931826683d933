"""Fake Cloudflare RealtimeKit: livestream list, active session, app analytics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .common import Call, Reply, VendorProfile, bearer, fingerprint, int_param, iso_z, serve
from .curves import SimStream
from .ratelimit import Verdict, retry_after_header
from .state import Simulator

PREFIX = "/cloudflare/client/v4"
KIT = PREFIX + "/accounts/{account_id}/realtime/kit/{app_id}"
_STATUSES = ("LIVE", "IDLE", "ERRORED", "INVOKED")


class Cloudflare(VendorProfile):
    name = "cloudflare"

    def error_body(self, status: int, code: str, message: str) -> Any:
        number = int(code) if code.isdigit() else 10001
        return {"success": False, "errors": [{"code": number, "message": message}], "messages": []}

    def over_limit(self, retry_after: float) -> Reply:
        reply = self.error(429, "971", "Please wait and consider throttling your request speed")
        reply.headers["Retry-After"] = retry_after_header(retry_after)
        return reply

    def auth_refusal(self, code: int | None) -> Reply:
        return self.error(401, "10000", "Authentication error")

    def throttle200(self, code: int | None) -> Reply:
        return self.error(200, "971", "Please wait and consider throttling your request speed")

    def error200(self, code: int | None) -> Reply:
        return self.error(200, "10001", "Internal error, please try again")

    def decorate(self, reply: Reply, verdict: Verdict | None) -> Reply:
        if verdict is not None and verdict.limit is not None:
            reply.headers["X-RateLimit-Limit"] = str(verdict.limit)
            reply.headers["X-RateLimit-Remaining"] = str(verdict.remaining or 0)
        return reply


def _number(value: float, as_string: bool) -> int | str:
    number = round(value)
    return str(number) if as_string else number


def status(stream: SimStream, now: float) -> str:
    if stream.is_live(now):
        return "LIVE"
    return "INVOKED" if stream.latest_session(now) is None else "IDLE"


def livestream(sim: Simulator, stream: SimStream, now: float) -> dict[str, Any]:
    strings = stream.key in sim.cf_string_numbers
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


def session_details(sim: Simulator, stream: SimStream, now: float) -> dict[str, Any] | None:
    session = stream.latest_session(now)
    if session is None:
        return None
    stream.advance(now)
    strings = stream.key in sim.cf_string_numbers
    stopped = session.end if session.end is not None and session.end <= now else None
    return {
        "id": session.id,
        "created_at": iso_z(session.start, millis=True),
        "err_message": None,
        "ingest_seconds": _number(stream.live_seconds, strings),
        "invoked_time": iso_z(session.start, millis=True),
        "livestream_id": stream.key,
        "started_time": iso_z(session.start, millis=True),
        "stopped_time": iso_z(stopped, millis=True) if stopped is not None else None,
        "updated_at": iso_z(now, millis=True),
        "viewer_seconds": _number(stream.viewer_seconds, strings),
    }


def list_livestreams(sim: Simulator, profile: Cloudflare, query: Mapping[str, str]) -> Reply:
    object_form = sim.cf_list_form == "object"
    try:
        page_no = int_param(query.get("page_no"), 1)
        per_page = 1 if object_form else int_param(query.get("per_page"), 20, maximum=100)
    except ValueError:
        return profile.error(400, "7003", "page_no and per_page must be positive numbers")
    now = sim.now()
    wanted = query.get("status")
    if wanted and wanted not in _STATUSES:
        return profile.error(400, "7003", f"status must be one of {', '.join(_STATUSES)}")
    streams = [s for s in sim.visible("cloudflare") if not wanted or status(s, now) == wanted]
    first = (page_no - 1) * per_page
    page = [livestream(sim, s, now) for s in streams[first : first + per_page]]
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


def add_routes(app: web.Application, sim: Simulator) -> None:
    profile = Cloudflare(sim)

    def wrong_app(request: web.Request) -> Reply | None:
        info = request.match_info
        if info["account_id"] != sim.credentials.cf_account or info["app_id"] != sim.credentials.cf_app:
            return profile.error(403, "9109", "Unauthorized to access requested resource")
        return None

    def authenticate(request: web.Request) -> tuple[str | None, Reply | None]:
        token = bearer(request.headers.get("Authorization"))
        credential = fingerprint(token) if token else None
        return credential, None if token in sim.credentials.cf_tokens else profile.auth_refusal(None)

    async def livestreams(request: web.Request) -> web.Response:
        credential, refusal = authenticate(request)

        def produce() -> Reply:
            return wrong_app(request) or list_livestreams(sim, profile, request.query)

        return await serve(request, Call(profile, "livestreams", credential, refusal, produce))

    def session_reply(request: web.Request, livestream_id: str, *, active_only: bool) -> Reply:
        refused = wrong_app(request)
        if refused is not None:
            return refused
        stream = sim.find("cloudflare", livestream_id)
        if stream is None:
            return profile.error(404, "1404", f"Livestream {livestream_id} not found")
        now = sim.now()
        if active_only and sim.cf_inactive_session_404 and not stream.is_live(now):
            return profile.error(404, "1404", f"No active livestream session for {livestream_id}")
        data: dict[str, Any] = {
            "livestream": livestream(sim, stream, now),
            "session": session_details(sim, stream, now),
        }
        if not active_only:
            count = len([s for s in stream.sessions if s.start <= now])
            data["paging"] = {"start_offset": 1 if count else 0, "end_offset": count, "total_count": count}
        return Reply(200, {"success": True, "data": data})

    async def active_session(request: web.Request) -> web.Response:
        return await one_livestream(request, active_only=True)

    async def livestream_sessions(request: web.Request) -> web.Response:
        return await one_livestream(request, active_only=False)

    async def one_livestream(request: web.Request, *, active_only: bool) -> web.Response:
        credential, refusal = authenticate(request)
        livestream_id = request.match_info["livestream_id"]
        endpoint = "active-livestream-session" if active_only else "livestream"

        def produce() -> Reply:
            return session_reply(request, livestream_id, active_only=active_only)

        call = Call(profile, endpoint, credential, refusal, produce, (livestream_id,))
        return await serve(request, call)

    async def overall(request: web.Request) -> web.Response:
        credential, refusal = authenticate(request)

        def produce() -> Reply:
            refused = wrong_app(request)
            if refused is not None:
                return refused
            now = sim.now()
            every = list(sim.streams["cloudflare"].values())
            for stream in every:
                stream.advance(now)
            data = {
                "count": len([s for s in every if s.created_at <= now]),
                "total_ingest_seconds": round(sum(s.live_seconds for s in every)),
                "total_viewer_seconds": round(sum(s.viewer_seconds for s in every)),
            }
            return Reply(200, {"success": True, "data": data})

        return await serve(request, Call(profile, "analytics-overall", credential, refusal, produce))

    app.router.add_get(KIT + "/livestreams", livestreams)
    app.router.add_get(KIT + "/livestreams/{livestream_id}/active-livestream-session", active_session)
    app.router.add_get(KIT + "/livestreams/{livestream_id}", livestream_sessions)
    app.router.add_get(KIT + "/analytics/livestreams/overall", overall)
