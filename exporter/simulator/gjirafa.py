"""Fake Gjirafa VP analytics: audio/video live consumption per project."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from aiohttp import web

from .common import Reply, bearer, fingerprint, int_param, iso_naive, iso_z
from .core import Catalog, Limits, Settings, VendorSim, register
from .curves import SimStream
from .pipeline import Call, serve

DEMO_KEY: Final = "demo-gjirafa-api-key-7f3c9a51"  # fake, accepted by the simulator only
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


def consumption(stream: SimStream, now: float, interval_minutes: int) -> dict[str, Any]:
    """Intervals of `interval_minutes`, oldest first, the current (partial) one last."""
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


@register
class Gjirafa(VendorSim):
    """Bearer API key; success/errors envelope; no published rate limit."""

    name = "gjirafa"
    prefix = "/gjirafa"
    limits: ClassVar[Limits] = {}  # none published
    scale = 1.0
    scenarios: ClassVar[Catalog] = {  # stream key: {project_id}/{media}
        "vp-news/audio": "rising",
        "vp-news/video": "falling",
        "vp-sport/video": "drop",
        "vp-radio/audio": "ends",
        "vp-concert/video": "starts",
    }
    quick_first_cycle: ClassVar[Settings] = {"rate_limit": [{"requests": 600, "per": "1m"}]}
    demo_latency = (0.12, 0.06)
    over_limit_error = ("TooManyRequests", "Too many requests.")
    auth_error = ("Unauthorized", "Unauthorized: the API key is not valid.")

    api_keys: set[str]  # accepted API keys

    def reset(self) -> None:
        super().reset()
        self.api_keys = {DEMO_KEY}

    @classmethod
    def stream_key(cls, n: int) -> str:
        """{project_id}/{media}: each project has its video, then its audio."""
        return f"vp-live-{(n + 1) // 2:05d}/{'video' if n % 2 else 'audio'}"

    def stream_attrs(self, key: str, scenario: str, index: int) -> dict[str, str]:
        attrs = super().stream_attrs(key, scenario, index)
        parts = key.split("/")
        if len(parts) == 2:
            attrs.update(project_id=parts[0], media=parts[1])
        return attrs

    @classmethod
    def demo_fields(cls) -> dict[str, Any]:
        targets: list[dict[str, Any]] = []
        for index, key in enumerate(cls.demo_keys()):
            project_id, media = key.split("/")
            targets.append(
                {"project_id": project_id, "media": media, "interval_length": 1 if index == 0 else 5}
            )
        return {"credentials": {"api_key": DEMO_KEY}, "targets": targets}

    def error_body(self, status: int, code: str, message: str) -> Any:
        return envelope(status, errors=[message])

    def throttle200(self, code: int | None) -> Reply:
        return Reply(200, envelope(429, errors=["Too many requests."], success=False), error="throttled")

    def error200(self, code: int | None) -> Reply:
        body = envelope(200, errors=["An unexpected error occurred while fetching the data."], success=False)
        return Reply(200, body, error="success:false")

    def add_routes(self, app: web.Application) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            project = request.match_info["project_id"]
            media = "audio" if request.match_info["kind"].startswith("audio") else "video"
            key = f"{project}/{media}"
            token = bearer(request.headers.get("Authorization"))
            credential = fingerprint(token) if token else None
            refusal = None if token in self.api_keys else self.auth_refusal(None)

            def produce() -> Reply:
                try:
                    minutes = int_param(
                        request.query.get("intervalLength"), _DEFAULT_INTERVAL_MINUTES, maximum=1440
                    )
                except ValueError:
                    return self.error(400, "BadRequest", "intervalLength must be a positive integer.")
                stream = self.find(key)
                if stream is None:
                    return self.error(404, "NotFound", "Result Not Found")
                return Reply(200, envelope(200, consumption(stream, self.sim.now(), minutes)))

            endpoint = f"{media}LiveConsumption"
            return await serve(request, Call(self, endpoint, credential, refusal, produce, (key,)))

        app.router.add_get(
            self.prefix
            + "/api/v1/projects/{project_id}/dashboard/{kind:audioLiveConsumption|videoLiveConsumption}",
            handle,
        )
