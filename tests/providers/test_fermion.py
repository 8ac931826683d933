"""Fermion provider end to end through the simulator: requests, values, batching, errors, limits.

Most tests drive the real SourceRunner by hand on a FakeClock that also drives the
simulator's clock and rate limits, over real HTTP on loopback: values on /metrics are
exact because the simulator's state at the poll's instant is known.  One test runs the
whole exporter (scheduler, /metrics, landing page) on real time.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientSession

from exporter.simulator import (
    DEMO_SCENARIOS,
    DEMO_STREAMS,
    END_AFTER,
    ENDED_BEFORE,
    ENDED_DURATION,
    START_AFTER,
    Simulator,
)
from exporter.simulator import fermion as fake_fermion
from exporter.simulator.fermion import DEMO_KEY as DEMO_FERMION_KEY
from tests.conftest import sim_sources, wait_for
from tests.pollhelpers import parse, series_of, stream_values, value
from tests.simrig import START, SimWorld, cycles

SESSIONS = DEMO_STREAMS["fermion"]
_BY_SCENARIO = {scenario: key for key, scenario in DEMO_SCENARIOS["fermion"].items()}
ALGEBRA = _BY_SCENARIO["rising"]  # live from the start
HISTORY = _BY_SCENARIO["falling"]
PHYSICS = _BY_SCENARIO["drop"]
CHEMISTRY = _BY_SCENARIO["ends"]  # ends END_AFTER after the start
BIOLOGY = _BY_SCENARIO["starts"]  # starts START_AFTER after the start
GEOGRAPHY = _BY_SCENARIO["ended"]  # ended ENDED_BEFORE before the start
SOURCE = "demo-fermion"
DEMO_PROVIDER = "fermion"
DEMO_CHANGES = {"interval": "200ms"}
PATH = "/fermion/api/public/get-live-event-session-stats"
FALLBACK = "falling back to one session per request"
#: what the simulator puts in topUsersByWatchTime: none of it may leave the provider
PERSONAL = ("@example.com", "Demo Viewer", "user-000", "fu_session", "avatars/", "viewer1")
COUNTS = {
    "livestream_concurrent_viewers": "currentActivelyWatchingDistinctUserCount",
    "livestream_peak_concurrent_viewers": "peakConcurrentUsers",
    "livestream_unique_viewers": "uniqueUsersCount",
    "livestream_messages_total": "totalMessagesSentCount",
    "livestream_instructor_messages_total": "instructorMessagesSentCount",
    "livestream_polls_total": "pollsConductedCount",
}


def lab(stream: str, source: str = SOURCE) -> dict[str, str]:
    return {"provider": "fermion", "source": source, "stream": stream}


def bodies(world: SimWorld) -> list[Any]:
    """The JSON body of each stats request the simulator received, in order."""
    return [r.json() for r in world.requests_to(PATH)]


def batches(world: SimWorld) -> list[list[str]]:
    """The sessions of each request the simulator answered, in order."""
    return [list(r["streams"]) for r in world.sim.request_log("fermion")]  # type: ignore[call-overload]


def expected_from_vendor(sim: Simulator, session: str, now: float) -> dict[str, float]:
    """The metrics the provider makes of the vendor's answer for `session` at `now`."""
    data = fake_fermion.session_stats(sim.stream("fermion", session), now, 1)
    out = {metric: float(data[f]) for metric, f in COUNTS.items()}
    out["livestream_duration_seconds"] = data["estimatedStreamDurationInMinutes"] * 60.0
    return out


# -- request shape -------------------------------------------------------------------------------


async def test_api_key_header_and_documented_body(world, rigs, demo_source):
    """FERMION-API-KEY header, JSON body {data: [{data: {liveEventSessionId, topUserCount}}]},
    and `batch_size: 3` sends 3 sessions per request (6 sessions: 3 + 3)."""
    r = rigs.build([demo_source(batch_size=3)])
    await cycles(r, 2)
    assert batches(world) == [SESSIONS[:3], SESSIONS[3:]] * 2
    assert {(s.method, s.path) for s in world.seen} == {("POST", PATH)}
    for s in world.seen:
        assert s.headers["FERMION-API-KEY"] == DEMO_FERMION_KEY
        assert s.headers["Content-Type"].startswith("application/json")
        assert "Authorization" not in s.headers
    assert bodies(world)[:2] == [
        {"data": [{"data": {"liveEventSessionId": k, "topUserCount": 1}} for k in SESSIONS[:3]]},
        {"data": [{"data": {"liveEventSessionId": k, "topUserCount": 1}} for k in SESSIONS[3:]]},
    ]
    samples = r.scrape()
    assert all(value(samples, "livestream_target_up", **lab(k)) == 1 for k in SESSIONS)
    # two requests a cycle at 60/min: the effective interval is 2 s
    src = {"provider": "fermion", "source": SOURCE}
    assert value(samples, "livestream_exporter_poll_interval_seconds", **src) == 2.0
    assert value(samples, "livestream_exporter_rate_limit_requests_per_second", **src) == 1.0
    assert value(samples, "livestream_exporter_targets", **src) == len(SESSIONS) == 6
    code = {**src, "endpoint": "get-live-event-session-stats", "code": "200"}
    assert value(samples, "livestream_exporter_api_requests_total", **code) == 4


