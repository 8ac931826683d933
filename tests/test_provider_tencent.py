"""Tencent provider end to end through the simulator (issue 3 point 5, CONTRACT.md 2-4).

The real SourceRunner is driven by hand on a FakeClock that also drives the simulator's
clock, UserSig expiry check and rate limits; requests go over real HTTP on loopback, and
/metrics and `/` are served by the real web app over the runner's store.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from exporter.clock import FakeClock
from exporter.config import load_config
from exporter.providers.tencent import USERSIG_LIFETIME, USERSIG_RENEW_BEFORE
from exporter.ratelimit import Window
from exporter.signing import decode_usersig, tencent_sig_hmac
from exporter.simulator import (
    DEMO_SCENARIOS,
    DEMO_TENCENT_APP_ID,
    DEMO_TENCENT_IDENTIFIER,
    DEMO_TENCENT_SECRET,
    Simulator,
    create_app,
)
from exporter.simulator import tencent as fake_tencent
from exporter.web import create_app as create_web_app
from tests.conftest import sim_sources
from tests.pollhelpers import Rig, Samples, build_rig, parse, series_of, value
from tests.simrig import Canned

_BY_SCENARIO = {scenario: key for key, scenario in DEMO_SCENARIOS["tencent"].items()}
MAIN = _BY_SCENARIO["rising"]
MUSIC = _BY_SCENARIO["falling"]
SOURCE = "demo-tencent"
SRC = {"provider": "tencent", "source": SOURCE}
STATS_PATH = "/tencent/v4/live_engine_http_srv/get_room_stats"
LIST_PATH = "/tencent/v4/live_engine_http_srv/get_room_list"
THROTTLING = (60007, 60011, 60018, 60019, 70050)
COUNTS = {
    "livestream_viewers_total": "TotalViewers",
    "livestream_messages_total": "TotalMsgCount",
    "livestream_likes_total": "TotalLikesReceived",
    "livestream_gifts_total": "TotalGiftsSent",
    "livestream_gift_coins_total": "TotalGiftCoins",
    "livestream_gift_senders": "TotalUniqueGiftSenders",
}
#: CONTRACT.md section 2, tencent row
REGION_HOSTS = {
    "china": "console.tim.qq.com",
    "singapore": "adminapisgp.im.qcloud.com",
    "usa": "adminapiusa.im.qcloud.com",
    "indonesia": "adminapiidn.im.qcloud.com",
    "korea": "adminapikr.im.qcloud.com",
    "japan": "adminapijpn.im.qcloud.com",
    "germany": "adminapiger.im.qcloud.com",
}


def lab(stream: str) -> dict[str, str]:
    return {**SRC, "stream": stream}


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class Env:
    sim: Simulator
    clock: FakeClock
    root: str
    seen: list[Seen] = field(default_factory=list)
    t0: float = 0.0

    def stats_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path == STATS_PATH]

    def list_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path == LIST_PATH]

    def usersigs(self) -> list[str]:
        """Every UserSig sent, in order, without repeats."""
        out: list[str] = []
        for s in self.seen:
            sig = s.query.get("usersig", "")
            if sig and sig not in out:
                out.append(sig)
        return out

    def records(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.sim.request_log("tencent") if endpoint is None or r["endpoint"] == endpoint]


@pytest.fixture
async def env(aiohttp_server: Any) -> Env:
    clock = FakeClock()
    sim = Simulator(clock=clock.time, monotonic=clock.monotonic, hang_seconds=5.0)
    seen: list[Seen] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        # keep_blank_values: the first get_room_list page sends Next=""
        query = {
            k: v[0] for k, v in parse_qs(urlsplit(request.raw_path).query, keep_blank_values=True).items()
        }
        seen.append(Seen(request.path, query, json.loads(raw) if raw else None))
        response: web.StreamResponse = await handler(request)
        return response

    app = create_app(sim)
    app.middlewares.append(record)
    server = await aiohttp_server(app)
    return Env(sim, clock, str(server.make_url("")).rstrip("/"), seen, t0=clock.time())


@dataclass
class Served:
    rig: Rig
    client: Any

    async def metrics(self) -> Samples:
        return parse(await self.text("/metrics"))

    async def text(self, path: str) -> str:
        resp = await self.client.get(path)
        assert resp.status == 200
        return str(await resp.text())

    @property
    def runner(self) -> Any:
        return self.rig.runner

    def target(self, key: str) -> Any:
        return self.rig.store.sources[SOURCE].targets[key]


@pytest.fixture
async def served(
    env: Env, write_config: Callable[..., Path], aiohttp_client: Any, logs: list[str]
) -> AsyncIterator[Callable[..., Any]]:
    """Runners for the demo tencent source (with overrides) and the real web app over their store."""
    rigs: list[Rig] = []

    async def make(**overrides: Any) -> Served:
        overrides.setdefault("interval", "200ms")
        overrides.setdefault("discover", False)
        global_ = {"timeout": overrides.pop("timeout")} if "timeout" in overrides else {}
        r = build_rig(write_config(sim_sources(env.root, "tencent", **overrides), **global_), env.clock)
        rigs.append(r)
        exporter = SimpleNamespace(
            store=r.store, clock=r.clock, reload_status=r.reload_status, config_file=r.config.file
        )
        return Served(r, await aiohttp_client(create_web_app(exporter)))  # type: ignore[arg-type]

    yield make
    for r in rigs:
        await r.close()


async def cycles(s: Served, n: int = 1) -> None:
    """Run `n` cycles as the scheduler would: each starts one effective interval after the last."""
    run = s.runner
    for _ in range(n):
        began = s.rig.clock.monotonic()
        await run.run_cycle()
        s.rig.clock.advance(max(0.0, began + run.interval - s.rig.clock.monotonic()))


def stream_values(samples: Samples, stream: str) -> dict[str, float]:
    return {
        name: v
        for (name, labels), v in samples.items()
        if dict(labels).get("stream") == stream and name.startswith("livestream_") and "target" not in name
    }


def vendor_values(sim: Simulator, room: str, now: float) -> dict[str, float]:
    stats = fake_tencent.room_stats(sim.stream("tencent", room), now)
    return {metric: float(stats[f]) for metric, f in COUNTS.items()}


# -- UserSig ------------------------------------------------------------------------------------


async def test_the_exporter_signs_with_a_usersig_it_generates(env, served):
    """The query carries sdkappid, identifier, a UserSig made from the secret key (TLS sig v2),
    a 32-bit random and contenttype=json; the body is {"RoomId": ...}."""
    s = await served(targets=[{"room_id": MAIN}])
    await cycles(s)
    (req,) = env.stats_requests()
    assert set(req.query) == {"sdkappid", "identifier", "usersig", "random", "contenttype"}
    assert req.query["sdkappid"] == str(DEMO_TENCENT_APP_ID)
    assert req.query["identifier"] == DEMO_TENCENT_IDENTIFIER
    assert req.query["contenttype"] == "json"
    assert 0 <= int(req.query["random"]) <= 4294967295
    assert req.body == {"RoomId": MAIN}
    doc = decode_usersig(req.query["usersig"])
    now = int(env.clock.time())
    assert doc == {
        "TLS.ver": "2.0",
        "TLS.identifier": DEMO_TENCENT_IDENTIFIER,
        "TLS.sdkappid": DEMO_TENCENT_APP_ID,
        "TLS.expire": USERSIG_LIFETIME,
        "TLS.time": now,
        "TLS.sig": tencent_sig_hmac(
            sdk_app_id=DEMO_TENCENT_APP_ID,
            identifier=DEMO_TENCENT_IDENTIFIER,
            secret_key=DEMO_TENCENT_SECRET,
            now=now,
            expire=USERSIG_LIFETIME,
        ),
    }
    assert env.records()[0]["error"] is None  # the simulator verified it
    assert value(await s.metrics(), "livestream_target_up", **lab(MAIN)) == 1


async def test_usersig_is_renewed_before_it_expires(env, served):
    """The UserSig in use is replaced while it is still valid (never waits for a 70001)."""
    assert 60 <= USERSIG_RENEW_BEFORE < USERSIG_LIFETIME
    s = await served()
    await cycles(s)
    (first,) = env.usersigs()
    expires = env.t0 + decode_usersig(first)["TLS.expire"]  # type: ignore[operator]

    env.clock.advance(expires - USERSIG_RENEW_BEFORE - 10 - env.clock.time())
    await cycles(s)
    assert env.usersigs() == [first], "renewed too early"

    env.clock.advance(expires - 60 - env.clock.time())  # one minute before it expires
    now = int(env.clock.time())
    await cycles(s)
    assert len(env.usersigs()) == 2, "not renewed a minute before it expires"
    second = env.usersigs()[1]
    assert decode_usersig(second)["TLS.time"] == now
    assert {q.query["usersig"] for q in env.stats_requests()[-2:]} == {second}
    assert all(r["error"] is None for r in env.records()), "a request was refused"
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert value(samples, "livestream_target_up", **lab(MUSIC)) == 1


async def test_usersig_expired_answer_regenerates_and_retries_once(env, served, logs):
    """70001 once: exactly two requests, the second with a new UserSig; the poll succeeds."""
    env.sim.set_viewers("tencent", MAIN, 10)
    s = await served(targets=[{"room_id": MAIN}])
    await cycles(s)
    env.clock.advance(1000 - (env.clock.time() - env.t0))
    env.sim.inject("tencent", "auth", count=1)  # ErrorCode 70001 by default
    before = len(env.records())
    await cycles(s)
    records = env.records()[before:]
    assert [r["error"] for r in records] == ["70001", None]
    first, second = (q.query["usersig"] for q in env.stats_requests()[-2:])
    assert first != second
    assert decode_usersig(second)["TLS.time"] == int(env.t0 + 1000)
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 10 + 10 * 1000 // 600
    assert value(samples, "livestream_exporter_throttled_total", **SRC) == 0
    assert any("UserSig expired early" in line for line in logs)


async def test_persistent_usersig_expired_is_an_auth_error(env, served):
    env.sim.set_viewers("tencent", MAIN, 10)
    s = await served(targets=[{"room_id": MAIN}])
    await cycles(s)
    env.sim.set_viewers("tencent", MAIN, 99)
    env.sim.inject("tencent", "auth", count=2)
    before = len(env.records())
    await cycles(s)
    assert [r["error"] for r in env.records()[before:]] == ["70001", "70001"]
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 0
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 10  # old value kept
    assert s.target(MAIN).error == "auth" and not s.target(MAIN).gone

    before = len(env.records())
    await cycles(s)
    assert len(env.records()) == before + 1
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 99


# -- regions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", [None, *REGION_HOSTS])
def test_region_domains(write_config, region):
    source: dict[str, Any] = {
        "name": "tc",
        "provider": "tencent",
        "credentials": {"sdk_app_id": 1400000001, "identifier": "admin", "secret_key": "k" * 64},
        "targets": [{"room_id": "r1"}],
    }
    if region is not None:
        source["region"] = region
    config = load_config(write_config([source]))
    host = REGION_HOSTS[region or "china"]
    assert config.base_url_of(config.sources[0]) == f"https://{host}"


def test_unknown_region_is_a_config_error(write_config):
    from exporter.config import ConfigError

    source = {
        "name": "tc",
        "provider": "tencent",
        "region": "mars",
        "credentials": {"sdk_app_id": 1, "identifier": "admin", "secret_key": "k"},
        "targets": [{"room_id": "r1"}],
    }
    with pytest.raises(ConfigError):
        load_config(write_config([source]))


# -- exact values ---------------------------------------------------------------------------------


async def test_exact_values_of_every_metric(env, served):
    env.sim.set_viewers("tencent", MAIN, 60)
    env.sim.set_viewers("tencent", MUSIC, 25)
    s = await served(interval="10s")  # two rooms: main at +0 s, music at +5 s of each cycle

    await s.runner.run_cycle()
    samples = await s.metrics()
    assert stream_values(samples, MAIN) == {
        "livestream_viewers_total": 60,
        "livestream_messages_total": 0,
        "livestream_likes_total": 0,
        "livestream_gifts_total": 0,
        "livestream_gift_coins_total": 0,
        "livestream_gift_senders": 0,
    }
    assert stream_values(samples, MUSIC)["livestream_viewers_total"] == 25
    assert stream_values(samples, MUSIC)["livestream_likes_total"] == 25 * 5 // 20

    env.clock.advance(env.t0 + 1800 - env.clock.time())
    await s.runner.run_cycle()
    samples = await s.metrics()
    watched = 60 * 1800  # viewer-seconds
    gifts = watched // 900
    assert stream_values(samples, MAIN) == {
        "livestream_viewers_total": 60 + watched // 600,
        "livestream_messages_total": watched // 120,
        "livestream_likes_total": watched // 20,
        "livestream_gifts_total": gifts,
        "livestream_gift_coins_total": gifts * 50,
        "livestream_gift_senders": (gifts + 2) // 3,
    }
    watched = 25 * 1805
    gifts = watched // 900
    assert stream_values(samples, MUSIC) == {
        "livestream_viewers_total": 25 + watched // 600,
        "livestream_messages_total": watched // 120,
        "livestream_likes_total": watched // 20,
        "livestream_gifts_total": gifts,
        "livestream_gift_coins_total": gifts * 50,
        "livestream_gift_senders": (gifts + 2) // 3,
    }
    assert stream_values(samples, MUSIC) == vendor_values(env.sim, MUSIC, env.clock.time())
    assert (
        value(samples, "livestream_target_last_success_timestamp_seconds", **lab(MUSIC)) == env.clock.time()
    )
    assert value(samples, "livestream_exporter_targets", **SRC) == 2
    assert value(samples, "livestream_exporter_rate_limit_requests_per_second", **SRC) == 100
    endpoint = {**SRC, "endpoint": "get_room_stats", "code": "200"}
    assert value(samples, "livestream_exporter_api_requests_total", **endpoint) == 4


# -- ErrorCode handling -------------------------------------------------------------------------


async def test_throttling_codes_count_and_back_off(env, served):
    env.sim.set_viewers("tencent", MAIN, 40)
    s = await served()
    await cycles(s)
    for n, code in enumerate(THROTTLING, start=1):
        env.sim.set_viewers("tencent", MAIN, 40 + n)
        env.sim.inject("tencent", "throttle200", stream=MAIN, code=code)
        before = len(env.records())
        await s.runner.run_cycle()
        throttled, following = env.records()[before : before + 2]
        assert throttled["error"] == str(code) and throttled["streams"] == [MAIN]
        assert following["error"] is None
        # the source paused (exponential back-off with jitter: at least half a second)
        assert following["time"] - throttled["time"] >= 0.5, code
        samples = await s.metrics()
        assert value(samples, "livestream_exporter_throttled_total", **SRC) == n
        assert value(samples, "livestream_target_up", **lab(MAIN)) == 0
        assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 40 + n - 1  # old value kept
        assert value(samples, "livestream_target_up", **lab(MUSIC)) == 1
        assert s.target(MAIN).error == "throttled"
        s.rig.clock.advance(s.runner.interval)
        await s.runner.run_cycle()
        assert value(await s.metrics(), "livestream_viewers_total", **lab(MAIN)) == 40 + n
    assert not [r for r in env.records() if r["throttled"]]


async def test_room_gone_removes_its_series_only(env, served):
    env.sim.set_viewers("tencent", MAIN, 5)
    env.sim.set_viewers("tencent", MUSIC, 6)
    s = await served()
    await cycles(s)
    env.sim.remove_stream("tencent", MUSIC)
    env.sim.set_viewers("tencent", MAIN, 7)
    await cycles(s)
    assert env.records()[-1]["error"] == "100004"
    samples = await s.metrics()
    assert series_of(samples, stream=MUSIC) == []
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert s.target(MUSIC).gone
    # the room exists again: it is back
    env.sim.start_stream("tencent", MUSIC, 3)
    await cycles(s)
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MUSIC)) == 1


@pytest.mark.parametrize(
    ("kind", "code", "error"),
    [
        ("5xx", None, "upstream"),
        ("html", None, "upstream"),
        ("html", 200, "parse"),
        ("truncated", None, "parse"),
        ("timeout", None, "timeout"),
        ("error200", 100001, "upstream"),
        ("error200", 70009, "auth"),
    ],
)
async def test_failures_keep_old_values_with_up_0(env, served, kind, code, error):
    env.sim.set_viewers("tencent", MAIN, 30)
    s = await served(timeout="300ms")
    await cycles(s)
    env.clock.advance(120)  # within stale_after (5m)
    env.sim.inject("tencent", kind, stream=MAIN, code=code)
    await cycles(s)
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 0
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 30
    assert value(samples, "livestream_target_up", **lab(MUSIC)) == 1
    assert s.target(MAIN).error == error
    await cycles(s)
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) > 30


# -- discovery -----------------------------------------------------------------------------------


async def test_discovery_pages_through_the_room_list(env, served):
    extra = [f"disc_room_{i:02d}" for i in range(45)]
    for i, room in enumerate(extra):
        env.sim.start_stream("tencent", room, i + 1)
    visible = [r.key for r in env.sim.visible("tencent")]
    assert len(visible) == 49  # four demo rooms (one is created later) and 45 more: 3 pages
    s = await served(discover=True)
    await cycles(s)

    pages = env.list_requests()
    assert len(pages) == 3
    assert pages[0].body == {"Next": "", "Count": 20}
    assert [p.body["Count"] for p in pages] == [20, 20, 20]
    assert len({p.body["Next"] for p in pages}) == 3
    assert all(p.query["usersig"] for p in pages)
    assert set(s.rig.store.sources[SOURCE].targets) == set(visible)
    samples = await s.metrics()
    for i, room in enumerate(extra):
        assert value(samples, "livestream_target_up", **lab(room)) == 1
        assert value(samples, "livestream_viewers_total", **lab(room)) == i + 1
    assert value(samples, "livestream_exporter_targets", **SRC) == 49
    # its own budget: 10/s for the list, 100/s for the stats
    assert s.runner.limiter.buckets["list"].windows == (Window(10, 1.0),)
    assert s.runner.limiter.buckets["default"].windows == (Window(100, 1.0),)
    assert s.runner.requests_per_cycle() == {"default": 49, "list": 3}

    # a room that is no longer listed loses its series
    env.sim.remove_stream("tencent", extra[0])
    # a room that answers 100004 between listing and polling loses its series at once
    env.sim.inject("tencent", "error200", stream=extra[1], code=100004)
    await cycles(s)
    samples = await s.metrics()
    assert series_of(samples, stream=extra[0]) == []
    assert series_of(samples, stream=extra[1]) == []
    assert extra[1] not in [t.key for t in s.runner.discovered]
    assert value(samples, "livestream_target_up", **lab(extra[2])) == 1
    # the next discovery finds it again
    await cycles(s)
    assert value(await s.metrics(), "livestream_target_up", **lab(extra[1])) == 1


async def test_budgets_hold_under_load(env, served):
    """234 rooms: 12 list pages a cycle (10/s) and 234 stats requests (100/s), as the
    simulator counts them in every 1 s window, none refused."""
    for i in range(230):
        env.sim.start_stream("tencent", f"load_{i:03d}", 1 + i % 7)
    s = await served(discover=True)
    await cycles(s, 3)
    assert len(env.records("get_room_list")) == 36
    assert len(env.records("get_room_stats")) >= 3 * 234
    assert env.sim.max_in_window("tencent", 1, endpoint="get_room_list") == 10
    assert env.sim.max_in_window("tencent", 1, endpoint="get_room_stats") <= 100
    assert not [r for r in env.records() if r["throttled"] or r["error"]]
    assert s.runner.limiter.waits > 0  # the limiter did hold requests back
    # 12 list pages at 10/s, then 234 rooms at 100/s, one after the other
    assert s.runner.interval == pytest.approx(1.2 + 2.34)
    samples = await s.metrics()
    assert value(samples, "livestream_exporter_targets", **SRC) == 234
    assert value(samples, "livestream_exporter_poll_interval_seconds", **SRC) == pytest.approx(1.2 + 2.34)
    assert all(t.up for t in s.rig.store.sources[SOURCE].targets.values())


# -- secrets ---------------------------------------------------------------------------------------


async def test_usersig_never_in_logs_metrics_or_pages(env, served, logs):
    s = await served(discover=True, timeout="300ms")
    await cycles(s)
    env.clock.advance(500)
    for kind, count, code in (
        ("auth", 1, None),  # 70001, renewed and retried
        ("auth", 2, None),  # persistent 70001
        ("5xx", 1, None),
        ("html", 1, None),
        ("truncated", 1, None),
        ("timeout", 1, None),
        ("error200", 1, 70003),
        ("error200", 1, 100002),
        ("throttle200", 1, None),
    ):
        env.sim.inject("tencent", kind, count=count, code=code)
        await cycles(s)
    env.clock.advance(USERSIG_LIFETIME)  # and a renewal
    await cycles(s)

    sigs = env.usersigs()
    assert len(sigs) >= 3
    metrics = await s.text("/metrics")
    page = await s.text("/")
    errors = " ".join(str(t.error_message) for t in s.rig.store.sources[SOURCE].targets.values())
    assert any("level=debug" in line for line in logs)
    assert MAIN in page
    for text, where in ((metrics, "/metrics"), (page, "/"), ("\n".join(logs), "logs"), (errors, "errors")):
        for sig in sigs:
            assert sig not in text, f"a UserSig in {where}"
        assert DEMO_TENCENT_SECRET not in text, f"the secret key in {where}"
        assert "usersig=" not in text.lower(), f"a query string in {where}"


# -- regressions (review of 77fbfda) --


async def test_room_list_without_roomlist_keeps_the_discovered_rooms(served, aiohttp_server, logs):
    """Regression (77fbfda): a get_room_list answer without `RoomList` was read as "no rooms",
    which removed every discovered room's series.  Now discovery fails (parse) and the rooms
    found before are kept and still polled."""
    canned = Canned()
    server = await aiohttp_server(canned.app())
    s = await served(discover=True, targets=[], base_url=str(server.make_url("")).rstrip("/"))
    ok = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
    stats = {field: 5 for field in COUNTS.values()}
    canned.answer({**ok, "Response": {"RoomList": [{"RoomId": "room-1"}], "Next": ""}})
    canned.answer({**ok, "Response": stats})
    await cycles(s)
    assert value(await s.metrics(), "livestream_viewers_total", **lab("room-1")) == 5

    canned.answer({**ok, "Response": {"Next": ""}})  # no RoomList at all
    canned.answer({**ok, "Response": {**stats, "TotalViewers": 6}})
    await cycles(s)
    assert [seen.raw_path.split("?")[0].rsplit("/", 1)[1] for seen in canned.seen] == [
        "get_room_list",
        "get_room_stats",
        "get_room_list",
        "get_room_stats",
    ]
    samples = await s.metrics()
    assert [t.key for t in s.runner.discovered] == ["room-1"]
    assert value(samples, "livestream_target_up", **lab("room-1")) == 1
    assert value(samples, "livestream_viewers_total", **lab("room-1")) == 6
    assert any("discovery failed" in line and "error=parse" in line for line in logs), logs
