"""The vendor simulator against its documented behaviour, through aiohttp's test client."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import exporter.simulator as simulator_package
from exporter.model.clock import FakeClock as LoopClock
from exporter.providers.signing import sfd_sign_headers, tencent_usersig
from exporter.simulator import (
    BASE_PATHS,
    DEMO_SCENARIOS,
    DEMO_STREAMS,
    DROP_AFTER,
    END_AFTER,
    ENDED_BEFORE,
    ENDED_DURATION,
    FAULT_KINDS,
    START_AFTER,
    VENDORS,
    Latency,
    Network,
    Pieces,
    Simulator,
    VendorSim,
    create_app,
    demo_config,
    demo_simulator,
    register,
    start_simulator,
    unregister,
    vendor_classes,
)
from exporter.simulator.cloudflare import DEMO_ACCOUNT as DEMO_CF_ACCOUNT
from exporter.simulator.cloudflare import DEMO_APP as DEMO_CF_APP
from exporter.simulator.cloudflare import DEMO_TOKEN as DEMO_CF_TOKEN
from exporter.simulator.cloudflare import Cloudflare
from exporter.simulator.common import Reply, iso_z
from exporter.simulator.core import DEMO_LOG_RECORDS, Catalog, Limits, Settings
from exporter.simulator.curves import SimStream
from exporter.simulator.fermion import DEMO_KEY as DEMO_FERMION_KEY
from exporter.simulator.gjirafa import DEMO_KEY as DEMO_GJIRAFA_KEY
from exporter.simulator.limits import RequestRecord, SlidingWindowLimiter, max_in_window
from exporter.simulator.pipeline import Call, serve
from exporter.simulator.swiftfederation import DEMO_KEY_ID as DEMO_SFD_KEY_ID
from exporter.simulator.swiftfederation import DEMO_SECRET as DEMO_SFD_SECRET
from exporter.simulator.tencent import DEMO_APP_ID as DEMO_TENCENT_APP_ID
from exporter.simulator.tencent import DEMO_IDENTIFIER as DEMO_TENCENT_IDENTIFIER
from exporter.simulator.tencent import DEMO_SECRET as DEMO_TENCENT_SECRET
from exporter.simulator.tencent import DESTROY_AFTER_END as TENCENT_DESTROY_AFTER_END
from exporter.simulator.tencent import Tencent

Client = TestClient[Any, Any]

START = 1_750_000_000.0
CF = f"/cloudflare/client/v4/accounts/{DEMO_CF_ACCOUNT}/realtime/kit/{DEMO_CF_APP}"
CF_AUTH = {"Authorization": f"Bearer {DEMO_CF_TOKEN}"}
GJ_AUTH = {"Authorization": f"Bearer {DEMO_GJIRAFA_KEY}"}
FERMION_URL = "/fermion/api/public/get-live-event-session-stats"
SFD_VIEWERS = "/swiftfederation/lls/v1.0/analytics/delivery/queryConcurrentViewers"
SFD_STREAMS = "/swiftfederation/lls/v1.0/stream"


class FakeClock:
    def __init__(self, t: float = START) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(clock=clock, slow_seconds=0.2, hang_seconds=10.0)


@pytest.fixture
async def client(aiohttp_client: Any, sim: Simulator) -> Client:
    c: Client = await aiohttp_client(create_app(sim))
    return c


# ---------------------------------------------------------------------- request helpers


def gjirafa_path(key: str = "vp-news/audio", interval: int | None = 5) -> str:
    project, media = key.split("/")
    query = f"?intervalLength={interval}" if interval is not None else ""
    return f"/gjirafa/api/v1/projects/{project}/dashboard/{media}LiveConsumption{query}"


def sfd_query(key: str = "live.example.com/demoapp/main", **extra: str) -> str:
    domain, app, stream = key.split("/")
    return urlencode({"domain": domain, "app": app, "stream": stream, "region": "SG", **extra})


async def sfd_get(
    client: Client,
    clock: FakeClock,
    path_query: str,
    *,
    key_id: str = DEMO_SFD_KEY_ID,
    secret: str = DEMO_SFD_SECRET,
    skew: float = 0.0,
    nonce: int = 12345,
    tamper: dict[str, str] | None = None,
) -> aiohttp.ClientResponse:
    host = f"{client.server.host}:{client.server.port}"
    headers = sfd_sign_headers(
        method="GET",
        url_path_with_query=path_query,
        host=host,
        access_key_id=key_id,
        access_key_secret=secret,
        now=datetime.fromtimestamp(clock.t + skew, UTC),
        nonce=nonce,
        fzone="SG",
    )
    headers.update(tamper or {})
    return await client.get(path_query, headers=headers)


async def fermion_post(client: Client, *sessions: str, key: str = DEMO_FERMION_KEY) -> aiohttp.ClientResponse:
    body = {"data": [{"data": {"liveEventSessionId": s, "topUserCount": 3}} for s in sessions]}
    return await client.post(FERMION_URL, json=body, headers={"FERMION-API-KEY": key})


def usersig(
    clock: FakeClock, *, secret: str = DEMO_TENCENT_SECRET, expire: int = 3600, age: float = 0
) -> str:
    return tencent_usersig(
        sdk_app_id=DEMO_TENCENT_APP_ID,
        identifier=DEMO_TENCENT_IDENTIFIER,
        secret_key=secret,
        now=int(clock.t - age),
        expire=expire,
    )


async def tencent_post(
    client: Client, clock: FakeClock, endpoint: str, body: dict[str, Any], *, sig: str | None = None
) -> dict[str, Any]:
    query = urlencode(
        {
            "sdkappid": DEMO_TENCENT_APP_ID,
            "identifier": DEMO_TENCENT_IDENTIFIER,
            "usersig": sig if sig is not None else usersig(clock),
            "random": 99999999,
            "contenttype": "json",
        }
    )
    resp = await client.post(f"/tencent/v4/live_engine_http_srv/{endpoint}?{query}", json=body)
    assert resp.status == 200
    result: dict[str, Any] = await resp.json()
    return result


# ---------------------------------------------------------------------- curves and scenarios


def test_scenarios_move_with_time(sim: Simulator, clock: FakeClock) -> None:
    for vendor, scenarios in DEMO_SCENARIOS.items():
        by = {scenario: key for key, scenario in scenarios.items()}
        before = {s: sim.viewers(vendor, k) for s, k in by.items()}
        assert before["starts"] == 0
        clock.advance(DROP_AFTER + 10)
        after_drop = {s: sim.viewers(vendor, k) for s, k in by.items()}
        assert after_drop["rising"] > before["rising"]
        assert after_drop["falling"] < before["falling"]
        assert after_drop["drop"] < before["drop"] / 2
        assert after_drop["starts"] > 0
        clock.advance(END_AFTER)
        assert sim.viewers(vendor, by["ends"]) == 0
        clock.t = START


def test_overrides_drop_end_start_remove(sim: Simulator, clock: FakeClock) -> None:
    key = DEMO_STREAMS["fermion"][0]
    sim.set_viewers("fermion", key, 90)
    assert sim.viewers("fermion", key) == 90
    sim.drop("fermion", key, 1 / 3)
    assert sim.viewers("fermion", key) == 30
    sim.end_stream("fermion", key)
    assert sim.viewers("fermion", key) == 0
    clock.advance(10)
    sim.start_stream("fermion", key, 50)
    assert sim.viewers("fermion", key) == 50
    sim.start_stream("fermion", "brand-new", 7)
    assert sim.viewers("fermion", "brand-new") == 7
    sim.remove_stream("fermion", "brand-new")
    assert sim.find("fermion", "brand-new") is None
    with pytest.raises(KeyError):
        sim.set_viewers("fermion", "nope", 1)
    with pytest.raises(ValueError):
        sim.inject("nobody", "5xx")
    with pytest.raises(ValueError):
        sim.inject("fermion", "meteor")


def test_demo_config_shape() -> None:
    config = demo_config("http://127.0.0.1:9999/")
    sources = {s["provider"]: s for s in config["sources"]}
    assert set(sources) == set(VENDORS)
    assert set(config["global"]) == {"interval", "timeout", "stale_after"}
    assert sources["gjirafa"]["base_url"] == "http://127.0.0.1:9999/gjirafa"
    assert sources["swiftfederation"]["base_url"] == "http://127.0.0.1:9999/swiftfederation"
    assert sources["fermion"]["base_url"] == "http://127.0.0.1:9999/fermion/api"
    assert sources["cloudflare"]["base_url"] == "http://127.0.0.1:9999/cloudflare/client/v4"
    assert sources["tencent"]["base_url"] == "http://127.0.0.1:9999/tencent"
    assert sources["fermion"]["batch_size"] == 2
    for vendor in ("swiftfederation", "cloudflare", "tencent"):
        assert sources[vendor]["discover"] is True
        assert sources[vendor]["targets"]
    assert sources["cloudflare"]["account_id"] == DEMO_CF_ACCOUNT
    assert len(sources["gjirafa"]["targets"]) == len(DEMO_STREAMS["gjirafa"])
    assert len({s["name"] for s in config["sources"]}) == len(VENDORS)


def test_limiter_and_max_in_window() -> None:
    limiter = SlidingWindowLimiter()
    windows = [(100, 60.0), (1000, 3600.0)]
    t = 0.0
    accepted = 0
    for _ in range(1200):
        if limiter.check(("k",), windows, t).allowed:
            accepted += 1
        t += 0.7  # 85/minute: only the hourly window binds
    assert accepted == 1000
    refused = limiter.check(("k",), windows, t)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 3600
    assert max_in_window([0, 1, 2, 59, 61], 60) == 4
    assert max_in_window([0, 60, 120], 60) == 1
    assert max_in_window([], 60) == 0


# ---------------------------------------------------------------------- vendors: one module each


class Echo(VendorSim):
    """A sixth vendor, declared in one class as a vendor module would: the whole of its part."""

    name = "echo"
    prefix = "/echo"
    limits: ClassVar[Limits] = {"*": [(2, 60.0)]}
    scale = 10.0
    scenarios: ClassVar[Catalog] = {"echo-one": "rising", "echo-two": "starts"}
    quirks: ClassVar[Settings] = {"echo_shout": False}
    shout: bool

    def set_quirk(self, name: str, value: object) -> None:
        if name == "echo_shout":
            self.shout = bool(value)
        else:
            super().set_quirk(name, value)

    def adjust_demo_stream(self, stream: SimStream, scenario: str) -> None:
        if scenario == "starts":
            stream.created_at = stream.sessions[0].start

    @classmethod
    def demo_fields(cls) -> dict[str, Any]:
        return {"credentials": {"api_key": "echo-key"}, "targets": [{"id": k} for k in cls.demo_keys()]}

    def add_routes(self, app: web.Application) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            key = request.match_info["key"]

            def produce() -> Reply:
                stream = self.find(key)
                if stream is None:
                    return self.error(404, "NotFound", key)
                viewers = stream.viewers(self.sim.now())
                return Reply(200, {"viewers": viewers, "shout": self.shout})

            return await serve(request, Call(self, "viewers", "echo-key", None, produce, (key,)))

        app.router.add_get(self.prefix + "/{key}", handle)


@pytest.fixture
def echo() -> Iterator[type[Echo]]:
    register(Echo)
    yield Echo
    unregister(Echo.name)


async def test_a_vendor_is_one_registered_class(
    echo: type[Echo], aiohttp_client: Any, clock: FakeClock
) -> None:
    """Registering one VendorSim subclass is all a new vendor needs: the simulator serves it
    under its prefix, with its limits, scale, catalog, quirks and demo source."""
    sim = Simulator(clock=clock)
    assert "echo" in sim.vendors and sim.vendor_of(Echo).shout is False
    assert sim.viewers("echo", "echo-one") == 1200  # the scenario's base viewers times the scale
    assert sim.find("echo", "echo-two") is None  # "starts": created when it goes live
    source = next(s for s in demo_config("http://h:1")["sources"] if s["provider"] == "echo")
    assert source == {
        "name": "demo-echo",
        "provider": "echo",
        "base_url": "http://h:1/echo",
        "credentials": {"api_key": "echo-key"},
        "targets": [{"id": "echo-one"}, {"id": "echo-two"}],
    }
    client: Client = await aiohttp_client(create_app(sim))
    sim.set_quirk("echo_shout", True)
    assert await (await client.get("/echo/echo-one")).json() == {"viewers": 1200, "shout": True}
    sim.inject("echo", "5xx")
    assert (await client.get("/echo/echo-one")).status == 503
    assert (await client.get("/echo/echo-one")).status == 429  # 2 a minute
    assert sim.max_in_window("echo", 60) == 3
    sim.reset()
    assert sim.vendor_of(Echo).shout is False


def test_every_vendor_is_registered_in_name_order() -> None:
    assert VENDORS == tuple(sorted(VENDORS)) == tuple(cls.name for cls in vendor_classes())
    assert [s["provider"] for s in demo_config("http://h:1")["sources"]] == list(VENDORS)
    assert set(BASE_PATHS) == set(DEMO_STREAMS) == set(VENDORS)
    with pytest.raises(ValueError, match="unknown quirk"):
        Simulator().set_quirk("nobody_has_this", True)


def test_the_core_names_no_vendor() -> None:
    """Everything vendor-specific lives in the vendor's own module; the rest names no vendor."""
    vendor_modules = {cls.__module__ for cls in vendor_classes()}
    package = Path(simulator_package.__file__).parent
    core = [p for p in package.glob("*.py") if f"{simulator_package.__name__}.{p.stem}" not in vendor_modules]
    assert len(core) > 5
    for path in core:
        text = path.read_text().lower()
        named = [name for name in VENDORS if name in text]
        assert not named, f"{path.name} names {named}"


