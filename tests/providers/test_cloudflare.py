"""Cloudflare RealtimeKit provider end to end through the simulator.

Runners are driven by hand on one FakeClock that is also the simulator's clock, so the
simulator's counters, session times and rate limits follow simulated time while every
request goes over real HTTP; /metrics is the real web app over the runners' store.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from exporter.simulator import (
    DEMO_SCENARIOS,
    DEMO_STREAMS,
    END_AFTER,
    ENDED_BEFORE,
    ENDED_DURATION,
)
from exporter.simulator.cloudflare import DEMO_TOKEN as DEMO_CF_TOKEN
from exporter.simulator.cloudflare import Cloudflare as CloudflareSim
from exporter.simulator.cloudflare import overall
from exporter.simulator.common import iso_z
from tests.conftest import sim_sources
from tests.pollhelpers import Samples, series_of, value
from tests.simrig import START, Canned, Rigs, Served, SimWorld

CANNED_PREFIX = "client/v4"
SOURCE = "demo-cloudflare"
LABELS = {"provider": "cloudflare", "source": SOURCE}
STATUSES = ("LIVE", "IDLE", "ERRORED", "INVOKED")
BY = {scenario: key for key, scenario in DEMO_SCENARIOS["cloudflare"].items()}
RISING, FALLING, DROP, ENDS, STARTS, ENDED = (
    BY[s] for s in ("rising", "falling", "drop", "ends", "starts", "ended")
)
STRINGY = FALLING  # in STRING_NUMBERS_DEFAULT: its numbers arrive as strings
INTERVAL = 15.0  # every source here polls every 15 s


def cf_source(world: SimWorld, ids: list[str], *, discover: bool = False, **extra: Any) -> dict[str, Any]:
    (source,) = sim_sources(
        world.root,
        "cloudflare",
        interval=f"{INTERVAL:g}s",
        discover=discover,
        targets=[{"livestream_id": i} for i in ids],
        **extra,
    )
    return source


def at(stream: str) -> dict[str, str]:
    return {**LABELS, "stream": stream}


def v(samples: Samples, metric: str, stream: str, /, **extra: str) -> float | None:
    """The value of `metric` for one livestream (extra labels such as `name` or `status`)."""
    return samples.get((metric, tuple(sorted({**at(stream), **extra}.items()))))


def stream_series(samples: Samples, stream: str) -> list[str]:
    return series_of(samples, source=SOURCE, stream=stream)


def assert_status(samples: Samples, stream: str, current: str) -> None:
    """The state set: exactly `current` is 1, the other documented statuses 0."""
    got = {s: v(samples, "livestream_status", stream, status=s) for s in STATUSES}
    assert got == {s: (1.0 if s == current else 0.0) for s in STATUSES}
    assert v(samples, "livestream_live", stream) == (1.0 if current == "LIVE" else 0.0)


def pin_all(world: SimWorld, viewers: dict[str, float]) -> None:
    for key in DEMO_STREAMS["cloudflare"]:
        world.sim.set_viewers("cloudflare", key, viewers.get(key, 10.0))


def cf_requests(world: SimWorld, endpoint: str | None = None) -> list[dict[str, Any]]:
    return [r for r in world.sim.request_log("cloudflare") if endpoint is None or r["endpoint"] == endpoint]


def sent_at(world: SimWorld, stream: str | None = None, endpoint: str | None = None) -> list[float]:
    """When requests reached the simulator, in seconds after START, oldest first: all of them,
    or those for one livestream and/or to one endpoint."""
    return [
        r["wall"] - START for r in cf_requests(world, endpoint) if stream is None or stream in r["streams"]
    ]


def slots(requests: int) -> list[float]:
    """When each request of an undisturbed cycle is due, in seconds after the cycle starts.

    Every request of a cycle gets an equal share of the interval, in this order: the discovery
    pages (when discovery is on), the app-level poll, then one per livestream.
    """
    return [i * INTERVAL / requests for i in range(requests)]


# -- exact values ----------------------------------------------------------------------------


async def test_exact_values_for_every_metric(world: SimWorld, rigs: Rigs) -> None:
    """Live, string-numbered and ended livestreams, and the app level, value for value."""
    pin_all(world, {RISING: 100, FALLING: 40, DROP: 300, ENDS: 20})
    ended = world.sim.stream("cloudflare", ENDED)
    ended_viewer_seconds = ended.viewer_seconds  # its whole session, integrated by set_viewers
    assert ended_viewer_seconds > 0
    served = await rigs.make([cf_source(world, [RISING, STRINGY, ENDED])])
    world.clock.advance(30)
    await served.cycle()  # four requests 3.75 s apart: the app level at +30 s, then RISING, STRINGY, ENDED
    s = await served.metrics()
    assert sent_at(world) == [30 + t for t in slots(4)]
    (app_at,) = sent_at(world, endpoint="analytics-overall")
    rising, stringy = sent_at(world, RISING)[-1], sent_at(world, STRINGY)[-1]

    # counters are the watch time up to the request; the vendor rounds to whole seconds
    assert v(s, "livestream_viewer_seconds_total", RISING) == 100 * rising
    assert v(s, "livestream_ingest_seconds_total", RISING) == round(rising)
    assert v(s, "livestream_started_timestamp_seconds", RISING) == START
    assert v(s, "livestream_ended_timestamp_seconds", RISING) is None
    assert_status(s, RISING, "LIVE")
    assert v(s, "livestream_stream_info", RISING, name=f"Morning Show ({RISING})") == 1

    assert v(s, "livestream_viewer_seconds_total", STRINGY) == 40 * stringy  # sent as "1500"
    assert v(s, "livestream_ingest_seconds_total", STRINGY) == round(stringy)
    assert v(s, "livestream_started_timestamp_seconds", STRINGY) == START
    assert_status(s, STRINGY, "LIVE")

    assert v(s, "livestream_viewer_seconds_total", ENDED) == round(ended_viewer_seconds)
    assert v(s, "livestream_ingest_seconds_total", ENDED) == ENDED_DURATION
    assert v(s, "livestream_started_timestamp_seconds", ENDED) == START - ENDED_BEFORE - ENDED_DURATION
    assert v(s, "livestream_ended_timestamp_seconds", ENDED) == START - ENDED_BEFORE
    assert_status(s, ENDED, "IDLE")
    assert v(s, "livestream_stream_info", ENDED, name=f"Opening Keynote ({ENDED})") == 1

    # app level at +30 s: STARTS is created at +60 s, so five livestreams, four of them live
    live_viewers = 100 + 40 + 300 + 20
    assert value(s, "livestream_app_livestreams", **LABELS) == 5
    assert value(s, "livestream_app_viewer_seconds_total", **LABELS) == round(
        live_viewers * app_at + ended_viewer_seconds
    )
    assert value(s, "livestream_app_ingest_seconds_total", **LABELS) == 4 * app_at + ENDED_DURATION
    app = {(n, lv) for n, lv in s if n.startswith("livestream_app_")}
    assert {n for n, _ in app} == {
        "livestream_app_livestreams",
        "livestream_app_viewer_seconds_total",
        "livestream_app_ingest_seconds_total",
    }
    assert all(dict(lv) == LABELS for _, lv in app)

    for stream in (RISING, STRINGY, ENDED):
        assert v(s, "livestream_target_up", stream) == 1
    # the series a cloudflare livestream has, and nothing else
    assert set(stream_series(s, RISING)) == {
        "livestream_viewer_seconds_total",
        "livestream_ingest_seconds_total",
        "livestream_started_timestamp_seconds",
        "livestream_live",
        "livestream_status",
        "livestream_stream_info",
        "livestream_target_up",
        "livestream_target_last_success_timestamp_seconds",
        "livestream_target_poll_duration_seconds",
    }
    assert set(stream_series(s, ENDED)) == set(stream_series(s, RISING)) | {
        "livestream_ended_timestamp_seconds"
    }

    # the next cycle, one interval later, moves the counters by exactly the simulated watch time
    world.at(30 + INTERVAL)
    await served.cycle()
    s = await served.metrics()
    assert sent_at(world, RISING)[-1] == rising + INTERVAL
    assert sent_at(world, STRINGY)[-1] == stringy + INTERVAL
    assert v(s, "livestream_viewer_seconds_total", RISING) == 100 * (rising + INTERVAL)
    assert v(s, "livestream_viewer_seconds_total", STRINGY) == 40 * (stringy + INTERVAL)
    assert v(s, "livestream_viewer_seconds_total", ENDED) == round(ended_viewer_seconds)


async def test_bearer_token_on_every_request(world: SimWorld, rigs: Rigs, logs: list[str]) -> None:
    served = await rigs.make([cf_source(world, [RISING], discover=True)])
    await served.cycle()
    assert world.seen and all(r.headers["Authorization"] == f"Bearer {DEMO_CF_TOKEN}" for r in world.seen)
    text = await (await served.client.get("/metrics")).text()
    assert DEMO_CF_TOKEN not in text and not any(DEMO_CF_TOKEN in line for line in logs)

    world.sim.inject("cloudflare", "auth", count=10)
    world.clock.advance(15)
    await served.cycle()
    s = await served.metrics()
    assert v(s, "livestream_target_up", RISING) == 0
    assert served.target(SOURCE, RISING).error == "auth"
    assert v(s, "livestream_viewer_seconds_total", RISING) is not None  # old values kept


# -- the list: both forms, paging, discovery ---------------------------------------------------


@pytest.mark.parametrize("form", ["array", "object"])
async def test_discovery_follows_paging_in_both_forms(world: SimWorld, rigs: Rigs, form: str) -> None:
    """Array form: 100 a page with paging beside; object form: one a page with paging inside."""
    extra = [f"ls-{i:03d}" for i in range(130 if form == "array" else 7)]
    for i, key in enumerate(extra):
        world.sim.start_stream("cloudflare", key, viewers=i + 1)
    world.sim.set_quirk("cf_list_form", form)
    served = await rigs.make([cf_source(world, [], discover=True)])
    await served.cycle()

    listed = [k for k in DEMO_STREAMS["cloudflare"] if k != STARTS] + extra  # STARTS does not exist yet
    pages = world.requests_to("/livestreams?")
    expected_pages = 2 if form == "array" else len(listed)
    assert len(pages) == expected_pages
    for n, seen in enumerate(pages, 1):
        assert f"page_no={n}" in seen.raw_path and "per_page=100" in seen.raw_path
    assert [t.target.stream for t in served.rig.store.sources[SOURCE].targets.values()] == listed
    s = await served.metrics()
    for key in extra:
        assert v(s, "livestream_target_up", key) == 1
        assert v(s, "livestream_stream_info", key, name=f"Pop-up Stream ({key})") == 1
        assert_status(s, key, "LIVE")
    assert value(s, "livestream_exporter_targets", **LABELS) == len(listed)


async def test_discovery_tracks_the_list_and_drops_what_leaves_it(world: SimWorld, rigs: Rigs) -> None:
    served = await rigs.make([cf_source(world, [RISING], discover=True)])
    await served.cycle()
    s = await served.metrics()
    assert {lv for n, lv in s if n == "livestream_target_up"} == {
        tuple(sorted(at(k).items())) for k in (RISING, FALLING, DROP, ENDS, ENDED)
    }
    # STARTS appears in the list once created; DROP leaves it
    world.at(120)
    world.sim.remove_stream("cloudflare", DROP)
    await served.cycle()
    s = await served.metrics()
    assert stream_series(s, DROP) == []
    assert v(s, "livestream_target_up", STARTS) == 1
    assert_status(s, STARTS, "LIVE")
    assert v(s, "livestream_target_up", FALLING) == 1
    assert DROP not in served.rig.store.sources[SOURCE].targets


async def test_failed_discovery_keeps_the_previous_list(world: SimWorld, rigs: Rigs) -> None:
    served = await rigs.make([cf_source(world, [], discover=True)])
    await served.cycle()
    world.sim.inject("cloudflare", "error200", count=1)  # success:false on HTTP 200, on the list
    world.clock.advance(15)
    await served.cycle()
    s = await served.metrics()
    assert cf_requests(world, "livestreams")[-1]["error"] == "10001"
    for key in (RISING, FALLING, DROP, ENDS, ENDED):
        assert v(s, "livestream_target_up", key) == 1


async def test_list_that_repeats_a_page_stops_paging(
    canned: tuple[Canned, str], rigs: Rigs, world: SimWorld, logs: list[str]
) -> None:
    """A list that answers the same page whatever page_no asks (its paging does not move on)
    would be followed for a thousand pages every discovery: paging stops at the repeat."""
    vendor, base = canned
    served: Served = await rigs.make([cf_source(world, [], discover=True, base_url=base)])
    page = {
        "id": "ls-a",
        "name": "a",
        "status": "LIVE",
        "paging": {"start_offset": 1, "end_offset": 1, "total_count": 3},
    }
    vendor.answer({"success": True, "data": page})
    vendor.answer({"success": True, "data": page})  # page 2 is page 1 again
    vendor.answer(
        {"success": True, "data": {"count": 1, "total_viewer_seconds": 9, "total_ingest_seconds": 3}}
    )
    vendor.answer({"success": True, "data": {"livestream": page, "session": {"viewer_seconds": 5}}})
    await served.cycle()
    assert [r.query.get("page_no") for r in vendor.seen[:2]] == ["1", "2"]
    assert vendor.seen[2].path.endswith("/analytics/livestreams/overall")
    s = await served.metrics()
    assert value(s, "livestream_app_viewer_seconds_total", **LABELS) == 9
    assert v(s, "livestream_viewer_seconds_total", "ls-a") == 5
    assert any("paging stopped" in line for line in logs), logs


# -- inactive, invoked, gone -----------------------------------------------------------------


async def test_inactive_session_404_falls_back_to_the_livestream(world: SimWorld, rigs: Rigs) -> None:
    world.sim.set_quirk("cf_inactive_session_404", True)
    pin_all(world, {ENDS: 50})
    missing = "0badc0de-0000-4000-8000-000000000000"
    served = await rigs.make([cf_source(world, [ENDS, ENDED, missing])])
    await served.cycle()
    s = await served.metrics()
    assert_status(s, ENDS, "LIVE")
    assert_status(s, ENDED, "IDLE")
    assert v(s, "livestream_ended_timestamp_seconds", ENDED) == START - ENDED_BEFORE
    assert v(s, "livestream_ingest_seconds_total", ENDED) == ENDED_DURATION
    # a livestream that does not exist at all: no series, not even target_up
    assert stream_series(s, missing) == []
    assert served.target(SOURCE, missing).gone

    # ENDS stops: its session answers 404, the livestream itself gives IDLE and the last session.
    # The simulator integrates counters in 5 s steps from the last request that touched a stream
    # (ENDS's own was at +3.75 s), so the cycle starts as ENDS stops: its app-level poll, first,
    # brings every counter exactly to END_AFTER, and ENDS is polled one slot later.
    world.at(END_AFTER)
    await served.cycle()
    s = await served.metrics()
    assert sent_at(world, ENDS)[-1] == END_AFTER + slots(4)[1]
    assert_status(s, ENDS, "IDLE")
    assert v(s, "livestream_target_up", ENDS) == 1
    assert v(s, "livestream_ended_timestamp_seconds", ENDS) == START + END_AFTER
    assert v(s, "livestream_viewer_seconds_total", ENDS) == 50 * END_AFTER
    assert v(s, "livestream_ingest_seconds_total", ENDS) == END_AFTER
    last = [r for r in cf_requests(world) if ENDS in r["streams"]][-2:]
    assert [(r["endpoint"], r["status"]) for r in last] == [
        ("active-livestream-session", 404),
        ("livestream", 200),
    ]


async def test_invoked_livestream_has_status_but_no_session(world: SimWorld, rigs: Rigs) -> None:
    served = await rigs.make([cf_source(world, [STARTS])])
    await served.cycle()
    assert stream_series(await served.metrics(), STARTS) == []  # not created yet: 404, gone
    world.clock.advance(90)  # created at +60 s, live from +120 s
    await served.cycle()
    s = await served.metrics()
    assert_status(s, STARTS, "INVOKED")
    assert v(s, "livestream_viewer_seconds_total", STARTS) is None
    assert v(s, "livestream_started_timestamp_seconds", STARTS) is None


async def test_configured_livestream_removed_is_gone(world: SimWorld, rigs: Rigs) -> None:
    served = await rigs.make([cf_source(world, [RISING, FALLING])])
    await served.cycle()
    assert v(await served.metrics(), "livestream_target_up", RISING) == 1
    world.sim.remove_stream("cloudflare", RISING)
    world.clock.advance(15)
    await served.cycle()
    s = await served.metrics()
    assert stream_series(s, RISING) == []
    assert v(s, "livestream_target_up", FALLING) == 1


async def test_idle_livestream_reports_its_latest_session(world: SimWorld, rigs: Rigs) -> None:
    """A livestream with three sessions and none active: `GET livestreams/{id}` gives the oldest
    session unless asked otherwise; the exporter shows the latest, with that session's counters."""
    world.sim.set_quirk("cf_inactive_session_404", True)
    key = "ls-three-sessions"
    for begin, end, viewers in ((0, 100, 10), (200, 300, 20), (400, 460, 30)):
        world.at(begin)
        world.sim.start_stream("cloudflare", key, viewers=viewers)
        world.at(end)
        world.sim.end_stream("cloudflare", key)
    world.at(500)
    served = await rigs.make([cf_source(world, [key])])
    await served.cycle()
    s = await served.metrics()
    assert_status(s, key, "IDLE")
    assert v(s, "livestream_started_timestamp_seconds", key) == START + 400
    assert v(s, "livestream_ended_timestamp_seconds", key) == START + 460
    assert v(s, "livestream_ingest_seconds_total", key) == 60
    assert v(s, "livestream_viewer_seconds_total", key) == 30 * 60
    pages = [r.query for r in world.requests_to(f"/livestreams/{key}?")]
    assert pages == [{"page_no": "1", "per_page": "1"}, {"page_no": "3", "per_page": "1"}]


