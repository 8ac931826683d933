"""Tencent provider end to end through the simulator: UserSig, regions, values, errors, discovery.

The real SourceRunner is driven by hand on a FakeClock that also drives the simulator's
clock, UserSig expiry check and rate limits; requests go over real HTTP on loopback, and
/metrics and `/` are served by the real web app over the runner's store.
"""

from __future__ import annotations

from typing import Any

import pytest

from exporter.config.loader import load_config
from exporter.config.problems import ConfigError
from exporter.model.windows import Window
from exporter.providers.signing import decode_usersig, tencent_sig_hmac
from exporter.providers.tencent import USERSIG_LIFETIME, USERSIG_RENEW_BEFORE
from exporter.simulator import DEMO_SCENARIOS, Simulator
from exporter.simulator import tencent as fake_tencent
from exporter.simulator.tencent import DEMO_APP_ID as DEMO_TENCENT_APP_ID
from exporter.simulator.tencent import DEMO_IDENTIFIER as DEMO_TENCENT_IDENTIFIER
from exporter.simulator.tencent import DEMO_SECRET as DEMO_TENCENT_SECRET
from tests.pollhelpers import series_of, stream_values, value
from tests.simrig import START, SimWorld, cycles

_BY_SCENARIO = {scenario: key for key, scenario in DEMO_SCENARIOS["tencent"].items()}
MAIN = _BY_SCENARIO["rising"]
MUSIC = _BY_SCENARIO["falling"]
SOURCE = "demo-tencent"
DEMO_PROVIDER = "tencent"
DEMO_CHANGES = {"interval": "200ms", "discover": False}
CANNED_PREFIX = ""  # tencent's base URL is a bare host
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
#: region -> the host of its REST API; china when no region is configured
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


def usersigs(world: SimWorld) -> list[str]:
    """Every UserSig sent, in order, without repeats."""
    out: list[str] = []
    for r in world.seen:
        sig = r.query.get("usersig", "")
        if sig and sig not in out:
            out.append(sig)
    return out


def sim_log(world: SimWorld, endpoint: str | None = None) -> list[dict[str, Any]]:
    """The simulator's log of the tencent requests it answered (to one endpoint), oldest first."""
    return [r for r in world.sim.request_log("tencent") if endpoint is None or r["endpoint"] == endpoint]


def vendor_values(sim: Simulator, room: str, now: float) -> dict[str, float]:
    stats = fake_tencent.room_stats(sim.stream("tencent", room), now)
    return {metric: float(stats[f]) for metric, f in COUNTS.items()}


# -- UserSig ------------------------------------------------------------------------------------


async def test_the_exporter_signs_with_a_usersig_it_generates(world, rigs, demo_source):
    """The query carries sdkappid, identifier, a UserSig made from the secret key (TLS sig v2),
    a 32-bit random and contenttype=json; the body is {"RoomId": ...}."""
    s = await rigs.make([demo_source(targets=[{"room_id": MAIN}])])
    await cycles(s.rig)
    (req,) = world.requests_to(STATS_PATH)
    assert set(req.query) == {"sdkappid", "identifier", "usersig", "random", "contenttype"}
    assert req.query["sdkappid"] == str(DEMO_TENCENT_APP_ID)
    assert req.query["identifier"] == DEMO_TENCENT_IDENTIFIER
    assert req.query["contenttype"] == "json"
    assert 0 <= int(req.query["random"]) <= 4294967295
    assert req.json() == {"RoomId": MAIN}
    doc = decode_usersig(req.query["usersig"])
    now = int(world.clock.time())
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
    assert sim_log(world)[0]["error"] is None  # the simulator verified it
    assert value(await s.metrics(), "livestream_target_up", **lab(MAIN)) == 1


async def test_usersig_is_renewed_before_it_expires(world, rigs, demo_source):
    """The UserSig in use is replaced while it is still valid (never waits for a 70001)."""
    assert 60 <= USERSIG_RENEW_BEFORE < USERSIG_LIFETIME
    s = await rigs.make([demo_source()])
    await cycles(s.rig)
    (first,) = usersigs(world)
    expires = START + decode_usersig(first)["TLS.expire"]  # type: ignore[operator]

    world.clock.advance(expires - USERSIG_RENEW_BEFORE - 10 - world.clock.time())
    await cycles(s.rig)
    assert usersigs(world) == [first], "renewed too early"

    world.clock.advance(expires - 60 - world.clock.time())  # one minute before it expires
    now = int(world.clock.time())
    await cycles(s.rig)
    assert len(usersigs(world)) == 2, "not renewed a minute before it expires"
    second = usersigs(world)[1]
    assert decode_usersig(second)["TLS.time"] == now
    assert {q.query["usersig"] for q in world.requests_to(STATS_PATH)[-2:]} == {second}
    assert all(r["error"] is None for r in sim_log(world)), "a request was refused"
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert value(samples, "livestream_target_up", **lab(MUSIC)) == 1


