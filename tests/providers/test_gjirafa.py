"""The gjirafa provider: its requests, how it reads the envelope and dates, its failures.

Unit tests send one request each to a tiny loopback vendor (`Canned`) and read /metrics
as the collector renders it; the end-to-end tests poll the simulator over real HTTP with
runners and simulator on one FakeClock, and read /metrics from the real web app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.config.loader import load_config
from exporter.config.problems import ConfigError
from exporter.simulator.gjirafa import DEMO_KEY as DEMO_GJIRAFA_KEY
from tests.conftest import sim_sources
from tests.pollhelpers import Samples, parse, series_of, value
from tests.simrig import START, Rigs, Served, SimWorld, poll

CANNED_PREFIX = "vp"
UNIT_SOURCE = {
    "name": "gj",
    "provider": "gjirafa",
    "credentials": {"api_key": "k"},
    "targets": [{"project_id": "p1", "media": "audio", "interval_length": 5}],
}
PATH = "/api/v1/projects/p1/dashboard/audioLiveConsumption"
VALUE_METRICS = (
    "livestream_concurrent_viewers",
    "livestream_peak_concurrent_viewers",
    "livestream_unique_viewers",
    "livestream_data_timestamp_seconds",
)


def gj(stream: str, source: str = "gj") -> dict[str, str]:
    return {"provider": "gjirafa", "source": source, "stream": stream}


def envelope(intervals: list[dict[str, Any]], total: Any, **over: Any) -> dict[str, Any]:
    return {
        "success": True,
        "errors": [],
        "messages": ["Request completed successfully."],
        "result": {"liveViewers": intervals, "total": total},
        "resultInfo": None,
        "statusCode": 200,
        **over,
    }


GOOD = envelope(
    [
        {"uniqueViewers": 40, "date": "2025-10-29T12:00:00Z"},
        {"uniqueViewers": 75, "date": "2025-10-29T12:05:00"},
        {"uniqueViewers": 60, "date": "2025-10-29T12:10:00.000Z"},
    ],
    180,
)


# -- unit: one request to a tiny vendor -----------------------------------------------------


async def test_default_auth_is_authorization_bearer(canned, unit):
    vendor, _ = canned
    vendor.answer(GOOD)
    await poll(unit())
    (req,) = vendor.seen
    assert req.method == "GET"
    assert req.raw_path == f"/vp{PATH}?intervalLength=5"
    assert req.headers["Authorization"] == "Bearer k"


@pytest.mark.parametrize(
    ("header", "scheme", "sent"),
    [("X-Api-Key", "", "k"), ("X-Api-Key", "ApiKey", "ApiKey k"), ("Authorization", "", "k")],
)
async def test_auth_header_and_scheme_are_configurable(canned, unit, header, scheme, sent):
    vendor, _ = canned
    vendor.answer(GOOD)
    samples = await poll(unit(auth_header=header, auth_scheme=scheme))
    (req,) = vendor.seen
    assert req.headers[header] == sent, "an empty scheme sends the key alone"
    if header != "Authorization":
        assert "Authorization" not in req.headers
    assert value(samples, "livestream_target_up", **gj("p1/audio")) == 1


def test_base_url_is_required(write_config):
    source = {
        "name": "gj",
        "provider": "gjirafa",
        "credentials": {"api_key": "k"},
        "targets": [{"project_id": "p1"}],
    }
    with pytest.raises(ConfigError) as e:
        load_config(write_config([source]))
    assert [p for p, _ in e.value.problems] == ["sources[0] (gj).base_url"]
    assert "missing required key" in str(e.value)


async def test_values_of_one_answer(canned, unit):
    """Latest interval by date, peak = max, unique = result.total; both date forms read as UTC."""
    vendor, _ = canned
    vendor.answer(GOOD)
    samples = await poll(unit())
    labels = gj("p1/audio")
    assert value(samples, "livestream_concurrent_viewers", **labels) == 60
    assert value(samples, "livestream_peak_concurrent_viewers", **labels) == 75
    assert value(samples, "livestream_unique_viewers", **labels) == 180
    assert value(samples, "livestream_data_timestamp_seconds", **labels) == 1761739800.0
    assert value(samples, "livestream_target_up", **labels) == 1
    assert value(samples, "livestream_target_last_success_timestamp_seconds", **labels) == START
    assert value(samples, "livestream_exporter_skipped_points_total", provider="gjirafa", source="gj") == 0


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local zone far from UTC, so reading a zoneless date as local time would show."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("date", "when"),
    [
        ("2025-10-29T12:05:38.367Z", 1761739538.367),
        ("2024-08-16T11:49:15", 1723808955.0),  # no zone: UTC
        ("2024-08-16T11:49:15.000", 1723808955.0),
        ("2024-08-16T13:49:15+02:00", 1723808955.0),
        ("2024-08-16T11:49:15z", 1723808955.0),
    ],
)
async def test_dates_with_and_without_a_zone(canned, unit, far_from_utc, date, when):
    vendor, _ = canned
    vendor.answer(envelope([{"uniqueViewers": 7, "date": date}], 7))
    samples = await poll(unit())
    assert value(samples, "livestream_data_timestamp_seconds", **gj("p1/audio")) == pytest.approx(when)
    assert value(samples, "livestream_concurrent_viewers", **gj("p1/audio")) == 7


async def test_latest_interval_is_chosen_by_date_not_position(canned, unit):
    vendor, _ = canned
    vendor.answer(
        envelope(
            [
                {"uniqueViewers": 7, "date": "2025-10-29T12:10:00Z"},  # the latest, listed first
                {"uniqueViewers": 50, "date": "2025-10-29T12:00:00"},
                {"uniqueViewers": 9, "date": "2025-10-29T14:05:00+02:00"},  # 12:05 UTC
            ],
            66,
        )
    )
    samples = await poll(unit())
    labels = gj("p1/audio")
    assert value(samples, "livestream_concurrent_viewers", **labels) == 7
    assert value(samples, "livestream_data_timestamp_seconds", **labels) == 1761739800.0
    assert value(samples, "livestream_peak_concurrent_viewers", **labels) == 50
    assert value(samples, "livestream_unique_viewers", **labels) == 66


async def test_numeric_strings_are_accepted(canned, unit):
    vendor, _ = canned
    vendor.answer(
        envelope(
            [
                {"uniqueViewers": "12", "date": "2025-10-29T12:00:00Z"},
                {"uniqueViewers": " 34 ", "date": "2025-10-29T12:05:00Z"},
            ],
            "1234",
        )
    )
    samples = await poll(unit())
    labels = gj("p1/audio")
    assert value(samples, "livestream_concurrent_viewers", **labels) == 34
    assert value(samples, "livestream_peak_concurrent_viewers", **labels) == 34
    assert value(samples, "livestream_unique_viewers", **labels) == 1234


async def test_malformed_dates_are_skipped_and_counted(canned, unit):
    vendor, _ = canned
    bad = envelope(
        [
            {"uniqueViewers": 5, "date": "2025-10-29T12:00:00Z"},
            {"uniqueViewers": 999, "date": "2025-10-29T12:0:00Z"},  # malformed, and the largest
            {"uniqueViewers": 8, "date": None},
            {"uniqueViewers": 6, "date": "2025-10-29T12:05:00"},
        ],
        20,
    )
    vendor.answer(bad)
    vendor.answer(bad)
    rig = unit()
    samples = await poll(rig)
    labels = gj("p1/audio")
    assert value(samples, "livestream_target_up", **labels) == 1, "never fatal"
    assert value(samples, "livestream_concurrent_viewers", **labels) == 6
    assert value(samples, "livestream_peak_concurrent_viewers", **labels) == 6, "skipped points are not used"
    assert value(samples, "livestream_data_timestamp_seconds", **labels) == 1761739500.0
    assert value(samples, "livestream_exporter_skipped_points_total", provider="gjirafa", source="gj") == 2
    rig.clock.advance(60)
    samples = await poll(rig)
    assert value(samples, "livestream_exporter_skipped_points_total", provider="gjirafa", source="gj") == 4


async def test_audio_and_video_endpoints(canned, unit):
    vendor, _ = canned
    vendor.answer(envelope([{"uniqueViewers": 3, "date": "2025-10-29T12:00:00Z"}], 3))
    vendor.answer(envelope([{"uniqueViewers": 4, "date": "2025-10-29T12:00:00Z"}], 4))
    targets = [
        {"project_id": "p1", "interval_length": 15},  # media defaults to audio
        {"project_id": "p 2/x", "media": "video", "interval_length": 1},
    ]
    samples = await poll(unit(targets=targets, interval="2s"))
    assert [s.raw_path for s in vendor.seen] == [
        "/vp/api/v1/projects/p1/dashboard/audioLiveConsumption?intervalLength=15",
        "/vp/api/v1/projects/p%202%2Fx/dashboard/videoLiveConsumption?intervalLength=1",
    ]
    assert value(samples, "livestream_concurrent_viewers", **gj("p1/audio")) == 3
    assert value(samples, "livestream_concurrent_viewers", **gj("p 2/x/video")) == 4
    assert (
        value(
            samples,
            "livestream_exporter_api_requests_total",
            provider="gjirafa",
            source="gj",
            endpoint="videoLiveConsumption",
            code="200",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        ({"success": False}, "upstream"),
        ({"errors": ["Project quota exceeded."]}, "upstream"),
        ({"success": True, "errors": ["partial failure"]}, "upstream"),
        ({"success": False, "errors": ["Too many requests."], "statusCode": 429}, "throttled"),
        ({"success": False, "errors": ["Unauthorized"], "statusCode": 401}, "auth"),
    ],
)
async def test_success_false_or_errors_on_http_200_is_a_failure(canned, unit, failure, kind):
    vendor, _ = canned
    vendor.answer(GOOD)
    rig = unit()
    before = await poll(rig)
    labels = gj("p1/audio")
    # the failing answer even carries data: it must not be used
    vendor.answer({**envelope([{"uniqueViewers": 0, "date": "2025-10-29T13:00:00Z"}], 0), **failure})
    rig.clock.advance(60)
    after = await poll(rig)
    assert value(after, "livestream_target_up", **labels) == 0
    for name in VALUE_METRICS:
        assert value(after, name, **labels) == value(before, name, **labels), name
    assert value(after, "livestream_concurrent_viewers", **labels) == 60, "old values kept, never 0"
    assert rig.store.sources["gj"].targets["p1/audio"].error == kind


# -- end to end through the simulator ---------------------------------------------------------


def sim_source(world: SimWorld, name: str, *targets: tuple[str, int], **over: Any) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for key, minutes in targets:
        project, media = key.split("/")
        out.append({"project_id": project, "media": media, "interval_length": minutes})
    return {
        "name": name,
        "provider": "gjirafa",
        "base_url": world.base_url("gjirafa"),
        "credentials": {"api_key": DEMO_GJIRAFA_KEY},
        "interval": "1m",
        "targets": out,
        **over,
    }


async def two_sources(world: SimWorld, rigs: Rigs, **global_: Any) -> Served:
    """gj (vp-news/audio, vp-news/video; 5-minute intervals) and gj-other (vp-sport/video; 1 minute),
    viewers pinned at the simulator's start: 500, 40 and 77."""
    sim = world.sim
    sim.set_viewers("gjirafa", "vp-news/audio", 500)
    sim.set_viewers("gjirafa", "vp-news/video", 40)
    sim.set_viewers("gjirafa", "vp-sport/video", 77)
    return await rigs.make(
        [
            sim_source(world, "gj", ("vp-news/audio", 5), ("vp-news/video", 5)),
            sim_source(world, "gj-other", ("vp-sport/video", 1)),
        ],
        **global_,
    )