async def test_latest_session_whichever_end_of_the_pages_it_is_on(
    canned: tuple[Canned, str], rigs: Rigs, world: SimWorld
) -> None:
    """The order of the sessions is not documented: newest first works as well as oldest first."""
    vendor, base = canned
    served: Served = await rigs.make([cf_source(world, ["ls-x"], base_url=base)])

    def page(started: str, stopped: str) -> dict[str, Any]:
        session = {"viewer_seconds": 5, "ingest_seconds": 1, "started_time": started, "stopped_time": stopped}
        paging = {"start_offset": 1, "end_offset": 1, "total_count": 4}
        livestream = {"id": "ls-x", "name": "x", "status": "IDLE"}
        return {"success": True, "data": {"livestream": livestream, "session": session, "paging": paging}}

    vendor.answer(
        {"success": True, "data": {"count": 1, "total_viewer_seconds": 1, "total_ingest_seconds": 1}}
    )
    vendor.answer({"success": False, "errors": [{"code": 1404, "message": "none active"}]}, status=404)
    vendor.answer(page("2024-05-04T10:00:00Z", "2024-05-04T11:00:00Z"))  # page 1: the newest
    vendor.answer(page("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"))  # page 4: the oldest
    await served.cycle()
    s = await served.metrics()
    assert [r.query.get("page_no") for r in vendor.seen[2:]] == ["1", "4"]
    assert v(s, "livestream_started_timestamp_seconds", "ls-x") == 1714816800  # 2024-05-04T10:00:00Z
    assert v(s, "livestream_ended_timestamp_seconds", "ls-x") == 1714820400