async def test_usersig_expired_answer_regenerates_and_retries_once(world, rigs, demo_source, logs):
    """70001 once: exactly two requests, the second with a new UserSig; the poll succeeds."""
    world.sim.set_viewers("tencent", MAIN, 10)
    s = await rigs.make([demo_source(targets=[{"room_id": MAIN}])])
    await cycles(s.rig)
    world.at(1000)
    world.sim.inject("tencent", "auth", count=1)  # ErrorCode 70001 by default
    before = len(sim_log(world))
    await cycles(s.rig)
    records = sim_log(world)[before:]
    assert [r["error"] for r in records] == ["70001", None]
    first, second = (q.query["usersig"] for q in world.requests_to(STATS_PATH)[-2:])
    assert first != second
    assert decode_usersig(second)["TLS.time"] == int(START + 1000)
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 10 + 10 * 1000 // 600
    assert value(samples, "livestream_exporter_throttled_total", **SRC) == 0
    assert any("UserSig expired early" in line for line in logs)


async def test_persistent_usersig_expired_is_an_auth_error(world, rigs, demo_source):
    world.sim.set_viewers("tencent", MAIN, 10)
    s = await rigs.make([demo_source(targets=[{"room_id": MAIN}])])
    await cycles(s.rig)
    world.sim.set_viewers("tencent", MAIN, 99)
    world.sim.inject("tencent", "auth", count=2)
    before = len(sim_log(world))
    await cycles(s.rig)
    assert [r["error"] for r in sim_log(world)[before:]] == ["70001", "70001"]
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 0
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 10  # old value kept
    assert s.target(SOURCE, MAIN).error == "auth" and not s.target(SOURCE, MAIN).gone

    before = len(sim_log(world))
    await cycles(s.rig)
    assert len(sim_log(world)) == before + 1
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


async def test_exact_values_of_every_metric(world, rigs, demo_source):
    world.sim.set_viewers("tencent", MAIN, 60)
    world.sim.set_viewers("tencent", MUSIC, 25)
    s = await rigs.make([demo_source(interval="10s")])  # two rooms: main at +0 s, music at +5 s of each cycle

    await s.rig.runner.run_cycle()
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

    world.at(1800)
    await s.rig.runner.run_cycle()
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
    assert stream_values(samples, MUSIC) == vendor_values(world.sim, MUSIC, world.clock.time())
    assert (
        value(samples, "livestream_target_last_success_timestamp_seconds", **lab(MUSIC)) == world.clock.time()
    )
    assert value(samples, "livestream_exporter_targets", **SRC) == 2
    assert value(samples, "livestream_exporter_rate_limit_requests_per_second", **SRC) == 100
    endpoint = {**SRC, "endpoint": "get_room_stats", "code": "200"}
    assert value(samples, "livestream_exporter_api_requests_total", **endpoint) == 4


# -- ErrorCode handling -------------------------------------------------------------------------


async def test_throttling_codes_count_and_back_off(world, rigs, demo_source):
    world.sim.set_viewers("tencent", MAIN, 40)
    s = await rigs.make([demo_source()])
    await cycles(s.rig)
    for n, code in enumerate(THROTTLING, start=1):
        world.sim.set_viewers("tencent", MAIN, 40 + n)
        world.sim.inject("tencent", "throttle200", stream=MAIN, code=code)
        before = len(sim_log(world))
        await s.rig.runner.run_cycle()
        throttled, following = sim_log(world)[before : before + 2]
        assert throttled["error"] == str(code) and throttled["streams"] == [MAIN]
        assert following["error"] is None
        # the source paused (exponential back-off with jitter: at least half a second)
        assert following["time"] - throttled["time"] >= 0.5, code
        samples = await s.metrics()
        assert value(samples, "livestream_exporter_throttled_total", **SRC) == n
        assert value(samples, "livestream_target_up", **lab(MAIN)) == 0
        assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 40 + n - 1  # old value kept
        assert value(samples, "livestream_target_up", **lab(MUSIC)) == 1
        assert s.target(SOURCE, MAIN).error == "throttled"
        s.rig.clock.advance(s.rig.runner.interval)
        await s.rig.runner.run_cycle()
        assert value(await s.metrics(), "livestream_viewers_total", **lab(MAIN)) == 40 + n
    assert not [r for r in sim_log(world) if r["throttled"]]