# -- exact values ---------------------------------------------------------------------------------


async def test_exact_values_of_every_metric(world, rigs, demo_source):
    """Pinned viewers over known time give the exact vendor numbers, each on its metric."""
    sim, clock, t0 = world.sim, world.clock, START
    sim.set_viewers("fermion", ALGEBRA, 100)  # live from t0
    sim.set_viewers("fermion", CHEMISTRY, 10)  # live from t0, ends at t0 + END_AFTER (600 s)
    sim.set_viewers("fermion", BIOLOGY, 30)  # starts at t0 + START_AFTER (120 s)
    r = rigs.build([demo_source(batch_size=6)])  # one request: every session answered at the same instant

    await r.runner.run_cycle()
    s = r.scrape()
    assert stream_values(s, ALGEBRA) == {
        "livestream_concurrent_viewers": 100,
        "livestream_peak_concurrent_viewers": 100,
        "livestream_unique_viewers": 100,
        "livestream_messages_total": 0,
        "livestream_instructor_messages_total": 0,
        "livestream_polls_total": 0,
        "livestream_duration_seconds": 0,
        "livestream_started_timestamp_seconds": t0,
        "livestream_live": 1,
    }
    # not started yet: no start time, not live, nothing counted
    assert stream_values(s, BIOLOGY) == {
        "livestream_concurrent_viewers": 0,
        "livestream_peak_concurrent_viewers": 0,
        "livestream_unique_viewers": 0,
        "livestream_messages_total": 0,
        "livestream_instructor_messages_total": 0,
        "livestream_polls_total": 0,
        "livestream_duration_seconds": 0,
        "livestream_live": 0,
    }

    clock.advance(1200)
    sim.set_viewers("fermion", ALGEBRA, 40)
    clock.advance(600)
    await r.runner.run_cycle()
    s = r.scrape()
    # 100 viewers x 1200 s + 40 x 600 s = 144000 viewer-seconds over 1800 live seconds
    assert stream_values(s, ALGEBRA) == {
        "livestream_concurrent_viewers": 40,
        "livestream_peak_concurrent_viewers": 100,
        "livestream_unique_viewers": 100 + 144000 // 900,
        "livestream_messages_total": 144000 // 150,
        "livestream_instructor_messages_total": 1800 // 120,
        "livestream_polls_total": 1800 // 900,
        "livestream_duration_seconds": 30 * 60,
        "livestream_started_timestamp_seconds": t0,
        "livestream_live": 1,
    }
    # ended at t0 + 600: 10 viewers x 600 s
    assert stream_values(s, CHEMISTRY) == {
        "livestream_concurrent_viewers": 0,
        "livestream_peak_concurrent_viewers": 10,
        "livestream_unique_viewers": 10 + 6000 // 900,
        "livestream_messages_total": 6000 // 150,
        "livestream_instructor_messages_total": 600 // 120,
        "livestream_polls_total": 0,
        "livestream_duration_seconds": 600,
        "livestream_started_timestamp_seconds": t0,
        "livestream_ended_timestamp_seconds": t0 + END_AFTER,
        "livestream_live": 0,
    }
    # live since t0 + 120: 30 viewers x 1680 s
    assert stream_values(s, BIOLOGY) == {
        "livestream_concurrent_viewers": 30,
        "livestream_peak_concurrent_viewers": 30,
        "livestream_unique_viewers": 30 + 50400 // 900,
        "livestream_messages_total": 50400 // 150,
        "livestream_instructor_messages_total": 1680 // 120,
        "livestream_polls_total": 1,
        "livestream_duration_seconds": 28 * 60,
        "livestream_started_timestamp_seconds": t0 + START_AFTER,
        "livestream_live": 1,
    }
    # the moving curves too: every counter is the vendor's field at the poll's instant
    now = clock.time()
    for k in (HISTORY, PHYSICS, GEOGRAPHY):
        got = stream_values(s, k)
        assert {m: got[m] for m in expected_from_vendor(sim, k, now)} == expected_from_vendor(sim, k, now)
        assert got["livestream_started_timestamp_seconds"] <= t0
    for k in (HISTORY, PHYSICS):
        got = stream_values(s, k)
        assert got["livestream_live"] == 1 and "livestream_ended_timestamp_seconds" not in got
    got = stream_values(s, GEOGRAPHY)  # ended before the simulator started
    assert got["livestream_live"] == 0 and got["livestream_concurrent_viewers"] == 0
    assert got["livestream_started_timestamp_seconds"] == t0 - ENDED_BEFORE - ENDED_DURATION
    assert got["livestream_ended_timestamp_seconds"] == t0 - ENDED_BEFORE
    assert got["livestream_duration_seconds"] == ENDED_DURATION
    assert value(s, "livestream_target_last_success_timestamp_seconds", **lab(ALGEBRA)) == now

    # the stream ends: live 0, ended time set, started kept
    clock.advance(60)
    sim.end_stream("fermion", ALGEBRA)
    ended_at = clock.time()
    clock.advance(40)
    await r.runner.run_cycle()
    got = stream_values(r.scrape(), ALGEBRA)
    assert got["livestream_live"] == 0
    assert got["livestream_ended_timestamp_seconds"] == ended_at
    assert got["livestream_started_timestamp_seconds"] == t0
    assert got["livestream_concurrent_viewers"] == 0
    assert got["livestream_duration_seconds"] == 31 * 60