async def test_app_totals_never_decrease_across_polls(world: SimWorld, rigs: Rigs) -> None:
    """Analytics overall without a range covers a rolling window whose totals fall as watch time
    leaves it; the exporter asks from 1970 to now, so its app counters never decrease."""
    source = cf_source(world, [RISING])
    source["interval"] = "60s"
    served = await rigs.make([source])
    vendor = world.sim.vendor_of(CloudflareSim)
    exported: list[tuple[float, float]] = []
    rolling: list[float] = []
    for minute in range(150):  # 2.5 hours: the first hour's audience leaves the default window
        world.at(60 * minute)
        await served.cycle()
        s = await served.metrics()
        exported.append(
            (
                value(s, "livestream_app_viewer_seconds_total", **LABELS) or 0.0,
                value(s, "livestream_app_ingest_seconds_total", **LABELS) or 0.0,
            )
        )
        rolling.append(overall(vendor, {}).body["data"]["total_viewer_seconds"])
    assert any(b < a for a, b in pairwise(rolling))  # what a rolling window does
    for (viewers, ingest), (viewers_after, ingest_after) in pairwise(exported):
        assert viewers_after >= viewers and ingest_after >= ingest
    assert exported[-1][0] > exported[0][0]
    (app,) = world.requests_to("/analytics/livestreams/overall?")[-1:]
    assert app.query == {
        "start_time": "1970-01-01T00:00:00.000Z",
        "end_time": iso_z(START + 149 * 60, millis=True),
    }


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "kind"),
    [
        ("error200", None, "upstream"),
        ("5xx", None, "upstream"),
        ("html", 200, "parse"),
        ("truncated", None, "parse"),
    ],
)
async def test_failure_keeps_old_values(
    world: SimWorld, rigs: Rigs, fault: str, code: int | None, kind: str
) -> None:
    """`success:false` on HTTP 200 is a failure like a 5xx: up=0, the last values kept."""
    pin_all(world, {RISING: 100, FALLING: 40})
    served = await rigs.make([cf_source(world, [RISING, FALLING])])
    world.at(30)
    await served.cycle()  # three requests 5 s apart: the app level at 30 s, RISING at 35 s, FALLING at 40 s
    before = await served.metrics()
    assert v(before, "livestream_viewer_seconds_total", RISING) == 100 * sent_at(world, RISING)[-1]
    world.sim.inject("cloudflare", fault, count=1, stream=RISING, code=code)
    world.at(45)
    await served.cycle()
    s = await served.metrics()
    assert v(s, "livestream_target_up", RISING) == 0
    assert served.target(SOURCE, RISING).error == kind
    for name in (
        "livestream_viewer_seconds_total",
        "livestream_live",
        "livestream_started_timestamp_seconds",
    ):
        assert v(s, name, RISING) == v(before, name, RISING)
    assert v(s, "livestream_target_up", FALLING) == 1
    falling = sent_at(world, FALLING)[-1]
    assert falling == 45 + slots(3)[2]  # this cycle's poll
    assert v(s, "livestream_viewer_seconds_total", FALLING) == 40 * falling  # moved on
    assert value(s, "livestream_exporter_throttled_total", **LABELS) == 0