# ---------------------------------------------------------------------- gjirafa


async def test_gjirafa_answers(client: Client, sim: Simulator) -> None:
    resp = await client.get(gjirafa_path(), headers=GJ_AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True and body["errors"] == [] and body["statusCode"] == 200
    points = body["result"]["liveViewers"]
    assert points[-1]["uniqueViewers"] == sim.viewers("gjirafa", "vp-news/audio")
    assert {p["date"].endswith("Z") for p in points} == {True, False}
    assert body["result"]["total"] >= max(p["uniqueViewers"] for p in points)
    dates = [datetime.fromisoformat(p["date"].replace("Z", "")) for p in points]
    assert dates == sorted(dates) and dates[1] - dates[0] == timedelta(minutes=5)
    video = await client.get(gjirafa_path("vp-news/video", None), headers=GJ_AUTH)
    assert video.status == 200
    assert (await video.json())["result"]["liveViewers"][-1]["uniqueViewers"] > 0


async def test_gjirafa_refusals(client: Client, sim: Simulator) -> None:
    resp = await client.get(gjirafa_path(), headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    assert (await resp.json())["success"] is False
    assert (await client.get(gjirafa_path())).status == 401
    assert (await client.get(gjirafa_path("nope/audio"), headers=GJ_AUTH)).status == 404
    assert (await client.get(gjirafa_path(interval=0), headers=GJ_AUTH)).status == 400
    sim.remove_stream("gjirafa", "vp-news/audio")
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 404
    records = sim.request_log("gjirafa")
    assert DEMO_GJIRAFA_KEY not in json.dumps(records)
    assert [r["status"] for r in records] == [401, 401, 404, 400, 404]


async def test_gjirafa_success_false_quirk(client: Client, sim: Simulator) -> None:
    sim.inject("gjirafa", "error200")
    resp = await client.get(gjirafa_path(), headers=GJ_AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is False and body["errors"]


# ---------------------------------------------------------------------- swiftfederation


async def test_sfd_concurrent_viewers(client: Client, sim: Simulator, clock: FakeClock) -> None:
    resp = await sfd_get(client, clock, f"{SFD_VIEWERS}?{sfd_query()}")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["domain"] == "live.example.com" and body["stream"] == "main"
    assert body["data"][-1]["concurrentViewers"] == sim.viewers(
        "swiftfederation", "live.example.com/demoapp/main"
    )
    assert all(len(p["timestamp"]) == 16 for p in body["data"])
    # The "backup" stream carries the vendor's malformed timestamp by default.
    backup = await sfd_get(client, clock, f"{SFD_VIEWERS}?{sfd_query('live.example.com/demoapp/backup')}")
    stamps = [p["timestamp"] for p in (await backup.json())["data"]]
    assert len(stamps[-2]) == 15 and len(stamps[-1]) == 16
    # A range, and a bad timestamp.
    end = datetime.fromtimestamp(clock.t, UTC)
    started = (end - timedelta(minutes=30)).strftime("%Y%m%dT%H%M%SZ")
    ranged = await sfd_get(client, clock, f"{SFD_VIEWERS}?{sfd_query(started=started)}")
    assert len((await ranged.json())["data"]) in (6, 7)
    bad = await sfd_get(client, clock, f"{SFD_VIEWERS}?{sfd_query(started='yesterday')}")
    assert bad.status == 400
    assert (await bad.json())["code"] == "LLS.Analytics.InvalidTimestamp"


async def test_sfd_signature_checks(client: Client, clock: FakeClock) -> None:
    url = f"{SFD_VIEWERS}?{sfd_query()}"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"secret": "wrong-secret"}, 401, "Signature.NotMatch"),
        ({"key_id": "UnknownKey"}, 401, "AccessCredential.Invalid"),
        ({"skew": 2 * 3600}, 400, "Signature.Expired"),
        ({"skew": -2 * 3600}, 400, "Signature.Expired"),
        ({"tamper": {"X-SFD-Nonce": "12ab"}}, 400, "Nonce.Invalid"),
        ({"tamper": {"X-SFD-Nonce": "1" * 19}}, 400, "Nonce.Invalid"),
        ({"tamper": {"X-SFD-FZone": "US"}}, 401, "Signature.NotMatch"),
        ({"tamper": {"Authorization": "Bearer x"}}, 401, "AccessCredential.Invalid"),
    ]
    for kwargs, status, code in cases:
        resp = await sfd_get(client, clock, url, **kwargs)
        assert resp.status == status, kwargs
        assert (await resp.json())["code"] == code, kwargs
    # The query string is signed: a request signed without it is refused.
    host = f"{client.server.host}:{client.server.port}"
    headers = sfd_sign_headers(
        method="GET",
        url_path_with_query=SFD_VIEWERS,
        host=host,
        access_key_id=DEMO_SFD_KEY_ID,
        access_key_secret=DEMO_SFD_SECRET,
        now=datetime.fromtimestamp(clock.t, UTC),
        nonce=1,
        fzone=None,
    )
    assert (await client.get(url, headers=headers)).status == 401
    # Within the hour is fine.
    assert (await sfd_get(client, clock, url, skew=3000)).status == 200