# -- batching and its fallback --------------------------------------------------------------------


async def test_batch_fallback_warns_once_and_loses_no_session(world, rigs, demo_source, logs):
    """An answer with fewer outputs than calls: the batch is re-polled one by one, every later
    request carries one session, and the warning is logged once over several cycles."""
    world.sim.set_quirk("fermion_first_call_only", True)
    for i, k in enumerate(SESSIONS):
        world.sim.set_viewers("fermion", k, 10 * (i + 1))
    r = rigs.build([demo_source(batch_size=3)])

    await r.runner.run_cycle()
    # [a,b,c] answered for a only -> a, b, c one by one; the planned [d,e] goes one by one too
    assert batches(world) == [SESSIONS[:3]] + [[k] for k in SESSIONS]
    s = r.scrape()
    for i, k in enumerate(SESSIONS):
        assert value(s, "livestream_target_up", **lab(k)) == 1, k
        expected = 0 if k in (BIOLOGY, GEOGRAPHY) else 10 * (i + 1)  # not started yet / ended
        assert value(s, "livestream_concurrent_viewers", **lab(k)) == expected

    await cycles(r, 3)
    assert batches(world)[1 + len(SESSIONS) :] == [[k] for k in SESSIONS] * 3
    assert all(t.up for t in r.store.sources[SOURCE].targets.values())
    warnings = [line for line in logs if FALLBACK in line]
    assert len(warnings) == 1, warnings
    assert "level=warning" in warnings[0] and "sent=3" in warnings[0] and "received=1" in warnings[0]
    # planned on one request per session a cycle now
    assert r.runner.interval == len(SESSIONS)
    assert world.sim.max_in_window("fermion", 60) <= 60


async def test_batches_that_match_never_fall_back(world, rigs, demo_source, logs):
    r = rigs.build([demo_source(batch_size=2)])
    await cycles(r, 3)
    assert batches(world) == [SESSIONS[:2], SESSIONS[2:4], SESSIONS[4:]] * 3
    assert not [line for line in logs if FALLBACK in line]


# -- error outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 6])
async def test_error_output_fails_its_session_only_and_removes_its_series(
    world, rigs, demo_source, batch_size
):
    """`output.status: error` for one session ("not found"): that session's series go, the
    others stay up with fresh values; when the vendor knows the session again it comes back."""
    world.sim.set_viewers("fermion", ALGEBRA, 70)
    world.sim.set_viewers("fermion", HISTORY, 80)
    r = rigs.build([demo_source(batch_size=batch_size)])
    await cycles(r, 1)
    assert value(r.scrape(), "livestream_concurrent_viewers", **lab(HISTORY)) == 80

    world.sim.remove_stream("fermion", HISTORY)
    world.sim.set_viewers("fermion", ALGEBRA, 75)
    await cycles(r, 1)
    s = r.scrape()
    assert series_of(s, stream=HISTORY) == []
    assert value(s, "livestream_concurrent_viewers", **lab(ALGEBRA)) == 75
    assert value(s, "livestream_target_up", **lab(ALGEBRA)) == 1
    for k in (ALGEBRA, PHYSICS, CHEMISTRY, BIOLOGY):
        assert value(s, "livestream_target_up", **lab(k)) == 1
    assert r.store.sources[SOURCE].targets[HISTORY].error == "gone"

    world.sim.start_stream("fermion", HISTORY, 12)
    await cycles(r, 1)
    s = r.scrape()
    assert value(s, "livestream_target_up", **lab(HISTORY)) == 1
    assert value(s, "livestream_concurrent_viewers", **lab(HISTORY)) == 12