async def test_throttled_answers_count_and_honour_retry_after(world: SimWorld, rigs: Rigs) -> None:
    """429 with Retry-After: counted as throttled, and nothing goes out before it has passed."""
    world.sim.retry_after_seconds = 40.0
    served = await rigs.make([cf_source(world, [RISING, FALLING, DROP])])
    await served.cycle()
    world.clock.advance(15)
    world.sim.inject("cloudflare", "429", count=1, stream=RISING)
    await served.cycle()
    (t_429,) = [r["time"] for r in cf_requests(world) if r["status"] == 429]  # RISING, after the app level
    s = await served.metrics()
    assert v(s, "livestream_target_up", RISING) == 0
    assert served.target(SOURCE, RISING).error == "throttled"
    assert value(s, "livestream_exporter_throttled_total", **LABELS) == 1
    after = [r for r in cf_requests(world) if r["time"] > t_429]
    assert after and min(r["time"] for r in after) >= t_429 + 40
    assert v(s, "livestream_target_up", FALLING) == 1 and v(s, "livestream_target_up", DROP) == 1

    # throttling answered with HTTP 200 (`success:false`, error 971) is throttling too
    world.clock.advance(60)
    world.sim.inject("cloudflare", "throttle200", count=1, stream=FALLING)
    await served.cycle()
    s = await served.metrics()
    assert served.target(SOURCE, FALLING).error == "throttled"
    assert value(s, "livestream_exporter_throttled_total", **LABELS) == 2