async def test_room_gone_removes_its_series_only(world, rigs, demo_source):
    world.sim.set_viewers("tencent", MAIN, 5)
    world.sim.set_viewers("tencent", MUSIC, 6)
    s = await rigs.make([demo_source()])
    await cycles(s.rig)
    world.sim.remove_stream("tencent", MUSIC)
    world.sim.set_viewers("tencent", MAIN, 7)
    await cycles(s.rig)
    assert sim_log(world)[-1]["error"] == "100004"
    samples = await s.metrics()
    assert series_of(samples, stream=MUSIC) == []
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert s.target(SOURCE, MUSIC).gone
    # the room exists again: it is back
    world.sim.start_stream("tencent", MUSIC, 3)
    await cycles(s.rig)
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
async def test_failures_keep_old_values_with_up_0(world, rigs, demo_source, kind, code, error):
    world.sim.set_viewers("tencent", MAIN, 30)
    s = await rigs.make([demo_source()], timeout="300ms")
    await cycles(s.rig)
    world.clock.advance(120)  # within stale_after (5m)
    world.sim.inject("tencent", kind, stream=MAIN, code=code)
    await cycles(s.rig)
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 0
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) == 30
    assert value(samples, "livestream_target_up", **lab(MUSIC)) == 1
    assert s.target(SOURCE, MAIN).error == error
    await cycles(s.rig)
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **lab(MAIN)) == 1
    assert value(samples, "livestream_viewers_total", **lab(MAIN)) > 30


# -- discovery -----------------------------------------------------------------------------------


async def test_discovery_pages_through_the_room_list(world, rigs, demo_source):
    extra = [f"disc_room_{i:02d}" for i in range(45)]
    for i, room in enumerate(extra):
        world.sim.start_stream("tencent", room, i + 1)
    visible = [r.key for r in world.sim.visible("tencent")]
    assert len(visible) == 49  # four demo rooms (one is created later) and 45 more: 3 pages
    s = await rigs.make([demo_source(discover=True)])
    await cycles(s.rig)

    pages = world.requests_to(LIST_PATH)
    assert len(pages) == 3
    assert pages[0].json() == {"Next": "", "Count": 20}
    assert [p.json()["Count"] for p in pages] == [20, 20, 20]
    assert len({p.json()["Next"] for p in pages}) == 3
    assert all(p.query["usersig"] for p in pages)
    assert set(s.rig.store.sources[SOURCE].targets) == set(visible)
    samples = await s.metrics()
    for i, room in enumerate(extra):
        assert value(samples, "livestream_target_up", **lab(room)) == 1
        assert value(samples, "livestream_viewers_total", **lab(room)) == i + 1
    assert value(samples, "livestream_exporter_targets", **SRC) == 49
    # its own budget: 10/s for the list, 100/s for the stats
    assert s.rig.runner.limiter.buckets["list"].windows == (Window(10, 1.0),)
    assert s.rig.runner.limiter.buckets["default"].windows == (Window(100, 1.0),)
    assert s.rig.runner.requests_per_cycle() == {"default": 49, "list": 3}

    # a room that is no longer listed loses its series
    world.sim.remove_stream("tencent", extra[0])
    # a room that answers 100004 between listing and polling loses its series at once
    world.sim.inject("tencent", "error200", stream=extra[1], code=100004)
    await cycles(s.rig)
    samples = await s.metrics()
    assert series_of(samples, stream=extra[0]) == []
    assert series_of(samples, stream=extra[1]) == []
    assert extra[1] not in [t.key for t in s.rig.runner.discovered]
    assert value(samples, "livestream_target_up", **lab(extra[2])) == 1
    # the next discovery finds it again
    await cycles(s.rig)
    assert value(await s.metrics(), "livestream_target_up", **lab(extra[1])) == 1