async def test_sfd_discovery_follows_the_streams(client: Client, sim: Simulator, clock: FakeClock) -> None:
    url = f"{SFD_STREAMS}?domain=live.example.com&app=demoapp&status=active&streamingStatus=streaming"

    async def listed() -> set[str]:
        resp = await sfd_get(client, clock, url)
        assert resp.status == 200
        streams = (await resp.json())["streams"]
        assert all(
            {"id", "domain", "app", "stream", "status", "latestStreamingAt"} <= set(s) for s in streams
        )
        return {s["stream"] for s in streams}

    assert await listed() == {"main", "backup", "concert", "webinar"}
    clock.advance(START_AFTER + 1)
    assert "late-show" in await listed()
    clock.advance(END_AFTER)
    assert "webinar" not in await listed()
    sim.remove_stream("swiftfederation", "live.example.com/demoapp/main")
    assert "main" not in await listed()
    gone = await sfd_get(client, clock, f"{SFD_VIEWERS}?{sfd_query()}")
    assert gone.status == 404


async def test_sfd_rate_limits(client: Client, sim: Simulator, clock: FakeClock) -> None:
    url = f"{SFD_VIEWERS}?{sfd_query()}"
    for _ in range(100):
        assert (await sfd_get(client, clock, url)).status == 200
        clock.advance(0.1)
    refused = await sfd_get(client, clock, url)
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert sim.max_in_window("swiftfederation", 60) == 101
    clock.advance(60)
    assert (await sfd_get(client, clock, url)).status == 200
    # The hourly limit holds too (spaced out so the minute limit never binds).
    sim.limiter.clear()
    for _ in range(999):
        clock.advance(1.0)
        sim.check_rate("swiftfederation", "queryConcurrentViewers", DEMO_SFD_KEY_ID)
    clock.advance(1.0)
    assert (await sfd_get(client, clock, url)).status == 200
    clock.advance(1.0)
    assert (await sfd_get(client, clock, url)).status == 429


# ---------------------------------------------------------------------- fermion


async def test_fermion_stats(client: Client, sim: Simulator, clock: FakeClock) -> None:
    clock.advance(120)
    resp = await fermion_post(client, "session-algebra", "session-history")
    assert resp.status == 200
    outputs = await resp.json()
    assert len(outputs) == 2
    data = outputs[0]["output"]["data"]
    assert outputs[0]["output"]["status"] == "ok"
    assert data["currentActivelyWatchingDistinctUserCount"] == sim.viewers("fermion", "session-algebra")
    assert data["peakConcurrentUsers"] >= data["currentActivelyWatchingDistinctUserCount"]
    assert data["streamEndedAt"] is None and data["streamStartedAt"].endswith("Z")
    assert data["estimatedStreamDurationInMinutes"] == 2
    assert data["streamSegmentData"]
    assert "@" in data["topUsersByWatchTime"][0]["email"] and len(data["topUsersByWatchTime"]) == 3
    expected = {
        "estimatedStreamDurationInMinutes",
        "streamStartedAt",
        "streamEndedAt",
        "totalMessagesSentCount",
        "instructorMessagesSentCount",
        "pollsConductedCount",
        "uniqueUsersCount",
        "currentActivelyWatchingDistinctUserCount",
        "peakConcurrentUsers",
        "streamSegmentData",
        "topUsersByWatchTime",
    }
    assert set(data) == expected
    clock.advance(END_AFTER)
    ended = (await (await fermion_post(client, "session-chemistry")).json())[0]["output"]["data"]
    assert ended["streamEndedAt"] is not None
    assert ended["currentActivelyWatchingDistinctUserCount"] == 0


async def test_fermion_errors_and_quirk(client: Client, sim: Simulator) -> None:
    bad = await fermion_post(client, "session-algebra", key="wrong")
    assert bad.status == 200
    assert (await bad.json()) == [
        {
            "output": {
                "status": "error",
                "errorMessage": "Fermion School not found! Please check your API key.",
            }
        }
    ]
    mixed = await (await fermion_post(client, "session-algebra", "nope")).json()
    assert [o["output"]["status"] for o in mixed] == ["ok", "error"]
    sim.set_quirk("fermion_first_call_only", True)
    only = await (await fermion_post(client, "session-algebra", "session-history")).json()
    assert len(only) == 1
    resp = await client.post(FERMION_URL, data=b"{", headers={"FERMION-API-KEY": DEMO_FERMION_KEY})
    assert resp.status == 400


async def test_fermion_rate_limit(client: Client, sim: Simulator, clock: FakeClock) -> None:
    for _ in range(60):
        assert (await fermion_post(client, "session-algebra")).status == 200
    refused = await fermion_post(client, "session-algebra")
    assert refused.status == 429 and "Retry-After" in refused.headers
    clock.advance(60)
    assert (await fermion_post(client, "session-algebra")).status == 200


# ---------------------------------------------------------------------- cloudflare