async def test_rate_limit_remaining_zero_pauses_the_source(world: SimWorld, rigs: Rigs) -> None:
    """When X-RateLimit-Remaining says 0, the next request waits the shortest window (10 s)."""
    world.sim.limits["cloudflare"] = {"*": [(4, 10.0)]}  # the 4th request in 10 s answers Remaining: 0
    ids = [RISING, FALLING, DROP, ENDS, ENDED]
    served = await rigs.make([cf_source(world, ids)])
    t0 = world.clock.monotonic()
    await served.cycle()  # six requests due 2.5 s apart: the app level at 0 s, then the five livestreams
    times = [r["time"] - t0 for r in cf_requests(world)]
    assert times[:4] == slots(1 + len(ids))[:4]
    assert times[4] >= times[3] + 10  # paused after the answer that said Remaining: 0
    assert all(r["status"] == 200 for r in cf_requests(world))
    s = await served.metrics()
    # the cycle's schedule moved past the pause, so the limiter itself had nothing to hold
    assert value(s, "livestream_exporter_rate_limit_waits_total", **LABELS) == 0
    assert all(v(s, "livestream_target_up", k) == 1 for k in ids)


async def test_both_rate_limits_hold_with_many_livestreams(world: SimWorld, rigs: Rigs) -> None:
    """270 livestreams, one per list page: each discovery alone is more than 250 requests, and
    several cycles are more than 1200 in 5 minutes; the simulator never sees more than either."""
    extra = [f"ls-{i:03d}" for i in range(270)]
    for key in extra:
        world.sim.start_stream("cloudflare", key, viewers=5)
    world.sim.set_quirk("cf_list_form", "object")
    served = await rigs.make([cf_source(world, [], discover=True)])
    runner = served.rig.runner
    start = world.clock.monotonic()
    while world.clock.monotonic() - start < 700:
        cycle_start = world.clock.monotonic()
        await runner.run_cycle()
        world.clock.advance(cycle_start + runner.interval - world.clock.monotonic())
    log = cf_requests(world)
    assert len(log) > 2 * 1200
    assert world.sim.max_in_window("cloudflare", 10) == 250  # a discovery fills the 10 s window
    assert world.sim.max_in_window("cloudflare", 300) <= 1200
    assert all(r["status"] == 200 for r in log)
    s = await served.metrics()
    assert all(v(s, "livestream_target_up", k) == 1 for k in extra)
    assert runner.interval >= (275 + 275 + 1) * 300 / 1200