def expect(samples: Samples, labels: dict[str, str], current: float, peak: float, unique: float, ts: float):
    got = {m: value(samples, m, **labels) for m in (*VALUE_METRICS, "livestream_target_up")}
    assert got == {
        "livestream_concurrent_viewers": current,
        "livestream_peak_concurrent_viewers": peak,
        "livestream_unique_viewers": unique,
        "livestream_data_timestamp_seconds": ts,
        "livestream_target_up": 1.0,
    }, labels["stream"]


async def test_e2e_exact_values_on_metrics(world, rigs):
    """The simulator's intervals: before its start 0, then the pinned values; the current
    (partial) interval carries the live value; total = max + sum // 20. Dates of even
    intervals carry a zone (`...000Z`), odd ones none: both give the right timestamp."""
    s = await two_sources(world, rigs)
    world.at(310)
    world.sim.set_viewers("gjirafa", "vp-news/audio", 300)
    await s.cycle()  # gj polls at +310 and +340 (spread over 1 min), gj-other at +340
    m = await s.metrics()
    # 24 five-minute intervals up to [START+300, now): ..., 0, 500, 300
    expect(m, gj("vp-news/audio"), 300, 500, 500 + 800 // 20, START + 300)
    expect(m, gj("vp-news/video"), 40, 40, 40 + 80 // 20, START + 300)
    # 24 one-minute intervals up to [START+300, now): six of them since the start, 77 each
    expect(m, gj("vp-sport/video", "gj-other"), 77, 77, 77 + 6 * 77 // 20, START + 300)
    assert value(m, "livestream_target_last_success_timestamp_seconds", **gj("vp-news/audio")) == START + 310
    assert value(m, "livestream_target_last_success_timestamp_seconds", **gj("vp-news/video")) == START + 340

    world.at(610)  # the next interval's date has no zone
    await s.cycle()
    m = await s.metrics()
    expect(m, gj("vp-news/audio"), 300, 500, 500 + 1100 // 20, START + 600)
    expect(m, gj("vp-news/video"), 40, 40, 40 + 120 // 20, START + 600)
    expect(m, gj("vp-sport/video", "gj-other"), 77, 77, 77 + 11 * 77 // 20, START + 600)
    assert (
        value(
            m,
            "livestream_exporter_api_requests_total",
            provider="gjirafa",
            source="gj",
            endpoint="audioLiveConsumption",
            code="200",
        )
        == 2
    )
    assert value(m, "livestream_exporter_poll_interval_seconds", provider="gjirafa", source="gj") == 60
    assert world.sim.max_in_window("gjirafa", 60) <= 60, "60/minute unless configured"
    assert all(r["status"] == 200 for r in world.sim.request_log("gjirafa"))


@pytest.mark.parametrize(
    ("fault", "code", "kind"),
    [
        ("5xx", 503, "upstream"),
        ("5xx", 500, "upstream"),
        ("html", 502, "upstream"),  # an HTML error page from a proxy
        ("html", 200, "parse"),  # HTML instead of JSON with HTTP 200
        ("truncated", None, "parse"),
        ("error200", None, "upstream"),  # success:false on HTTP 200
        ("throttle200", None, "throttled"),  # success:false, statusCode 429 on HTTP 200
        ("429", None, "throttled"),
        ("auth", None, "auth"),
        ("timeout", None, "timeout"),
    ],
)
async def test_e2e_failure_keeps_old_values_and_spares_the_others(world, rigs, fault, code, kind):
    s = await two_sources(world, rigs, timeout="300ms")
    world.at(10)
    await s.cycle()
    before = await s.metrics()
    news = gj("vp-news/audio")
    assert value(before, "livestream_concurrent_viewers", **news) == 500
    last_ok = value(before, "livestream_target_last_success_timestamp_seconds", **news)

    world.sim.inject("gjirafa", fault, stream="vp-news/audio", code=code)
    for key in ("vp-news/audio", "vp-news/video", "vp-sport/video"):
        world.sim.set_viewers("gjirafa", key, 0)  # would show if the failure became an answer
    world.sim.set_viewers("gjirafa", "vp-news/video", 41)
    world.sim.set_viewers("gjirafa", "vp-sport/video", 78)
    world.at(70)
    await s.cycle()
    after = await s.metrics()
    assert value(after, "livestream_target_up", **news) == 0
    for name in VALUE_METRICS:
        assert value(after, name, **news) == value(before, name, **news), name
    assert value(after, "livestream_target_last_success_timestamp_seconds", **news) == last_ok
    assert s.target("gj", "vp-news/audio").error == kind
    # the same source's other target and the other source are unaffected
    assert value(after, "livestream_target_up", **gj("vp-news/video")) == 1
    assert value(after, "livestream_concurrent_viewers", **gj("vp-news/video")) == 41
    assert value(after, "livestream_target_up", **gj("vp-sport/video", "gj-other")) == 1
    assert value(after, "livestream_concurrent_viewers", **gj("vp-sport/video", "gj-other")) == 78
    throttled = value(after, "livestream_exporter_throttled_total", provider="gjirafa", source="gj")
    assert throttled == (1 if kind == "throttled" else 0)

    # recovery
    world.sim.set_viewers("gjirafa", "vp-news/audio", 123)
    world.at(200)
    await s.cycle()
    m = await s.metrics()
    assert value(m, "livestream_target_up", **news) == 1
    assert value(m, "livestream_concurrent_viewers", **news) == 123


async def test_e2e_401_is_an_auth_error(world, rigs):
    s = await rigs.make(
        [
            sim_source(world, "gj", ("vp-news/audio", 5), credentials={"api_key": "not-the-key"}),
            sim_source(world, "gj-other", ("vp-news/video", 5)),
        ]
    )
    await s.cycle()
    m = await s.metrics()
    assert value(m, "livestream_target_up", **gj("vp-news/audio")) == 0
    assert s.target("gj", "vp-news/audio").error == "auth"
    assert [n for n in series_of(m, stream="vp-news/audio") if n.startswith(VALUE_METRICS)] == []
    labels = {"provider": "gjirafa", "source": "gj", "endpoint": "audioLiveConsumption"}
    assert value(m, "livestream_exporter_api_requests_total", **labels, code="401") == 1
    assert value(m, "livestream_target_up", **gj("vp-news/video", "gj-other")) == 1
    text = await (await s.client.get("/metrics")).text()
    assert "not-the-key" not in text


async def test_e2e_404_project_removes_its_series(world, rigs):
    s = await two_sources(world, rigs)
    world.at(10)
    await s.cycle()
    assert "livestream_concurrent_viewers" in series_of(await s.metrics(), stream="vp-news/audio")

    world.sim.remove_stream("gjirafa", "vp-news/audio")
    world.at(70)
    await s.cycle()
    m = await s.metrics()
    assert series_of(m, stream="vp-news/audio") == [], "a gone project's series are removed, not zeroed"
    assert s.target("gj", "vp-news/audio").error == "gone"
    assert value(m, "livestream_concurrent_viewers", **gj("vp-news/video")) == 40
    assert value(m, "livestream_concurrent_viewers", **gj("vp-sport/video", "gj-other")) == 77


async def test_daemon_polls_the_simulator(simulator, write_config, running):
    """The real exporter (scheduler, /metrics) against the real-time simulator."""
    sim, root = simulator
    (source,) = sim_sources(root, "gjirafa", interval="200ms")
    source["targets"] = source["targets"][:2]  # vp-news/audio (1-minute intervals), vp-news/video
    sim.set_viewers("gjirafa", "vp-news/audio", 321)
    sim.set_viewers("gjirafa", "vp-news/video", 654)
    _, client = await running(write_config([source]))
    labels = {"provider": "gjirafa", "source": "demo-gjirafa"}

    async def scrape() -> Samples:
        return parse(await (await client.get("/metrics")).text())

    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        m = await scrape()
        if all(
            value(m, "livestream_target_up", **labels, stream=k) == 1
            for k in ("vp-news/audio", "vp-news/video")
        ):
            break
        assert asyncio.get_running_loop().time() < deadline, "the two targets were not polled"
        await asyncio.sleep(0.05)
    m = await scrape()
    assert value(m, "livestream_concurrent_viewers", **labels, stream="vp-news/audio") == 321
    assert value(m, "livestream_concurrent_viewers", **labels, stream="vp-news/video") == 654
    # two targets at 60/minute: the 200 ms interval is lengthened to 2 s
    assert value(m, "livestream_exporter_poll_interval_seconds", **labels) == 2.0
    assert sim.max_in_window("gjirafa", 60) <= 60
