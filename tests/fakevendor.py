"""A provider written for the tests, and the fake vendor API it polls.

The fake vendor is a real aiohttp server; each stream id can be told to misbehave
(`fail`), which is how the core's failure rules are tested without any real vendor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web
from pydantic import Field

from exporter.config.registry import register
from exporter.config.schema import CredentialsBase, DiscoveringSource, Secret, TargetBase
from exporter.model.clock import Clock
from exporter.model.errors import GoneError, ParseError, PollError, ThrottledError
from exporter.model.samples import Origin, Outcome, Sample, Target
from exporter.model.windows import Window
from exporter.providers.base import Provider

API_KEY = "tv-secret-key-0123456789"


class TVCredentials(CredentialsBase):
    api_key: Secret


class TVTarget(TargetBase):
    stream_id: str

    def key(self) -> str:
        return self.stream_id

    def default_stream(self) -> str:
        return f"tv/{self.stream_id}"


class TVSource(DiscoveringSource):
    provider: str = "testvendor"
    credentials: TVCredentials
    targets: tuple[TVTarget, ...] = ()
    batch_size: int = Field(default=1, ge=1)
    app_metrics: bool = False


class TestVendor(Provider[TVSource, TVTarget]):
    name = "testvendor"
    Source = TVSource
    default_base_url = None
    default_rate_limits: ClassVar[Mapping[str, tuple[Window, ...]]] = {
        "default": (Window(600, 60.0),),
        "list": (Window(100, 1.0),),
    }
    discovery_bucket = "list"

    def app_metrics(self) -> bool:
        return self.source.app_metrics

    def _headers(self) -> dict[str, str]:
        return {"X-Key": self.source.credentials.api_key.get_secret_value()}

    def batch_size(self) -> int:
        return self.source.batch_size

    async def discover(self) -> list[Target[TVTarget]]:
        r = await self.http.request(
            "GET", f"{self.base_url}/streams", endpoint="list", bucket="list", headers=self._headers()
        )
        ids = r.json()["streams"]
        return [Target.of(TVTarget(stream_id=i), Origin.DISCOVERY) for i in ids]

    async def poll(self, batch: Sequence[Target[TVTarget]]) -> Mapping[str, Outcome]:
        if len(batch) > 1:
            r = await self.http.request(
                "POST",
                f"{self.base_url}/batch",
                endpoint="batch",
                headers=self._headers(),
                json={"ids": [t.key for t in batch]},
            )
            out: dict[str, Outcome] = {}
            for item in r.json()["results"]:
                out[item["id"]] = GoneError("stream gone") if item.get("error") else self._samples(item)
            return out
        (t,) = batch
        r = await self.http.request(
            "GET", f"{self.base_url}/streams/{t.key}", endpoint="stream", headers=self._headers()
        )
        doc = r.json()
        if doc.get("throttled"):
            raise ThrottledError("stream: vendor says too frequent", retry_after=doc.get("retry_after"))
        return {t.key: self._samples(doc)}

    def _samples(self, doc: Mapping[str, Any]) -> Sequence[Sample] | PollError:
        try:
            return [
                Sample.of("livestream_concurrent_viewers", float(doc["viewers"])),
                Sample.of("livestream_likes_total", float(doc.get("likes", 0))),
                Sample.of("livestream_live", 1.0 if doc.get("status", "LIVE") == "LIVE" else 0.0),
                *(
                    Sample.of("livestream_status", 1.0 if doc.get("status", "LIVE") == s else 0.0, status=s)
                    for s in ("LIVE", "IDLE")
                ),
            ]
        except (KeyError, TypeError, ValueError):
            return ParseError("stream: answer lacks viewers")

    async def poll_app(self) -> Sequence[Sample]:
        r = await self.http.request("GET", f"{self.base_url}/app", endpoint="app", headers=self._headers())
        return [Sample.of("livestream_app_livestreams", float(r.json()["count"]))]


def install() -> None:
    register(TestVendor)


@dataclass
class FakeVendor:
    """State of the fake vendor API: viewers per stream, faults, and a request log."""

    viewers: dict[str, float] = field(default_factory=lambda: {"a": 100.0, "b": 200.0, "c": 300.0})
    listed: list[str] = field(default_factory=lambda: ["a", "b", "c"])
    #: stream id -> fault: "500", "429", "html", "truncated", "slow", "gone", "throttle200", "auth"
    faults: dict[str, str] = field(default_factory=dict)
    retry_after: str = "2"
    slow_seconds: float = 5.0
    app_count: int = 7
    log: list[tuple[str, str]] = field(default_factory=list)
    short_batches: bool = False
    #: the clock "slow" answers wait on (real time when None)
    clock: Clock | None = None
    #: stream ids whose "slow" answer is being prepared right now
    answering: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/streams", self._list)
        app.router.add_get("/streams/{id}", self._stream)
        app.router.add_post("/batch", self._batch)
        app.router.add_get("/app", self._app)
        return app

    def _auth(self, request: web.Request) -> bool:
        return request.headers.get("X-Key") == API_KEY

    async def _list(self, request: web.Request) -> web.Response:
        self.log.append(("list", ""))
        if not self._auth(request):
            return web.json_response({"error": "bad key"}, status=401)
        return web.json_response({"streams": self.listed})

    async def _app(self, request: web.Request) -> web.Response:
        self.log.append(("app", ""))
        return web.json_response({"count": self.app_count})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        self.log.append(("stream", sid))
        fault = self.faults.get(sid)
        if not self._auth(request) or fault == "auth":
            return web.json_response({"error": "bad key"}, status=401)
        if fault == "500":
            return web.json_response({"error": "boom"}, status=500)
        if fault == "429":
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": self.retry_after}
            )
        if fault == "html":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if fault == "truncated":
            return web.Response(text='{"viewers": 1', content_type="application/json")
        if fault == "slow":
            self.answering.add(sid)
            try:
                await (self.clock.sleep if self.clock else asyncio.sleep)(self.slow_seconds)
            finally:
                self.answering.discard(sid)
        if fault == "throttle200":
            return web.json_response({"throttled": True, "retry_after": 3})
        if fault == "gone" or sid not in self.viewers:
            return web.json_response({"error": "no such stream"}, status=404)
        return web.json_response({"viewers": self.viewers[sid], "likes": 5, "status": "LIVE"})

    async def _batch(self, request: web.Request) -> web.Response:
        ids = (await request.json())["ids"]
        self.log.append(("batch", ",".join(ids)))
        if self.short_batches:
            ids = ids[:1]
        return web.json_response(
            {
                "results": [
                    {"id": i, "viewers": self.viewers[i], "likes": 5}
                    if i in self.viewers
                    else {"id": i, "error": "gone"}
                    for i in ids
                ]
            }
        )