# -- answers the simulator does not give --------------------------------------------------------


async def test_errored_status_and_old_error_envelope(
    canned: tuple[Canned, str], rigs: Rigs, world: SimWorld
) -> None:
    vendor, base = canned
    served: Served = await rigs.make([cf_source(world, ["ls-x"], base_url=base)])
    vendor.answer(
        {"success": True, "data": {"count": "3", "total_viewer_seconds": "10", "total_ingest_seconds": 2}}
    )
    vendor.answer(
        {
            "success": True,
            "data": {
                "livestream": {"id": "ls-x", "name": "x", "status": "ERRORED", "disabled": "true"},
                "session": {"viewer_seconds": "7", "ingest_seconds": "3", "started_time": None},
            },
        }
    )
    await served.cycle()
    s = await served.metrics()
    assert_status(s, "ls-x", "ERRORED")
    assert v(s, "livestream_viewer_seconds_total", "ls-x") == 7
    assert value(s, "livestream_app_livestreams", **LABELS) == 3
    path = vendor.seen[1].raw_path
    assert path.endswith("/livestreams/ls-x/active-livestream-session")
    assert vendor.seen[0].headers["Authorization"] == f"Bearer {DEMO_CF_TOKEN}"

    world.clock.advance(60)
    vendor.answer({"success": False, "error": {"code": 971, "message": "Please wait"}})
    vendor.answer({"success": False, "error": {"code": 1000, "message": "boom"}})
    await served.cycle()
    s = await served.metrics()
    assert served.target(SOURCE, "ls-x").error == "upstream"
    assert value(s, "livestream_exporter_throttled_total", **LABELS) == 1  # the app-level 971
    assert v(s, "livestream_viewer_seconds_total", "ls-x") == 7


