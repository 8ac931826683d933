"""Fake Gjirafa VP analytics: audio/video live consumption per project."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .common import Call, Reply, VendorProfile, bearer, fingerprint, int_param, iso_naive, iso_z, serve
from .ratelimit import retry_after_header
from .state import Simulator

PREFIX = "/gjirafa"
_MAX_INTERVALS = 24
_DEFAULT_INTERVAL_MINUTES = 60


def envelope(
    status: int, result: Any = None, errors: list[str] | None = None, *, success: bool | None = None
) -> dict[str, Any]:
    ok = status < 400 and not errors if success is None else success
    return {
        "success": ok,
        "errors": errors or [],
        "messages": ["Request completed successfully."] if ok else [],
        "result": result,
        "resultInfo": None,
        "statusCode": status,
    }


class Gjirafa(VendorProfile):
    name = "gjirafa"

    def error_body(self, status: int, code: str, message: str) -> Any:
        return envelope(status, errors=[message])

    def over_limit(self, retry_after: float) -> Reply:
        reply = self.error(429, "TooManyRequests", "Too many requests.")
        reply.headers["Retry-After"] = retry_after_header(retry_after)
        return reply

    def auth_refusal(self, code: int | None) -> Reply:
        return self.error(401, "Unauthorized", "Unauthorized: the API key is not valid.")

    def throttle200(self, code: int | None) -> Reply:
        return Reply(200, envelope(429, errors=["Too many requests."], success=False), error="throttled")

    def error200(self, code: int | None) -> Reply:
        body = envelope(200, errors=["An unexpected error occurred while fetching the data."], success=False)
        return Reply(200, body, error="success:false")


def consumption(sim: Simulator, key: str, interval_minutes: int) -> dict[str, Any]:
    """Intervals of `interval_minutes`, oldest first, the current (partial) one last."""
    stream = sim.stream("gjirafa", key)
    now = sim.now()
    length = interval_minutes * 60.0
    current = int(now // length)
    count = min(_MAX_INTERVALS, max(1, 1440 // interval_minutes))
    points: list[dict[str, Any]] = []
    for index in range(current - count + 1, current + 1):
        start = index * length
        value = stream.viewers(now) if index == current else round(stream.viewers_at(start + length / 2))
        # Some dates carry a zone, some do not (UTC then), as the vendor's own answers do.
        date = iso_z(start, millis=True) if index % 2 == 0 else iso_naive(start)
        points.append({"uniqueViewers": value, "date": date})
    values = [p["uniqueViewers"] for p in points]
    total = max(values) + sum(values) // 20
    return {"liveViewers": points, "total": total}


def add_routes(app: web.Application, sim: Simulator) -> None:
    profile = Gjirafa(sim)

    async def handle(request: web.Request) -> web.Response:
        project = request.match_info["project_id"]
        media = "audio" if request.match_info["kind"].startswith("audio") else "video"
        key = f"{project}/{media}"
        token = bearer(request.headers.get("Authorization"))
        credential = fingerprint(token) if token else None
        refusal = None if token in sim.credentials.gjirafa_keys else profile.auth_refusal(None)

        def produce() -> Reply:
            try:
                minutes = int_param(
                    request.query.get("intervalLength"), _DEFAULT_INTERVAL_MINUTES, maximum=1440
                )
            except ValueError:
                return profile.error(400, "BadRequest", "intervalLength must be a positive integer.")
            if sim.find("gjirafa", key) is None:
                return profile.error(404, "NotFound", "Result Not Found")
            return Reply(200, envelope(200, consumption(sim, key, minutes)))

        endpoint = f"{media}LiveConsumption"
        return await serve(request, Call(profile, endpoint, credential, refusal, produce, (key,)))

    app.router.add_get(
        PREFIX + "/api/v1/projects/{project_id}/dashboard/{kind:audioLiveConsumption|videoLiveConsumption}",
        handle,
    )