async def test_cloudflare_list_paging_both_forms(client: Client, sim: Simulator, clock: FakeClock) -> None:
    resp = await client.get(f"{CF}/livestreams?page_no=1&per_page=2", headers=CF_AUTH)
    assert resp.status == 200
    assert "X-RateLimit-Limit" in resp.headers and "X-RateLimit-Remaining" in resp.headers
    body = await resp.json()
    assert body["success"] is True and isinstance(body["data"], list)
    assert body["paging"]["total_count"] == 5  # the "starts" livestream does not exist yet
    seen: list[str] = []
    for page in (1, 2, 3):
        r = await client.get(f"{CF}/livestreams?page_no={page}&per_page=2", headers=CF_AUTH)
        seen += [d["id"] for d in (await r.json())["data"]]
    starts = [k for k, s in DEMO_SCENARIOS["cloudflare"].items() if s == "starts"]
    assert seen == [k for k in DEMO_STREAMS["cloudflare"] if k not in starts]
    sim.set_quirk("cf_list_form", "object")
    r = await client.get(f"{CF}/livestreams?page_no=2", headers=CF_AUTH)
    data = (await r.json())["data"]
    assert isinstance(data, dict) and data["id"] == DEMO_STREAMS["cloudflare"][1]
    assert data["paging"] == {"start_offset": 2, "end_offset": 2, "total_count": 5}
    clock.advance(START_AFTER + 1)
    r = await client.get(f"{CF}/livestreams?status=LIVE&per_page=50", headers=CF_AUTH)
    assert (await r.json())["data"]["paging"]["total_count"] == 5


async def test_cloudflare_session_and_status(client: Client, sim: Simulator, clock: FakeClock) -> None:
    ended_id = DEMO_STREAMS["cloudflare"][3]
    stringy_id = DEMO_STREAMS["cloudflare"][1]
    sim.set_viewers("cloudflare", ended_id, 100)
    clock.advance(60)
    r = await client.get(f"{CF}/livestreams/{ended_id}/active-livestream-session", headers=CF_AUTH)
    data = (await r.json())["data"]
    assert data["livestream"]["status"] == "LIVE"
    assert data["session"]["viewer_seconds"] == 6000
    assert data["session"]["ingest_seconds"] == 60
    assert data["session"]["stopped_time"] is None
    r = await client.get(f"{CF}/livestreams/{stringy_id}/active-livestream-session", headers=CF_AUTH)
    session = (await r.json())["data"]["session"]
    assert isinstance(session["viewer_seconds"], str) and int(session["viewer_seconds"]) > 0
    clock.advance(END_AFTER)
    r = await client.get(f"{CF}/livestreams/{ended_id}/active-livestream-session", headers=CF_AUTH)
    data = (await r.json())["data"]
    assert data["livestream"]["status"] == "IDLE" and data["session"]["stopped_time"] is not None
    # Switchable: no live session -> 404 there; GET /livestreams/{id} still gives the last session.
    sim.set_quirk("cf_inactive_session_404", True)
    r = await client.get(f"{CF}/livestreams/{ended_id}/active-livestream-session", headers=CF_AUTH)
    assert r.status == 404
    r = await client.get(f"{CF}/livestreams/{ended_id}", headers=CF_AUTH)
    data = (await r.json())["data"]
    assert data["session"]["stopped_time"] is not None and data["paging"]["total_count"] == 1
    overall = await (await client.get(f"{CF}/analytics/livestreams/overall", headers=CF_AUTH)).json()
    assert overall["data"]["count"] == 6 and overall["data"]["total_viewer_seconds"] > 6000
    sim.remove_stream("cloudflare", ended_id)
    gone = await client.get(f"{CF}/livestreams/{ended_id}/active-livestream-session", headers=CF_AUTH)
    assert gone.status == 404 and (await gone.json())["success"] is False