@pytest.mark.parametrize("missing", ["count", "total_viewer_seconds", "total_ingest_seconds"])
async def test_app_answer_missing_a_field_is_a_parse_error(
    canned: tuple[Canned, str], rigs: Rigs, world: SimWorld, logs: list[str], missing: str
) -> None:
    """A field missing from the analytics overall answer is not read as 0 (a counter at 0 reads
    as a reset): it fails the app-level poll (parse) and the app series keep their last values,
    while the livestreams are still polled."""
    vendor, base = canned
    served: Served = await rigs.make([cf_source(world, ["ls-x"], base_url=base)])
    app = {"count": 3, "total_viewer_seconds": 10, "total_ingest_seconds": 2}
    livestream = {
        "success": True,
        "data": {
            "livestream": {"id": "ls-x", "name": "x", "status": "LIVE"},
            "session": {"viewer_seconds": 7, "ingest_seconds": 3, "started_time": None},
        },
    }
    vendor.answer({"success": True, "data": app})
    vendor.answer(livestream)
    await served.cycle()
    before = await served.metrics()
    app_series = {
        name: value(before, name, **LABELS)
        for name in (
            "livestream_app_livestreams",
            "livestream_app_viewer_seconds_total",
            "livestream_app_ingest_seconds_total",
        )
    }
    assert app_series == {
        "livestream_app_livestreams": 3,
        "livestream_app_viewer_seconds_total": 10,
        "livestream_app_ingest_seconds_total": 2,
    }

    world.clock.advance(INTERVAL)
    later = {"count": 4, "total_viewer_seconds": 20, "total_ingest_seconds": 5}
    del later[missing]
    vendor.answer({"success": True, "data": later})
    vendor.answer(livestream)
    await served.cycle()
    s = await served.metrics()
    assert len(vendor.seen) == 4  # the livestream was polled after the failed app-level poll
    assert {name: value(s, name, **LABELS) for name in app_series} == app_series
    assert v(s, "livestream_target_up", "ls-x") == 1
    assert any("app-level poll failed" in line and "error=parse" in line for line in logs), logs