async def test_budgets_hold_under_load(world, rigs, demo_source):
    """234 rooms: 12 list pages a cycle (10/s) and 234 stats requests (100/s), as the
    simulator counts them in every 1 s window, none refused."""
    for i in range(230):
        world.sim.start_stream("tencent", f"load_{i:03d}", 1 + i % 7)
    s = await rigs.make([demo_source(discover=True)])
    await cycles(s.rig, 3)
    assert len(sim_log(world, "get_room_list")) == 36
    assert len(sim_log(world, "get_room_stats")) >= 3 * 234
    assert world.sim.max_in_window("tencent", 1, endpoint="get_room_list") == 10
    assert world.sim.max_in_window("tencent", 1, endpoint="get_room_stats") <= 100
    assert not [r for r in sim_log(world) if r["throttled"] or r["error"]]
    assert s.rig.runner.limiter.waits > 0  # the limiter did hold requests back
    # 12 list pages at 10/s (1.2 s) beside 234 rooms at 100/s (2.34 s): the slower decides
    assert s.rig.runner.interval == pytest.approx(2.34)
    samples = await s.metrics()
    assert value(samples, "livestream_exporter_targets", **SRC) == 234
    assert value(samples, "livestream_exporter_poll_interval_seconds", **SRC) == pytest.approx(2.34)
    assert all(t.up for t in s.rig.store.sources[SOURCE].targets.values())


# -- secrets ---------------------------------------------------------------------------------------


async def test_usersig_never_in_logs_metrics_or_pages(world, rigs, demo_source, logs):
    s = await rigs.make([demo_source(discover=True)], timeout="300ms")
    await cycles(s.rig)
    world.clock.advance(500)
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
        world.sim.inject("tencent", kind, count=count, code=code)
        await cycles(s.rig)
    world.clock.advance(USERSIG_LIFETIME)  # and a renewal
    await cycles(s.rig)

    sigs = usersigs(world)
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


async def test_room_list_without_roomlist_keeps_the_discovered_rooms(rigs, demo_source, canned, logs):
    """A get_room_list answer without `RoomList` is not read as "no rooms" (which would remove
    every discovered room's series): discovery fails (parse) and the rooms found before are kept
    and still polled."""
    vendor, base = canned
    s = await rigs.make([demo_source(discover=True, targets=[], base_url=base)])
    ok = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
    stats = {field: 5 for field in COUNTS.values()}
    vendor.answer({**ok, "Response": {"RoomList": [{"RoomId": "room-1"}], "Next": ""}})
    vendor.answer({**ok, "Response": stats})
    await cycles(s.rig)
    assert value(await s.metrics(), "livestream_viewers_total", **lab("room-1")) == 5

    vendor.answer({**ok, "Response": {"Next": ""}})  # no RoomList at all
    vendor.answer({**ok, "Response": {**stats, "TotalViewers": 6}})
    await cycles(s.rig)
    assert [seen.raw_path.split("?")[0].rsplit("/", 1)[1] for seen in vendor.seen] == [
        "get_room_list",
        "get_room_stats",
        "get_room_list",
        "get_room_stats",
    ]
    samples = await s.metrics()
    assert [t.key for t in s.rig.runner.discovered] == ["room-1"]
    assert value(samples, "livestream_target_up", **lab("room-1")) == 1
    assert value(samples, "livestream_viewers_total", **lab("room-1")) == 6
    assert any("discovery failed" in line and "error=parse" in line for line in logs), logs


async def test_room_list_that_repeats_a_cursor_stops_paging(rigs, demo_source, canned, logs):
    """A `Next` cursor the list gave before would go round and round (until the page bound, a
    thousand requests every discovery): paging stops there with the rooms found."""
    vendor, base = canned
    s = await rigs.make([demo_source(discover=True, targets=[], base_url=base)])
    ok = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
    vendor.answer({**ok, "Response": {"RoomList": [{"RoomId": "room-1"}], "Next": "c1"}})
    vendor.answer({**ok, "Response": {"RoomList": [{"RoomId": "room-2"}], "Next": "c1"}})
    for n in (1, 2):
        vendor.answer({**ok, "Response": {field: n for field in COUNTS.values()}})
    await cycles(s.rig)
    assert [seen.raw_path.split("?")[0].rsplit("/", 1)[1] for seen in vendor.seen] == [
        "get_room_list",
        "get_room_list",
        "get_room_stats",
        "get_room_stats",
    ]
    assert [seen.json()["Next"] for seen in vendor.seen[:2]] == ["", "c1"]
    samples = await s.metrics()
    assert value(samples, "livestream_viewers_total", **lab("room-1")) == 1
    assert value(samples, "livestream_viewers_total", **lab("room-2")) == 2
    assert any("paging stopped" in line for line in logs), logs