async def test_cloudflare_auth_and_limits(client: Client, sim: Simulator, clock: FakeClock) -> None:
    r = await client.get(f"{CF}/livestreams", headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    assert (await r.json())["errors"][0]["code"] == 10000
    other = f"/cloudflare/client/v4/accounts/other/realtime/kit/{DEMO_CF_APP}/livestreams"
    assert (await client.get(other, headers=CF_AUTH)).status == 403
    for _ in range(249):  # the 403 above counted: the token was valid
        assert (await client.get(f"{CF}/analytics/livestreams/overall", headers=CF_AUTH)).status == 200
    r = await client.get(f"{CF}/livestreams", headers=CF_AUTH)
    assert r.status == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert (await r.json())["errors"][0]["code"] == 971
    assert sim.max_in_window("cloudflare", 10) == 252
    clock.advance(10)
    assert (await client.get(f"{CF}/livestreams", headers=CF_AUTH)).status == 200


async def test_ended_before_start(client: Client, sim: Simulator, clock: FakeClock) -> None:
    """The "ended" streams already carry an end time, so the demo shows it from the first poll."""
    ended_at = iso_z(clock.t - ENDED_BEFORE, millis=True)
    started_at = iso_z(clock.t - ENDED_BEFORE - ENDED_DURATION, millis=True)
    (cf_id,) = [k for k, s in DEMO_SCENARIOS["cloudflare"].items() if s == "ended"]
    r = await client.get(f"{CF}/livestreams/{cf_id}/active-livestream-session", headers=CF_AUTH)
    data = (await r.json())["data"]
    assert data["livestream"]["status"] == "IDLE"
    assert data["session"]["started_time"] == started_at
    assert data["session"]["stopped_time"] == ended_at
    assert data["session"]["ingest_seconds"] == ENDED_DURATION and data["session"]["viewer_seconds"] > 0
    (session_id,) = [k for k, s in DEMO_SCENARIOS["fermion"].items() if s == "ended"]
    out = (await (await fermion_post(client, session_id)).json())[0]["output"]
    stats = out["data"]
    assert stats["streamEndedAt"].startswith(ended_at[:19])
    assert stats["currentActivelyWatchingDistinctUserCount"] == 0
    assert stats["estimatedStreamDurationInMinutes"] == ENDED_DURATION // 60


# ---------------------------------------------------------------------- tencent


async def test_tencent_stats_grow(client: Client, sim: Simulator, clock: FakeClock) -> None:
    first = await tencent_post(client, clock, "get_room_stats", {"RoomId": "live_room_main"})
    assert first["ErrorCode"] == 0 and first["ActionStatus"] == "OK"
    fields = {
        "TotalViewers",
        "TotalGiftsSent",
        "TotalGiftCoins",
        "TotalUniqueGiftSenders",
        "TotalLikesReceived",
        "TotalMsgCount",
    }
    assert set(first["Response"]) == fields
    clock.advance(600)
    later = await tencent_post(client, clock, "get_room_stats", {"RoomId": "live_room_main"})
    for name in fields:
        assert later["Response"][name] >= first["Response"][name]
    assert later["Response"]["TotalMsgCount"] > first["Response"]["TotalMsgCount"]
    gone = await tencent_post(client, clock, "get_room_stats", {"RoomId": "nope"})
    assert gone["ErrorCode"] == 100004 and gone["ActionStatus"] == "FAIL"


async def test_tencent_usersig_checks(client: Client, clock: FakeClock) -> None:
    body = {"RoomId": "live_room_main"}
    wrong = await tencent_post(client, clock, "get_room_stats", body, sig=usersig(clock, secret="0" * 64))
    assert wrong["ErrorCode"] == 70009
    expired = await tencent_post(
        client, clock, "get_room_stats", body, sig=usersig(clock, expire=60, age=120)
    )
    assert expired["ErrorCode"] == 70001
    garbage = await tencent_post(client, clock, "get_room_stats", body, sig="garbage")
    assert garbage["ErrorCode"] == 70003
    other = tencent_usersig(
        sdk_app_id=DEMO_TENCENT_APP_ID,
        identifier="someone",
        secret_key=DEMO_TENCENT_SECRET,
        now=int(clock.t),
        expire=60,
    )
    assert (await tencent_post(client, clock, "get_room_stats", body, sig=other))["ErrorCode"] == 70013


async def test_tencent_room_list_paging(client: Client, sim: Simulator, clock: FakeClock) -> None:
    async def all_rooms() -> list[dict[str, Any]]:
        rooms: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(10):
            page = await tencent_post(client, clock, "get_room_list", {"Next": cursor, "Count": 2})
            assert page["ErrorCode"] == 0
            rooms += page["Response"]["RoomList"]
            cursor = page["Response"]["Next"]
            if not cursor:
                return rooms
        raise AssertionError("paging never ended")

    rooms = await all_rooms()
    assert [r["RoomId"] for r in rooms] == DEMO_STREAMS["tencent"][:4]
    assert set(rooms[0]) >= {
        "RoomId",
        "RoomName",
        "Owner_Account",
        "CreateTime",
        "ActivityStatus",
        "ViewCount",
    }
    clock.advance(START_AFTER)
    assert len(await all_rooms()) == 5
    clock.advance(END_AFTER + TENCENT_DESTROY_AFTER_END)
    ids = [r["RoomId"] for r in await all_rooms()]
    assert "live_room_talk" not in ids
    gone = await tencent_post(client, clock, "get_room_stats", {"RoomId": "live_room_talk"})
    assert gone["ErrorCode"] == 100004


async def test_tencent_frequency_limits(client: Client, sim: Simulator, clock: FakeClock) -> None:
    sig = usersig(clock)
    for _ in range(10):
        page = await tencent_post(client, clock, "get_room_list", {"Next": "", "Count": 20}, sig=sig)
        assert page["ErrorCode"] == 0
    limited = await tencent_post(client, clock, "get_room_list", {"Next": "", "Count": 20}, sig=sig)
    assert limited["ErrorCode"] == 60018
    # get_room_stats has its own budget of 100/second.
    for _ in range(100):
        stats = await tencent_post(client, clock, "get_room_stats", {"RoomId": "live_room_main"}, sig=sig)
        assert stats["ErrorCode"] == 0
    stats = await tencent_post(client, clock, "get_room_stats", {"RoomId": "live_room_main"}, sig=sig)
    assert stats["ErrorCode"] == 60018
    assert sim.max_in_window("tencent", 1, endpoint="get_room_stats") == 101
    clock.advance(1)
    stats = await tencent_post(client, clock, "get_room_stats", {"RoomId": "live_room_main"}, sig=sig)
    assert stats["ErrorCode"] == 0


# ---------------------------------------------------------------------- faults


async def test_fault_5xx_429_html_truncated(client: Client, sim: Simulator) -> None:
    sim.inject("gjirafa", "5xx", count=2)
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 503
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 503
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 200
    sim.inject("gjirafa", "5xx", code=500)
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 500

    sim.inject("cloudflare", "429")
    r = await client.get(f"{CF}/livestreams", headers=CF_AUTH)
    assert r.status == 429 and r.headers["Retry-After"] == "2"

    sim.inject("fermion", "html")
    r = await fermion_post(client, "session-algebra")
    assert r.status == 502 and r.content_type == "text/html" and "<html>" in await r.text()
    sim.inject("fermion", "html", code=200)
    r = await fermion_post(client, "session-algebra")
    assert r.status == 200 and r.content_type == "text/html"

    sim.inject("cloudflare", "truncated")
    r = await client.get(f"{CF}/livestreams", headers=CF_AUTH)
    assert r.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(await r.text())
    faults = [rec["fault"] for rec in sim.request_log() if rec["fault"]]
    assert faults == ["5xx", "5xx", "5xx", "429", "html", "html", "truncated"]


async def test_fault_auth_throttle200_and_stream_scope(
    client: Client, sim: Simulator, clock: FakeClock
) -> None:
    sim.inject("tencent", "throttle200")
    r = await tencent_post(client, clock, "get_room_stats", {"RoomId": "live_room_main"})
    assert r["ErrorCode"] == 60018
    sim.inject("tencent", "auth")
    r = await tencent_post(client, clock, "get_room_stats", {"RoomId": "live_room_main"})
    assert r["ErrorCode"] == 70001
    sim.inject("cloudflare", "throttle200")
    r2 = await client.get(f"{CF}/livestreams", headers=CF_AUTH)
    assert r2.status == 200 and (await r2.json())["success"] is False
    sim.inject("fermion", "auth")
    out = await (await fermion_post(client, "session-algebra")).json()
    assert "School not found" in out[0]["output"]["errorMessage"]
    sim.inject("swiftfederation", "auth")
    assert (await sfd_get(client, clock, f"{SFD_VIEWERS}?{sfd_query()}")).status == 401

    # A fault scoped to one stream leaves the others alone.
    sim.inject("gjirafa", "5xx", stream="vp-news/video")
    assert (await client.get(gjirafa_path("vp-news/audio"), headers=GJ_AUTH)).status == 200
    assert (await client.get(gjirafa_path("vp-news/video"), headers=GJ_AUTH)).status == 503


async def test_fault_slow(client: Client, sim: Simulator) -> None:
    sim.inject("gjirafa", "slow")
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await client.get(gjirafa_path(), headers=GJ_AUTH)
    assert r.status == 200
    assert loop.time() - started >= sim.slow_seconds


async def test_fault_timeout_hangs_until_the_client_gives_up(client: Client, sim: Simulator) -> None:
    sim.inject("fermion", "timeout")
    with pytest.raises(asyncio.TimeoutError):
        await client.post(
            FERMION_URL,
            json={"data": [{"data": {"liveEventSessionId": "session-algebra"}}]},
            headers={"FERMION-API-KEY": DEMO_FERMION_KEY},
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    record = sim.log.records[-1]
    for _ in range(100):  # the server notices the client left and finishes the request
        if record.status is not None:
            break
        await asyncio.sleep(0.02)
    assert record.status in (499, 504) and record.fault == "timeout"
    assert (await fermion_post(client, "session-algebra")).status == 200


# ---------------------------------------------------------------------- HTTP control


async def test_http_control_and_request_log(client: Client, sim: Simulator) -> None:
    async def control(**args: Any) -> aiohttp.ClientResponse:
        return await client.post("/_sim/control", json=args)

    assert (
        await control(action="set_viewers", vendor="gjirafa", stream="vp-news/audio", value=42)
    ).status == 200
    assert sim.viewers("gjirafa", "vp-news/audio") == 42
    assert (await control(action="drop", vendor="gjirafa", stream="vp-news/audio", factor=0.5)).status == 200
    assert sim.viewers("gjirafa", "vp-news/audio") == 21
    assert (await control(action="end_stream", vendor="gjirafa", stream="vp-news/audio")).status == 200
    assert sim.viewers("gjirafa", "vp-news/audio") == 0
    assert (await control(action="start_stream", vendor="tencent", stream="pop", viewers=9)).status == 200
    assert sim.viewers("tencent", "pop") == 9
    assert (await control(action="remove_stream", vendor="tencent", stream="pop")).status == 200
    assert (await control(action="inject", vendor="gjirafa", kind="5xx", count=1)).status == 200
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 503
    assert (await control(action="quirk", name="cf_list_form", value="object")).status == 200
    assert sim.vendor_of(Cloudflare).list_form == "object"
    assert (await control(action="configure", slow_seconds=0.1)).status == 200
    assert sim.slow_seconds == 0.1
    assert (await control(action="inject", vendor="gjirafa", kind="nope")).status == 400
    assert (await control(action="drop", vendor="gjirafa", stream="missing")).status == 404
    assert (await control(action="fly")).status == 400

    log = await (await client.get("/_sim/requests?vendor=gjirafa")).json()
    assert [r["status"] for r in log["requests"]] == [503]
    assert log["requests"][0]["endpoint"] == "audioLiveConsumption"
    state = await (await client.get("/_sim/state")).json()
    assert state["streams"]["tencent"]["pop"]["exists"] is False

    assert (await control(action="reset")).status == 200
    assert sim.request_log() == [] and sim.vendor_of(Cloudflare).list_form == "array"
    assert sim.viewers("gjirafa", "vp-news/audio") > 0


# ---------------------------------------------------------------------- standalone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_module_runs_standalone() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--listen", f"127.0.0.1:{port}", "--demo-network"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"GET /_sim/state HTTP/1.0\r\nHost: x\r\n\r\n")
                    answer = b""
                    while chunk := conn.recv(65536):
                        answer += chunk
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200")
        assert b"vp-news/audio" in answer
        network = json.loads(answer.partition(b"\r\n\r\n")[2])["network"]
        assert network["tencent"]["latency"]["mean"] == DEMO_TENCENT_LATENCY[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_start_simulator_in_the_running_loop() -> None:
    running = await start_simulator(port=0)
    try:
        assert running.url.startswith("http://127.0.0.1:") and not running.url.endswith(":0")
        async with aiohttp.ClientSession() as session, session.get(running.url + "/_sim/state") as resp:
            assert resp.status == 200
    finally:
        await running.close()


# ---------------------------------------------------------------------- a realistic network
#
# Latency, answers in pieces, cut and reset connections, catalogs of thousands of streams.
# Where time matters the simulator runs on the exporter's FakeClock (`LoopClock`), whose
# sleep the simulator takes: fake seconds pass with no real waiting.

CF_LIST = f"{CF}/livestreams"
DEMO_TENCENT_LATENCY = Tencent.demo_latency
CF_OVERALL = f"{CF}/analytics/livestreams/overall"


@pytest.fixture
def loop_clock() -> LoopClock:
    return LoopClock(START)


def on_loop_clock(clock: LoopClock, **kwargs: Any) -> Simulator:
    return Simulator(clock=clock.time, monotonic=clock.monotonic, sleep=clock.sleep, **kwargs)


async def loop_client(aiohttp_client: Any, sim: Simulator) -> Client:
    c: Client = await aiohttp_client(create_app(sim))
    return c


def test_the_network_is_off_by_default_and_typical_in_the_demo() -> None:
    plain = Simulator()
    demo = demo_simulator()
    for vendor in VENDORS:
        assert plain.network[vendor].latency.off and plain.network[vendor].pieces == Pieces()
        cls = demo.vendor(vendor)
        mean, jitter = cls.demo_latency
        assert 0.0 < jitter < mean <= 0.5, vendor  # modest and realistic
        assert demo.network[vendor].latency == Latency(mean, jitter)
        pieces = demo.network[vendor].pieces
        if cls.list_endpoints:
            assert pieces.size > 0 and pieces.gap > 0 and pieces.endpoints == cls.list_endpoints
        else:
            assert pieces == Pieces()
    listing = {v for v in VENDORS if demo.vendor(v).list_endpoints}
    assert {"cloudflare", "tencent", "swiftfederation"} <= listing
    demo.clear_network("tencent")
    assert demo.network["tencent"].latency.off and not demo.network["cloudflare"].latency.off
    with pytest.raises(ValueError):
        Latency(-1.0)
    with pytest.raises(ValueError):
        Latency(0.1, arrival=1.5)
    with pytest.raises(ValueError):
        Pieces(size=-1)


async def test_without_latency_the_simulator_never_sleeps(aiohttp_client: Any, loop_clock: LoopClock) -> None:
    """Off by default: no sleep at all, arrival = receipt, as before."""
    sim = on_loop_clock(loop_clock)
    client = await loop_client(aiohttp_client, sim)
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 200
    (record,) = sim.log.records
    assert record.received == record.time == record.answered == record.finished == loop_clock.monotonic()
    assert record.latency == 0.0 and loop_clock.slept == []


async def test_latency_with_jitter_and_arrival_between_send_and_answer(
    aiohttp_client: Any, loop_clock: LoopClock
) -> None:
    """Answer times stay within mean ± jitter; each request is counted (arrives) between its
    send and its answer, in fake time; real time stays tiny."""
    sim = on_loop_clock(loop_clock, seed=7)
    sim.set_latency("gjirafa", 0.2, 0.05)
    client = await loop_client(aiohttp_client, sim)
    real = time.perf_counter()
    fractions: list[float] = []
    for _ in range(40):
        sent = loop_clock.monotonic()
        assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 200
        answered = loop_clock.monotonic()
        record = sim.log.records[-1]
        assert record.received == sent
        assert sent <= record.time <= answered
        assert 0.15 <= record.latency <= 0.25
        assert answered - sent == pytest.approx(record.latency, abs=1e-9)
        assert record.answered == pytest.approx(answered, abs=1e-9)
        fractions.append((record.time - sent) / record.latency)
    latencies = [r.latency for r in sim.log.records]
    assert len(set(latencies)) == len(latencies)  # jittered
    assert min(fractions) < 0.25 and max(fractions) > 0.75  # arrival drawn per request
    # Reproducible: the same seed, the same draws.
    again = Simulator(seed=7)
    assert [Latency(0.2, 0.05).draw(again.random)[0] for _ in range(40)] == latencies
    # A latency of a minute takes a minute of fake time, not of real time.
    sim.set_latency("gjirafa", 60.0, 0.0, arrival=0.5)
    sent = loop_clock.monotonic()
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 200
    assert loop_clock.monotonic() - sent == pytest.approx(60.0)
    assert sim.log.records[-1].time == pytest.approx(sent + 30.0)
    assert time.perf_counter() - real < 5.0  # 68 fake seconds


async def test_the_limiter_counts_a_request_when_it_arrives(
    echo: type[Echo], aiohttp_client: Any, loop_clock: LoopClock
) -> None:
    """A request sent before a window's edge and arriving after it counts in the later window."""
    sim = on_loop_clock(loop_clock)
    sim.limits["echo"]["*"] = [(1, 10.0)]  # one request in any 10 s
    client = await loop_client(aiohttp_client, sim)
    t0 = loop_clock.monotonic()
    sim.set_latency("echo", 3.0, arrival=1.0)  # sent at t0, it arrives (is counted) at t0 + 3
    assert (await client.get("/echo/echo-one")).status == 200
    first = sim.log.records[-1]
    assert (first.received, first.time) == (t0, t0 + 3.0)
    sim.clear_network("echo")
    loop_clock.advance(t0 + 12.0 - loop_clock.monotonic())
    # 12 s after the first was sent, 9 s after it arrived: the vendor's window still holds it.
    assert (await client.get("/echo/echo-one")).status == 429
    loop_clock.advance(1.5)  # 10.5 s after it arrived
    assert (await client.get("/echo/echo-one")).status == 200
    assert sim.max_in_window("echo", 10.0) == 2  # the arrival times: t0 + 3, t0 + 12 (refused)


@pytest.mark.parametrize("holds_until_answer", [True, False])
async def test_a_client_that_holds_requests_until_their_answer_is_never_refused(
    echo: type[Echo], aiohttp_client: Any, loop_clock: LoopClock, holds_until_answer: bool
) -> None:
    """Bursts of `limit` requests with jittered latency: a client that keeps each request in its
    window from send until the answer is never refused; one that counts only at send is, at
    a window's edge (a request that arrived late still counts when a new one arrives early)."""
    limit, per = 5, 2.0
    sim = on_loop_clock(loop_clock, seed=11)
    sim.limits["echo"]["*"] = [(limit, per)]
    sim.set_latency("echo", 0.5, 0.5)  # 0 to 1 s, arriving anywhere in it
    client = await loop_client(aiohttp_client, sim)

    async def one() -> tuple[int, float]:
        resp = await client.get("/echo/echo-one")
        return resp.status, loop_clock.monotonic()

    statuses: list[int] = []
    for _ in range(20):
        sent = loop_clock.monotonic()
        answers = await asyncio.gather(*(one() for _ in range(limit)))
        statuses += [status for status, _ in answers]
        free = (max(t for _, t in answers) if holds_until_answer else sent) + per
        await loop_clock.sleep(free - loop_clock.monotonic())
    refused = statuses.count(429)
    if holds_until_answer:
        assert refused == 0
    else:
        assert refused > 0
    assert set(statuses) <= {200, 429}


async def test_answers_in_pieces_arrive_in_pieces(aiohttp_client: Any, loop_clock: LoopClock) -> None:
    sim = on_loop_clock(loop_clock, seed=1)
    sim.add_streams("cloudflare", 60)
    sim.set_pieces("cloudflare", 1024, 0.05, endpoints=["livestreams"])
    client = await loop_client(aiohttp_client, sim)
    url = f"{CF_LIST}?per_page=100"
    real = time.perf_counter()
    # One read gets the first piece only.
    resp = await client.get(url, headers=CF_AUTH)
    length = int(resp.headers["Content-Length"])
    assert length > 10 * 1024 and "Transfer-Encoding" not in resp.headers
    first = await resp.content.read(1 << 20)
    assert len(first) == 1024
    rest = await resp.read()
    assert len(first) + len(rest) == length
    # Reading the whole answer gets all of it, in fake time: a gap between every two pieces.
    began = loop_clock.monotonic()
    resp = await client.get(url, headers=CF_AUTH)
    whole = await resp.read()
    assert len(whole) == int(resp.headers["Content-Length"]) and len(json.loads(whole)["data"]) == 65
    pieces = -(-len(whole) // 1024)
    assert loop_clock.monotonic() - began == pytest.approx((pieces - 1) * 0.05)
    record = sim.log.records[-1]
    assert record.finished is not None and record.answered is not None
    assert record.finished - record.answered == pytest.approx((pieces - 1) * 0.05)
    # Other endpoints are answered whole.
    resp = await client.get(CF_OVERALL, headers=CF_AUTH)
    assert resp.status == 200 and loop_clock.monotonic() == sim.log.records[-1].finished
    # Chunked transfer encoding: no Content-Length, still in pieces.
    sim.set_pieces("cloudflare", 2048, 0.01, jitter=0.01, chunked=True)
    resp = await client.get(url, headers=CF_AUTH)
    assert resp.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in resp.headers
    assert 0 < len(await resp.content.read(1 << 20)) <= 2048
    resp = await client.get(url, headers=CF_AUTH)
    assert len(json.loads(await resp.read())["data"]) == 65
    assert time.perf_counter() - real < 5.0


async def test_fault_cut_promises_the_whole_body_then_closes(client: Client, sim: Simulator) -> None:
    assert {"cut", "reset", "truncated"} <= set(FAULT_KINDS)
    sim.add_streams("cloudflare", 30)
    sim.inject("cloudflare", "cut")
    resp = await client.get(f"{CF_LIST}?per_page=100", headers=CF_AUTH)
    assert resp.status == 200
    promised = int(resp.headers["Content-Length"])
    with pytest.raises(aiohttp.ClientPayloadError, match="Not enough data"):
        await resp.read()
    assert sim.log.records[-1].fault == "cut"
    # On the wire: the headers promise `promised` bytes, fewer come, then an orderly close.
    sim.inject("cloudflare", "cut")
    head, body, error = await raw_get(client, f"{CF_LIST}?per_page=100", CF_AUTH)
    assert error is None and f"content-length: {promised}".encode() in head.lower()
    assert 0 < len(body) < promised
    # In pieces, with chunked encoding: the last chunk never comes.
    sim.set_pieces("cloudflare", 512, chunked=True)
    sim.inject("cloudflare", "cut")
    resp = await client.get(f"{CF_LIST}?per_page=100", headers=CF_AUTH)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    # The next answer is whole again.
    assert len((await (await client.get(f"{CF_LIST}?per_page=100", headers=CF_AUTH)).json())["data"]) == 35


async def test_fault_reset_resets_the_connection(client: Client, sim: Simulator) -> None:
    sim.add_streams("cloudflare", 30)
    sim.inject("cloudflare", "reset")
    resp = await client.get(f"{CF_LIST}?per_page=100", headers=CF_AUTH)
    assert resp.status == 200
    # aiohttp reports the body cut short by the reset (ConnectionResetError inside).
    with pytest.raises(aiohttp.ClientPayloadError, match="ConnectionResetError"):
        await resp.read()
    assert sim.log.records[-1].fault == "reset"
    # On the wire: part of the body, then a TCP RST (ECONNRESET), not an orderly close.
    sim.inject("cloudflare", "reset")
    head, body, error = await raw_get(client, f"{CF_LIST}?per_page=100", CF_AUTH)
    assert isinstance(error, ConnectionResetError)
    assert head.startswith(b"HTTP/1.1 200") and 0 < len(body) < int(content_length(head))
    # A reset of a request whose body is in pieces: a connection error too.
    sim.set_pieces("cloudflare", 512, 0.001)
    sim.inject("cloudflare", "reset")
    resp = await client.get(f"{CF_LIST}?per_page=100", headers=CF_AUTH)
    with pytest.raises(aiohttp.ClientPayloadError, match="ConnectionResetError"):
        await resp.read()
    assert (await client.get(f"{CF_LIST}?per_page=100", headers=CF_AUTH)).status == 200


def content_length(head: bytes) -> str:
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            return value.strip()
    raise AssertionError("no Content-Length")


async def raw_get(client: Client, path: str, headers: dict[str, str]) -> tuple[bytes, bytes, OSError | None]:
    """GET over a bare socket: (head, body bytes received, the error that ended the read or None at EOF)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    lines = [f"GET {path} HTTP/1.1", f"Host: {client.server.host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    error: OSError | None = None
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except OSError as exc:
        error = exc
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, error


async def test_slow_and_timeout_faults_wait_on_the_simulators_sleep(
    aiohttp_client: Any, loop_clock: LoopClock
) -> None:
    sim = on_loop_clock(loop_clock, slow_seconds=30.0, hang_seconds=90.0)
    client = await loop_client(aiohttp_client, sim)
    real = time.perf_counter()
    sim.inject("gjirafa", "slow")
    began = loop_clock.monotonic()
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 200
    assert loop_clock.monotonic() - began == pytest.approx(30.0)
    sim.inject("gjirafa", "timeout")
    began = loop_clock.monotonic()
    assert (await client.get(gjirafa_path(), headers=GJ_AUTH)).status == 504
    assert loop_clock.monotonic() - began == pytest.approx(90.0)
    assert time.perf_counter() - real < 5.0  # two minutes of fake time


# ---------------------------------------------------------------------- catalogs of thousands


def test_add_streams_makes_keys_of_each_vendors_shape(sim: Simulator) -> None:
    shapes = {
        "fermion": lambda k: k.startswith("session-"),
        "cloudflare": lambda k: str(uuid.UUID(k)) == k,
        "tencent": lambda k: len(k) <= 48 and k.isascii(),
        "swiftfederation": lambda k: k.startswith("live.example.com/demoapp/") and k.count("/") == 2,
        "gjirafa": lambda k: k.count("/") == 1 and k.split("/")[1] in ("audio", "video"),
    }
    assert set(shapes) == set(VENDORS)
    for vendor, shape in shapes.items():
        keys = sim.add_streams(vendor, 4) + sim.add_streams(vendor, 3, scenario="starts")
        assert len(set(keys)) == 7 and all(shape(k) for k in keys), keys
        assert not set(keys) & set(DEMO_STREAMS[vendor])
        assert all(sim.find(vendor, k) is not None for k in keys[:4])
        assert sim.viewers(vendor, keys[0]) > 0
        assert all(sim.viewers(vendor, k) == 0 for k in keys[4:])  # "starts": not live yet
    with pytest.raises(ValueError, match="scenario"):
        sim.add_streams("tencent", 1, scenario="meteor")
    with pytest.raises(ValueError):
        sim.add_streams("tencent", -1)
    sim.reset()
    assert sorted(sim.streams["tencent"]) == sorted(DEMO_STREAMS["tencent"])
    assert sim.add_streams("tencent", 1) == ["live_room_000001"]  # numbering starts again


async def test_every_list_pages_through_ten_thousand_streams(
    client: Client, sim: Simulator, clock: FakeClock
) -> None:
    """The Cloudflare livestream list and the Tencent room list page through all of them; the
    SwiftFederation stream list has no pages and lists all of one domain at once."""
    n = 10_000
    added = {vendor: sim.add_streams(vendor, n) for vendor in ("cloudflare", "tencent", "swiftfederation")}

    ids: list[str] = []
    for page_no in range(1, 200):
        r = await client.get(f"{CF_LIST}?page_no={page_no}&per_page=100", headers=CF_AUTH)
        body = await r.json()
        ids += [d["id"] for d in body["data"]]
        if body["paging"]["end_offset"] >= body["paging"]["total_count"]:
            break
    assert body["paging"]["total_count"] == len(ids) == len(set(ids)) == n + 5  # 5 demo ones exist now
    assert ids[5:] == added["cloudflare"]

    rooms: list[str] = []
    cursor = ""
    for _ in range(200):
        page = await tencent_post(client, clock, "get_room_list", {"Next": cursor, "Count": 100})
        assert page["ErrorCode"] == 0, page
        rooms += [room["RoomId"] for room in page["Response"]["RoomList"]]
        cursor = page["Response"]["Next"]
        clock.advance(0.11)  # 10 room lists a second
        if not cursor:
            break
    assert len(rooms) == len(set(rooms)) == n + 4 and rooms[4:] == added["tencent"]

    query = "domain=live.example.com&app=demoapp&status=active&streamingStatus=streaming"
    resp = await sfd_get(client, clock, f"{SFD_STREAMS}?{query}")
    assert resp.status == 200
    streams = (await resp.json())["streams"]
    keys = [f"{s['domain']}/{s['app']}/{s['stream']}" for s in streams]
    assert len(keys) == len(set(keys)) == n + 4 and keys[4:] == added["swiftfederation"]
    # One of them, through the domain's aggregate and by its own key.
    last = added["swiftfederation"][-1]
    one = await sfd_get(client, clock, f"{SFD_VIEWERS}?{sfd_query(last)}")
    assert (await one.json())["data"][-1]["concurrentViewers"] == sim.viewers("swiftfederation", last)


@contextmanager
def stream_touches() -> Iterator[list[int]]:
    """Counts every attribute read of every SimStream (scanning streams reads each one's)."""
    count = [0]
    original = SimStream.__getattribute__

    def counting(self: SimStream, name: str) -> Any:
        count[0] += 1
        return original(self, name)

    SimStream.__getattribute__ = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        SimStream.__getattribute__ = original  # type: ignore[method-assign]


async def test_a_request_costs_the_same_among_ten_as_among_ten_thousand(aiohttp_client: Any) -> None:
    """A request about one stream looks at that stream only (lookups by key); a list page, once
    the list is known, at that page only: measured by counting reads of stream attributes."""
    costs: dict[int, dict[str, int]] = {}
    for n in (10, 10_000):
        clock = FakeClock()
        sim = Simulator(clock=clock)
        added = {vendor: sim.add_streams(vendor, n) for vendor in VENDORS}
        client: Client = await aiohttp_client(create_app(sim))
        clock.advance(30)
        requests = one_stream_requests(client, clock, added)
        # The lists are known once: their first page may look at every stream.
        await client.get(f"{CF_LIST}?per_page=5", headers=CF_AUTH)
        await tencent_post(client, clock, "get_room_list", {"Next": "", "Count": 5})
        costs[n] = {}
        for name, request in requests.items():
            with stream_touches() as touched:
                answer = await request()
            if isinstance(answer, aiohttp.ClientResponse):
                assert answer.status == 200, name
            else:
                assert answer["ErrorCode"] == 0, name
            costs[n][name] = touched[0]
        await client.close()
    assert costs[10] == costs[10_000]
    assert all(0 < cost < 2000 for cost in costs[10_000].values()), costs


def one_stream_requests(
    client: Client, clock: FakeClock, added: dict[str, list[str]]
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Requests about one stream each (the first streams added), and a later page of each list."""
    cf_id = added["cloudflare"][0]
    return {
        "gjirafa": lambda: client.get(gjirafa_path(added["gjirafa"][1]), headers=GJ_AUTH),
        "swiftfederation": lambda: sfd_get(
            client, clock, f"{SFD_VIEWERS}?{sfd_query(added['swiftfederation'][0])}"
        ),
        "fermion": lambda: fermion_post(client, added["fermion"][0]),
        "cloudflare": lambda: client.get(
            f"{CF}/livestreams/{cf_id}/active-livestream-session", headers=CF_AUTH
        ),
        "cloudflare-livestream": lambda: client.get(f"{CF}/livestreams/{cf_id}", headers=CF_AUTH),
        "tencent": lambda: tencent_post(client, clock, "get_room_stats", {"RoomId": added["tencent"][0]}),
        "cloudflare-page": lambda: client.get(f"{CF_LIST}?page_no=2&per_page=5", headers=CF_AUTH),
        "tencent-page": lambda: tencent_post(
            client, clock, "get_room_list", {"Next": tencent_cursor(5), "Count": 5}
        ),
    }


def tencent_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode("ascii")


def test_views_follow_time_and_changes(sim: Simulator, clock: FakeClock) -> None:
    """The cached lists change when a stream is created, starts or ends by its timings, when
    one is changed through the simulator, and when time goes back."""
    late = next(k for k, s in DEMO_SCENARIOS["tencent"].items() if s == "starts")
    before = [s.key for s in sim.visible("tencent")]
    assert late not in before
    clock.advance(START_AFTER)
    assert late in [s.key for s in sim.visible("tencent")]
    sim.remove_stream("tencent", late)
    assert late not in [s.key for s in sim.visible("tencent")]
    sim.start_stream("tencent", late)
    assert late in [s.key for s in sim.visible("tencent")]
    live = sim.view("tencent", "live", lambda s, now: s.is_live(now))
    assert late in [s.key for s in live]
    sim.end_stream("tencent", late)
    assert late not in [s.key for s in sim.view("tencent", "live", lambda s, now: s.is_live(now))]
    clock.t = START
    assert [s.key for s in sim.visible("tencent")] == before
    with pytest.raises(ValueError):
        sim.view("tencent", "named-without-keep")


# ---------------------------------------------------------------------- control of the network and catalogs


async def test_http_control_of_latency_pieces_and_catalogs(client: Client, sim: Simulator) -> None:
    async def control(**args: Any) -> aiohttp.ClientResponse:
        return await client.post("/_sim/control", json=args)

    r = await control(action="latency", vendor="tencent", mean=0.3, jitter=0.1, arrival=0.25)
    assert r.status == 200
    assert sim.network["tencent"].latency == Latency(0.3, 0.1, 0.25)
    assert (await control(action="latency", mean=0.05)).status == 200  # every vendor
    assert all(sim.network[v].latency == Latency(0.05) for v in VENDORS)
    r = await control(
        action="pieces", vendor="cloudflare", size=4096, gap=0.01, chunked=True, endpoints=["livestreams"]
    )
    assert r.status == 200
    assert sim.network["cloudflare"].pieces == Pieces.of(4096, 0.01, chunked=True, endpoints=["livestreams"])
    assert (await control(action="network", value="off")).status == 200
    assert all(sim.network[v] == Network() for v in VENDORS)
    assert (await control(action="network", vendor="fermion", value="demo")).status == 200
    assert sim.network["fermion"].latency == Latency(*sim.vendor("fermion").demo_latency)
    assert (await control(action="seed", value=5)).status == 200
    r = await control(action="add_streams", vendor="tencent", count=1000, scenario="steady")
    assert r.status == 200
    keys = (await r.json())["streams"]
    assert len(keys) == 1000 and all(sim.find("tencent", k) for k in keys)
    state = await (await client.get("/_sim/state")).json()
    assert state["network"]["fermion"]["latency"]["mean"] == sim.vendor("fermion").demo_latency[0]
    assert len(state["streams"]["tencent"]) == 1005
    for bad in (
        {"action": "latency", "vendor": "tencent", "mean": -1},
        {"action": "latency", "mean": 0.1, "arrival": 2},
        {"action": "pieces", "size": 1.5},
        {"action": "pieces", "size": 10, "endpoints": "livestreams"},
        {"action": "network", "value": "fast"},
        {"action": "add_streams", "vendor": "tencent", "count": "many"},
        {"action": "add_streams", "vendor": "tencent", "count": 1, "scenario": "meteor"},
        {"action": "add_streams", "vendor": "nobody", "count": 1},
    ):
        assert (await control(**bad)).status == 400, bad
    # The network is configuration: a reset keeps it (and drops the added streams).
    assert (await control(action="reset")).status == 200
    assert not sim.network["fermion"].latency.off and len(sim.streams["tencent"]) == 5


def test_the_demo_simulator_remembers_only_its_newest_requests() -> None:
    """A `--demo` left running for days must not grow without bound."""
    sim = demo_simulator(seed=1)
    for _ in range(DEMO_LOG_RECORDS + 10):
        sim.log.add(RequestRecord.__new__(RequestRecord))
    assert len(sim.log.records) == DEMO_LOG_RECORDS
