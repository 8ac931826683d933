"""The vendor simulator against its documented behaviour, through aiohttp's test client."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import exporter.simulator as simulator_package
from exporter.providers.signing import sfd_sign_headers, tencent_usersig
from exporter.simulator import (
    BASE_PATHS,
    DEMO_SCENARIOS,
    DEMO_STREAMS,
    DROP_AFTER,
    END_AFTER,
    ENDED_BEFORE,
    ENDED_DURATION,
    START_AFTER,
    VENDORS,
    Simulator,
    VendorSim,
    create_app,
    demo_config,
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
from exporter.simulator.core import Catalog, Limits, Settings
from exporter.simulator.curves import SimStream
from exporter.simulator.fermion import DEMO_KEY as DEMO_FERMION_KEY
from exporter.simulator.gjirafa import DEMO_KEY as DEMO_GJIRAFA_KEY
from exporter.simulator.limits import SlidingWindowLimiter, max_in_window
from exporter.simulator.pipeline import Call, serve
from exporter.simulator.swiftfederation import DEMO_KEY_ID as DEMO_SFD_KEY_ID
from exporter.simulator.swiftfederation import DEMO_SECRET as DEMO_SFD_SECRET
from exporter.simulator.tencent import DEMO_APP_ID as DEMO_TENCENT_APP_ID
from exporter.simulator.tencent import DEMO_IDENTIFIER as DEMO_TENCENT_IDENTIFIER
from exporter.simulator.tencent import DEMO_SECRET as DEMO_TENCENT_SECRET
from exporter.simulator.tencent import DESTROY_AFTER_END as TENCENT_DESTROY_AFTER_END

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
        async def handle(request: web.Request) -> web.Response:
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
        [sys.executable, "-m", "exporter.simulator", "--listen", f"127.0.0.1:{port}"],
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