async def test_bad_api_key_is_an_auth_error_not_gone(world, rigs, demo_source, logs):
    """ "Fermion School not found!" is an auth failure: up=0, never gone, no fallback even in a
    batch (the lone error output refuses the whole request); the good source is unaffected."""
    bad = demo_source(name="fermion-bad", batch_size=3, credentials={"api_key": "not-a-valid-fermion-key"})
    world.sim.set_viewers("fermion", ALGEBRA, 33)
    r = rigs.build([demo_source(batch_size=1), bad])
    for _ in range(2):
        for name in (SOURCE, "fermion-bad"):
            await cycles(r, 1, name)
    s = r.scrape()
    for k in SESSIONS:
        assert value(s, "livestream_target_up", **lab(k, "fermion-bad")) == 0
        assert value(s, "livestream_target_up", **lab(k)) == 1
        assert r.store.sources["fermion-bad"].targets[k].error == "auth"
    assert value(s, "livestream_concurrent_viewers", **lab(ALGEBRA)) == 33
    # health only: no value was ever read, none invented
    assert series_of(s, source="fermion-bad", stream=ALGEBRA) == [
        "livestream_target_poll_duration_seconds",
        "livestream_target_up",
    ]
    assert r.runners["fermion-bad"].provider.batch_size() == 3
    assert not [line for line in logs if FALLBACK in line]
    assert not [line for line in logs if "not-a-valid-fermion-key" in line]

    # a refusal after good polls keeps the values: up=0, old values
    world.sim.inject("fermion", "auth", count=len(SESSIONS))
    world.sim.set_viewers("fermion", ALGEBRA, 34)
    await cycles(r, 1, SOURCE)
    s = r.scrape()
    assert value(s, "livestream_target_up", **lab(ALGEBRA)) == 0
    assert value(s, "livestream_concurrent_viewers", **lab(ALGEBRA)) == 33


@pytest.mark.parametrize("kind", ["throttle200", "error200"])
async def test_vendor_failure_outputs_keep_values_and_back_off(world, rigs, demo_source, logs, kind):
    """A "too many requests" / "something went wrong" error output is no reason to drop series
    (nor to fall back from batching): up=0, old values kept, the source backs off."""
    world.sim.set_viewers("fermion", ALGEBRA, 50)
    r = rigs.build([demo_source(batch_size=3)])
    await cycles(r, 1)
    world.sim.set_viewers("fermion", ALGEBRA, 55)
    world.sim.inject("fermion", kind, stream=ALGEBRA)
    before = r.clock.monotonic()
    await r.runner.run_cycle()
    s = r.scrape()
    for k in SESSIONS[:3]:
        assert value(s, "livestream_target_up", **lab(k)) == 0
    assert value(s, "livestream_concurrent_viewers", **lab(ALGEBRA)) == 50
    assert value(s, "livestream_target_up", **lab(CHEMISTRY)) == 1
    assert r.runner.provider.batch_size() == 3
    assert not [line for line in logs if FALLBACK in line]
    assert r.runner.limiter.paused_until > before
    throttled = value(s, "livestream_exporter_throttled_total", provider="fermion", source=SOURCE)
    assert throttled == (1 if kind == "throttle200" else 0)
    await cycles(r, 1)
    assert value(r.scrape(), "livestream_concurrent_viewers", **lab(ALGEBRA)) == 55


@pytest.mark.parametrize(
    ("kind", "code"), [("5xx", None), ("5xx", 500), ("truncated", None), ("html", None), ("html", 200)]
)
async def test_broken_answers_keep_old_values_with_up_0(world, rigs, demo_source, kind, code):
    for k in SESSIONS:
        world.sim.set_viewers("fermion", k, 20)
    r = rigs.build([demo_source(batch_size=1)])
    await cycles(r, 1)
    first_success = value(r.scrape(), "livestream_target_last_success_timestamp_seconds", **lab(ALGEBRA))

    for k in SESSIONS:
        world.sim.set_viewers("fermion", k, 21)
    world.sim.inject("fermion", kind, stream=ALGEBRA, code=code)
    await cycles(r, 1)
    s = r.scrape()
    assert value(s, "livestream_target_up", **lab(ALGEBRA)) == 0
    assert value(s, "livestream_concurrent_viewers", **lab(ALGEBRA)) == 20
    assert value(s, "livestream_peak_concurrent_viewers", **lab(ALGEBRA)) == 20
    assert value(s, "livestream_target_last_success_timestamp_seconds", **lab(ALGEBRA)) == first_success
    for k in (HISTORY, PHYSICS, CHEMISTRY):
        assert value(s, "livestream_target_up", **lab(k)) == 1
        assert value(s, "livestream_concurrent_viewers", **lab(k)) == 21
    expected_kind = "parse" if kind == "truncated" or code == 200 else "upstream"  # 5xx, HTML 502
    assert r.store.sources[SOURCE].targets[ALGEBRA].error == expected_kind

    await cycles(r, 1)
    s = r.scrape()
    assert value(s, "livestream_target_up", **lab(ALGEBRA)) == 1
    assert value(s, "livestream_concurrent_viewers", **lab(ALGEBRA)) == 21


# -- rate limit ---------------------------------------------------------------------------------


async def test_60_per_minute_holds_with_more_sessions_than_the_budget(world, rigs, demo_source):
    """80 sessions, batching that falls back mid-cycle: never more than 60 requests in any
    minute as the simulator counts them, none refused, every session polled."""
    extra = [f"session-extra-{i:02d}" for i in range(80 - len(SESSIONS))]
    for i, k in enumerate(extra):
        world.sim.start_stream("fermion", k, i + 1)
    world.sim.set_quirk("fermion_first_call_only", True)
    targets = [{"live_event_session_id": k} for k in [*SESSIONS, *extra]]
    r = rigs.build([demo_source(batch_size=3, targets=targets, interval="1s")])
    await cycles(r, 6)

    records = world.sim.request_log("fermion")
    assert len(records) > 6 * 60
    assert world.sim.max_in_window("fermion", 60) <= 60
    assert not [x for x in records if x["throttled"] or x["status"] != 200]
    assert r.runner.interval == 80.0
    s = r.scrape()
    for i, k in enumerate(extra):
        assert value(s, "livestream_concurrent_viewers", **lab(k)) == i + 1
    assert all(t.up for t in r.store.sources[SOURCE].targets.values())


# -- personal data (the whole exporter, real time) -------------------------------------------------


async def test_personal_data_never_leaves_the_provider(simulator, write_config, running, logs):
    """topUsersByWatchTime (emails, names) reaches neither /metrics, nor `/`, nor a debug log line,
    also when an answer is cut short or fails."""
    sim, root = simulator
    async with ClientSession() as http:
        resp = await http.post(
            root + PATH,
            json={"data": [{"data": {"liveEventSessionId": ALGEBRA, "topUserCount": 1}}]},
            headers={"FERMION-API-KEY": DEMO_FERMION_KEY},
        )
        text = await resp.text()
    assert "viewer1@example.com" in text and "Demo Viewer 1" in text  # the vendor does send them

    sources = sim_sources(root, "fermion", batch_size=6, rate_limit=[{"requests": 600, "per": "1m"}])
    exporter, client = await running(write_config(sources))
    targets = lambda: exporter.store.sources[SOURCE].targets  # noqa: E731
    await wait_for(lambda: len(targets()) == len(SESSIONS) and all(t.up for t in targets().values()))
    sim.inject("fermion", "truncated")
    sim.inject("fermion", "error200")
    await wait_for(lambda: not targets()[ALGEBRA].up)
    await wait_for(lambda: all(t.up for t in targets().values()))

    metrics = await (await client.get("/metrics")).text()
    page = await (await client.get("/")).text()
    assert value(parse(metrics), "livestream_target_up", **lab(ALGEBRA)) == 1
    assert SOURCE in page and ALGEBRA in page
    assert any("level=debug" in line for line in logs)
    for text, where in ((metrics, "/metrics"), (page, "/"), ("\n".join(logs), "logs")):
        for needle in PERSONAL:
            assert needle not in text, f"{needle!r} in {where}"
        assert DEMO_FERMION_KEY not in text, where
