"""The swiftfederation provider: signed requests, filters, points, errors, limits and discovery.

Unit tests send one request each to a tiny loopback vendor (`Canned`) that records the
request as sent; the end-to-end tests poll the simulator (which verifies Signature V2 and
enforces 100/minute and 1000/hour) with runners and simulator on one FakeClock, and read
/metrics from the real web app.  The published signing test vector is in test_signing.py.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from exporter.providers.signing import sfd_signature
from exporter.simulator.swiftfederation import DEMO_KEY_ID as DEMO_SFD_KEY_ID
from exporter.simulator.swiftfederation import DEMO_SECRET as DEMO_SFD_SECRET
from tests.conftest import sim_sources
from tests.pollhelpers import Samples, parse, series_of, value
from tests.simrig import START, Rigs, Seen, Served, SimWorld, poll

QUERY = "/lls/v1.0/analytics/delivery/queryConcurrentViewers"
LIST = "/lls/v1.0/stream"
KEY_ID, SECRET = "O80ybSq26xUE383u", "q738531SV3s0yFC2I3p7QJ49og37yIat"
DOMAIN = "live.example.com"
MAIN, BACKUP, CONCERT, WEBINAR, LATE = (
    f"{DOMAIN}/demoapp/{s}" for s in ("main", "backup", "concert", "webinar", "late-show")
)
VALUE_METRICS = (
    "livestream_concurrent_viewers",
    "livestream_peak_concurrent_viewers",
    "livestream_data_timestamp_seconds",
)
#: the vendor's own example answer: its last point's timestamp is malformed
VENDOR_EXAMPLE = {
    "domain": DOMAIN,
    "app": "demoapp",
    "started": "20250518T173000Z",
    "ended": "20250518T180000Z",
    "data": [
        {"timestamp": "20250518T173000Z", "concurrentViewers": 1283},
        {"timestamp": "20250518T173500Z", "concurrentViewers": 1354},
        {"timestamp": "20250518T174000Z", "concurrentViewers": 1823},
        {"timestamp": "20250518T174500Z", "concurrentViewers": 2034},
        {"timestamp": "20250518T175000Z", "concurrentViewers": 2568},
        {"timestamp": "20250518T175500Z", "concurrentViewers": 2873},
        {"timestamp": "20250518T18000Z", "concurrentViewers": 3276},
    ],
}
T_1755 = 1747590900.0  # 20250518T175500Z


def sfd(stream: str, source: str = "sfd") -> dict[str, str]:
    return {"provider": "swiftfederation", "source": source, "stream": stream}


def src_labels(source: str = "sfd") -> dict[str, str]:
    return {"provider": "swiftfederation", "source": source}


def target(key: str, **extra: str) -> dict[str, str]:
    domain, app, stream = key.split("/")
    return {"domain": domain, "app": app, "stream": stream, **extra}


CANNED_PREFIX = "sfd"
UNIT_SOURCE = {
    "name": "sfd",
    "provider": "swiftfederation",
    "credentials": {"access_key_id": KEY_ID, "access_key_secret": SECRET},
    "targets": [target(MAIN, region="SG", protocol="http-flv")],
}


def assert_signed(req: Seen, key_id: str, secret: str) -> None:
    """The request's Authorization carries a Signature V2 over exactly what was sent."""
    scheme, _, cred = req.headers["Authorization"].partition(" ")
    assert scheme == "HMAC-SHA256"
    got_id, _, signature = cred.partition(":")
    assert got_id == key_id
    assert re.fullmatch(r"[0-9a-f]{64}", signature)
    expected = sfd_signature(
        method=req.method,
        uri=req.raw_path,
        headers=req.headers,
        access_key_id=key_id,
        access_key_secret=secret,
    )
    assert signature == expected


# -- unit: one request to a tiny vendor -----------------------------------------------------


@pytest.mark.parametrize("fzone", [None, "SG"])
async def test_request_carries_a_signature_that_verifies(canned, unit, fzone):
    vendor, base = canned
    vendor.answer(VENDOR_EXAMPLE)
    await poll(unit(fzone=fzone) if fzone else unit())
    (req,) = vendor.seen
    assert req.raw_path == (
        f"/sfd{QUERY}?domain=live.example.com&app=demoapp&stream=main&region=SG&protocol=http-flv"
    )
    assert req.headers["Host"] == base.split("/")[2]
    assert req.headers["X-SFD-Date"] == "20231114T221500Z"  # the FakeClock's START in UTC
    assert re.fullmatch(r"\d{5}", req.headers["X-SFD-Nonce"])
    assert req.headers["X-SFD-Signature-Version"] == "2"
    if fzone:
        assert req.headers["X-SFD-FZone"] == "SG"
    else:
        assert "X-SFD-FZone" not in req.headers
    assert_signed(req, KEY_ID, SECRET)
    # the signature covers the query string and the fzone header
    unsigned = {k: v for k, v in req.headers.items() if k != "X-SFD-FZone"}
    _, _, signature = req.headers["Authorization"].partition(":")
    assert signature != sfd_signature(
        method="GET",
        uri=req.raw_path.partition("?")[0],
        headers=req.headers,
        access_key_id=KEY_ID,
        access_key_secret=SECRET,
    )
    if fzone:
        assert signature != sfd_signature(
            method="GET", uri=req.raw_path, headers=unsigned, access_key_id=KEY_ID, access_key_secret=SECRET
        )


async def test_only_the_configured_filters_are_sent(canned, unit):
    vendor, _ = canned
    vendor.answer(VENDOR_EXAMPLE)
    vendor.answer(VENDOR_EXAMPLE)
    targets = [{"domain": DOMAIN}, {"domain": DOMAIN, "app": "demoapp", "protocol": "ll-hls", "region": "us"}]
    samples = await poll(unit(targets=targets, interval="2s"))
    assert [r.raw_path for r in vendor.seen] == [
        f"/sfd{QUERY}?domain=live.example.com",
        f"/sfd{QUERY}?domain=live.example.com&app=demoapp&region=us&protocol=ll-hls",
    ]
    for r in vendor.seen:
        assert_signed(r, KEY_ID, SECRET)
    # default stream label: domain/app/stream, absent parts left out
    assert value(samples, "livestream_concurrent_viewers", **sfd(DOMAIN)) == 2873
    assert value(samples, "livestream_concurrent_viewers", **sfd(f"{DOMAIN}/demoapp")) == 2873


async def test_vendor_example_latest_valid_point_and_the_malformed_one_skipped(canned, unit):
    vendor, _ = canned
    vendor.answer(VENDOR_EXAMPLE)
    vendor.answer(VENDOR_EXAMPLE)
    rig = unit()
    samples = await poll(rig)
    labels = sfd(MAIN)
    assert value(samples, "livestream_target_up", **labels) == 1, "a malformed point is never fatal"
    assert value(samples, "livestream_concurrent_viewers", **labels) == 2873
    assert value(samples, "livestream_peak_concurrent_viewers", **labels) == 2873, "3276 was skipped"
    assert value(samples, "livestream_data_timestamp_seconds", **labels) == T_1755
    assert value(samples, "livestream_unique_viewers", **labels) is None
    assert value(samples, "livestream_exporter_skipped_points_total", **src_labels()) == 1
    rig.clock.advance(60)
    samples = await poll(rig)
    assert value(samples, "livestream_exporter_skipped_points_total", **src_labels()) == 2


async def test_latest_by_time_numeric_strings_and_every_kind_of_bad_point(canned, unit):
    vendor, _ = canned
    vendor.answer(
        {
            "domain": DOMAIN,
            "data": [
                {"timestamp": "20250518T175500Z", "concurrentViewers": "2873"},  # latest, listed first
                {"timestamp": "20250518T173000Z", "concurrentViewers": 1283},
                {"timestamp": "20250518T174000Z", "concurrentViewers": "3000"},
                {"timestamp": "20250518T18000Z", "concurrentViewers": 9001},
                {"timestamp": "2025-05-18T18:00:00Z", "concurrentViewers": 9002},
                {"timestamp": "20251318T180000Z", "concurrentViewers": 9003},  # month 13
                {"timestamp": "", "concurrentViewers": 9004},
                {"timestamp": None, "concurrentViewers": 9005},
                {"concurrentViewers": 9006},
                {"timestamp": "20250518T180500Z", "concurrentViewers": "many"},
                {"timestamp": "20250518T181000Z"},
                "20250518T181500Z",
            ],
        }
    )
    samples = await poll(unit())
    labels = sfd(MAIN)
    assert value(samples, "livestream_target_up", **labels) == 1
    assert value(samples, "livestream_concurrent_viewers", **labels) == 2873
    assert value(samples, "livestream_peak_concurrent_viewers", **labels) == 3000
    assert value(samples, "livestream_data_timestamp_seconds", **labels) == T_1755
    assert value(samples, "livestream_exporter_skipped_points_total", **src_labels()) == 9


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            {"code": "LLS.Analytics.InvalidTimestamp", "message": "Timestamp is empty or invalid."},
            "upstream",
        ),
        (401, {"code": "Signature.NotMatch", "message": "The signature does not match."}, "auth"),
        (401, {"code": "AccessCredential.Invalid", "message": "x"}, "auth"),
        (403, {"code": "Permission.Forbidden", "message": "x"}, "auth"),
        (404, {"code": "Resource.NotFound", "message": "x"}, "gone"),
        (429, {"code": "RequestLimit.Exceeded", "message": "x"}, "throttled"),
        (503, {"code": "InternalError", "message": "x"}, "upstream"),
        (200, {"code": "RequestLimit.Exceeded", "message": "x"}, "throttled"),
        (200, {"code": "InternalError", "message": "x"}, "upstream"),
        (200, {"domain": DOMAIN}, "parse"),
        (200, "<html><body>502 Bad Gateway</body></html>", "parse"),
    ],
)
async def test_vendor_errors(canned, unit, status, body, kind):
    vendor, _ = canned
    vendor.answer(VENDOR_EXAMPLE)
    vendor.answer(body, status)
    rig = unit()
    before = await poll(rig)
    rig.clock.advance(60)
    after = await poll(rig)
    labels = sfd(MAIN)
    error = rig.store.sources["sfd"].targets[MAIN + "/SG/http-flv"]
    assert error.error == kind
    assert SECRET not in (error.error_message or "")
    if kind == "gone":
        assert series_of(after, stream=MAIN) == []
        return
    assert value(after, "livestream_target_up", **labels) == 0
    for name in VALUE_METRICS:
        assert value(after, name, **labels) == value(before, name, **labels), name


# -- end to end through the simulator ---------------------------------------------------------


def sim_source(world: SimWorld, name: str, targets: list[dict[str, str]], **over: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "swiftfederation",
        "base_url": world.base_url("swiftfederation"),
        "credentials": {"access_key_id": DEMO_SFD_KEY_ID, "access_key_secret": DEMO_SFD_SECRET},
        "interval": "1m",
        "targets": targets,
        **over,
    }


def expect(samples: Samples, labels: dict[str, str], current: float, peak: float, ts: float) -> None:
    got = {m: value(samples, m, **labels) for m in (*VALUE_METRICS, "livestream_target_up")}
    assert got == {
        "livestream_concurrent_viewers": current,
        "livestream_peak_concurrent_viewers": peak,
        "livestream_data_timestamp_seconds": ts,
        "livestream_target_up": 1.0,
    }, labels["stream"]


def answered(world: SimWorld) -> list[int | None]:
    return [r["status"] for r in world.sim.request_log("swiftfederation")]  # type: ignore[misc]


async def two_sources(world: SimWorld, rigs: Rigs, **global_: Any) -> Served:
    """sfd (main: SG/http-flv, backup: SG/hls/dash; fzone SG) and sfd-other (concert),
    viewers pinned at the simulator's start: 1000, 2000 and 900."""
    for key, n in ((MAIN, 1000), (BACKUP, 2000), (CONCERT, 900)):
        world.sim.set_viewers("swiftfederation", key, n)
    return await rigs.make(
        [
            sim_source(
                world,
                "sfd",
                [
                    target(MAIN, region="SG", protocol="http-flv"),
                    target(BACKUP, region="SG", protocol="hls/dash"),
                ],
                fzone="SG",
            ),
            sim_source(world, "sfd-other", [target(CONCERT)]),
        ],
        **global_,
    )


async def test_e2e_exact_values_and_what_was_sent(world, rigs):
    """Six 5-minute points, the current one live: before the simulator's start 0, then the
    pinned values.  backup's answers carry one malformed timestamp (the simulator's default
    quirk): that point is skipped, counted, and not part of the peak."""
    s = await two_sources(world, rigs)
    world.at(310)
    world.sim.set_viewers("swiftfederation", MAIN, 700)
    world.sim.set_viewers("swiftfederation", BACKUP, 1500)
    await s.cycle()  # sfd polls main at +310 and backup at +340; sfd-other polls concert at +340
    m = await s.metrics()
    expect(m, sfd(MAIN), 700, 1000, START + 300)
    expect(m, sfd(BACKUP), 1500, 1500, START + 300)  # 2000 sat on the malformed point
    expect(m, sfd(CONCERT, "sfd-other"), 900, 900, START + 300)
    assert value(m, "livestream_exporter_skipped_points_total", **src_labels()) == 1
    assert value(m, "livestream_exporter_skipped_points_total", **src_labels("sfd-other")) == 0
    assert value(m, "livestream_target_last_success_timestamp_seconds", **sfd(BACKUP)) == START + 340

    world.at(610)
    await s.cycle()
    m = await s.metrics()
    expect(m, sfd(MAIN), 700, 1000, START + 600)
    expect(m, sfd(BACKUP), 1500, 2000, START + 600)
    expect(m, sfd(CONCERT, "sfd-other"), 900, 900, START + 600)
    assert value(m, "livestream_exporter_skipped_points_total", **src_labels()) == 2
    endpoint = {"endpoint": "queryConcurrentViewers", "code": "200"}
    assert value(m, "livestream_exporter_api_requests_total", **src_labels(), **endpoint) == 4

    # what went out: filters passed through, percent-encoded, signed as sent; fzone where configured
    sent = world.requests_to(QUERY)
    assert [r.raw_path.partition("?")[2] for r in sent[:3]] == [
        "domain=live.example.com&app=demoapp&stream=main&region=SG&protocol=http-flv",
        "domain=live.example.com&app=demoapp&stream=backup&region=SG&protocol=hls%2Fdash",
        "domain=live.example.com&app=demoapp&stream=concert",
    ]
    assert [r.headers.get("X-SFD-FZone") for r in sent[:3]] == ["SG", "SG", None]
    for r in sent:
        assert_signed(r, DEMO_SFD_KEY_ID, DEMO_SFD_SECRET)
    assert answered(world) == [200] * 6, "the simulator verified every signature"


async def test_e2e_signed_uri_is_the_query_string_as_sent(world, rigs):
    """A stream name that needs percent-encoding: the simulator recomputes the signature over
    the raw URI it received, so any difference between what was signed and sent is a 401."""
    name = "late show+ü&x=1"
    key = f"{DOMAIN}/demoapp/{name}"
    world.sim.start_stream("swiftfederation", key, viewers=250)
    s = await rigs.make([sim_source(world, "sfd", [target(key, protocol="hls/dash")], fzone="SG")])
    await s.cycle()
    m = await s.metrics()
    expect(m, sfd(key), 250, 250, START)
    (req,) = world.requests_to(QUERY)
    assert req.raw_path.endswith(
        "?domain=live.example.com&app=demoapp&stream=late%20show%2B%C3%BC%26x%3D1&protocol=hls%2Fdash"
    )
    assert_signed(req, DEMO_SFD_KEY_ID, DEMO_SFD_SECRET)
    assert answered(world) == [200]


@pytest.mark.parametrize(
    "credentials",
    [
        {"access_key_id": DEMO_SFD_KEY_ID, "access_key_secret": "wrong-secret-0123456789"},
        {"access_key_id": "UnknownKeyId0000", "access_key_secret": DEMO_SFD_SECRET},
    ],
)
async def test_e2e_wrong_credentials_are_an_auth_error(world, rigs, credentials):
    for key, n in ((MAIN, 1000), (CONCERT, 900)):
        world.sim.set_viewers("swiftfederation", key, n)
    s = await rigs.make(
        [
            sim_source(world, "sfd", [target(MAIN)], credentials=credentials),
            sim_source(world, "sfd-other", [target(CONCERT)]),
        ]
    )
    await s.cycle()
    m = await s.metrics()
    assert value(m, "livestream_target_up", **sfd(MAIN)) == 0
    assert s.target("sfd", MAIN + "//").error == "auth"
    assert [n for n in series_of(m, stream=MAIN) if n.startswith(VALUE_METRICS)] == []
    endpoint = {"endpoint": "queryConcurrentViewers", "code": "401"}
    assert value(m, "livestream_exporter_api_requests_total", **src_labels(), **endpoint) == 1
    expect(m, sfd(CONCERT, "sfd-other"), 900, 900, START)
    text = await (await s.client.get("/metrics")).text()
    assert credentials["access_key_secret"] not in text


@pytest.mark.parametrize(
    ("fault", "code", "kind"),
    [
        ("5xx", 503, "upstream"),
        ("html", 502, "upstream"),
        ("html", 200, "parse"),
        ("truncated", None, "parse"),
        ("timeout", None, "timeout"),
        ("429", None, "throttled"),
        ("throttle200", None, "throttled"),
        ("error200", None, "upstream"),
        ("auth", None, "auth"),
    ],
)
async def test_e2e_failure_keeps_old_values_and_spares_the_others(world, rigs, fault, code, kind):
    s = await two_sources(world, rigs, timeout="300ms")
    world.at(10)
    await s.cycle()
    before = await s.metrics()
    main = sfd(MAIN)
    expect(before, main, 1000, 1000, START)
    last_ok = value(before, "livestream_target_last_success_timestamp_seconds", **main)

    world.sim.inject("swiftfederation", fault, stream=MAIN, code=code)
    for key, n in ((MAIN, 0), (BACKUP, 2100), (CONCERT, 950)):
        world.sim.set_viewers("swiftfederation", key, n)
    world.at(70)
    await s.cycle()
    after = await s.metrics()
    assert value(after, "livestream_target_up", **main) == 0
    for name in VALUE_METRICS:
        assert value(after, name, **main) == value(before, name, **main), name
    assert value(after, "livestream_target_last_success_timestamp_seconds", **main) == last_ok
    assert s.target("sfd", MAIN + "/SG/http-flv").error == kind
    assert value(after, "livestream_concurrent_viewers", **sfd(BACKUP)) == 2100
    assert value(after, "livestream_target_up", **sfd(BACKUP)) == 1
    assert value(after, "livestream_concurrent_viewers", **sfd(CONCERT, "sfd-other")) == 950
    assert value(after, "livestream_target_up", **sfd(CONCERT, "sfd-other")) == 1
    throttled = value(after, "livestream_exporter_throttled_total", **src_labels())
    assert throttled == (1 if kind == "throttled" else 0)

    world.sim.set_viewers("swiftfederation", MAIN, 1234)
    world.at(400)
    await s.cycle()
    m = await s.metrics()
    assert value(m, "livestream_target_up", **main) == 1
    assert value(m, "livestream_concurrent_viewers", **main) == 1234


async def test_e2e_gone_stream_has_its_series_removed(world, rigs):
    s = await two_sources(world, rigs)
    world.at(10)
    await s.cycle()
    assert "livestream_concurrent_viewers" in series_of(await s.metrics(), stream=MAIN)
    world.sim.remove_stream("swiftfederation", MAIN)
    world.at(70)
    await s.cycle()
    m = await s.metrics()
    assert series_of(m, stream=MAIN) == [], "removed, not zeroed"
    assert value(m, "livestream_concurrent_viewers", **sfd(BACKUP)) == 2000
    assert value(m, "livestream_concurrent_viewers", **sfd(CONCERT, "sfd-other")) == 900


async def test_e2e_many_targets_keep_both_limits_over_hours(world, rigs):
    """30 targets configured at 15 s would be 120 requests a minute: the effective interval
    becomes 30 * 3600 / 1000 = 108 s, and over 1.5 simulated hours no window of 60 s holds
    more than 100 requests nor any hour more than 1000; the simulator refused none."""
    keys = [f"{DOMAIN}/load/s{i:02d}" for i in range(30)]
    for i, key in enumerate(keys):
        world.sim.start_stream("swiftfederation", key, viewers=100 + i)
    s = await rigs.make([sim_source(world, "sfd", [target(k) for k in keys], interval="15s")])
    runner = s.rig.runner
    assert runner.interval == pytest.approx(108.0)
    m = await s.metrics()
    assert value(m, "livestream_exporter_poll_interval_seconds", **src_labels()) == pytest.approx(108.0)
    assert value(m, "livestream_exporter_rate_limit_requests_per_second", **src_labels()) == pytest.approx(
        1000 / 3600
    )

    start = world.clock.monotonic()
    cycles = 0
    while world.clock.monotonic() - start < 5400:
        world.clock.advance(start + cycles * runner.interval - world.clock.monotonic())
        await runner.run_cycle()
        cycles += 1
    log = world.sim.request_log("swiftfederation")
    assert len(log) == 30 * cycles >= 1500
    assert world.sim.max_in_window("swiftfederation", 60) <= 100
    assert world.sim.max_in_window("swiftfederation", 3600) <= 1000
    assert world.sim.max_in_window("swiftfederation", 3600) >= 990, "the budget is used, not wasted"
    assert {r["status"] for r in log} == {200}
    assert not any(r["throttled"] for r in log)
    m = await s.metrics()
    for i, key in enumerate(keys):
        assert value(m, "livestream_concurrent_viewers", **sfd(key)) == 100 + i
    assert value(m, "livestream_exporter_rate_limit_waits_total", **src_labels()) == 0


async def discovery_load(world: SimWorld, rigs: Rigs) -> Samples:
    """Five configured targets of a domain where 30 streams are streaming: discovery adds the
    other 25, so a cycle is 30 polls + 1 listing and the interval becomes 31 * 3.6 = 111.6 s;
    when 10 stop streaming after half an hour it shrinks to 21 * 3.6 = 75.6 s.  1.5 hours."""
    keys = [f"load.example.com/app/s{i:02d}" for i in range(30)]
    for i, key in enumerate(keys):
        world.sim.start_stream("swiftfederation", key, viewers=10 + i)
    s = await rigs.make(
        [sim_source(world, "sfd", [target(k) for k in keys[:5]], discover=True, interval="15s")]
    )
    runner = s.rig.runner
    assert runner.interval == pytest.approx(21.6), "5 polls + 1 listing before anything is discovered"
    start = next_start = world.clock.monotonic()
    intervals: list[float] = []
    while world.clock.monotonic() - start < 5400:
        if next_start - start >= 1800 and len(runner.targets()) == 30:
            for key in keys[20:]:
                world.sim.end_stream("swiftfederation", key)
        world.clock.advance(next_start - world.clock.monotonic())
        await runner.run_cycle()
        intervals.append(runner.interval)
        next_start += runner.interval
    assert intervals[0] == pytest.approx(111.6)
    assert intervals[-1] == pytest.approx(75.6)
    m = await s.metrics()
    for i, key in enumerate(keys[:20]):
        assert value(m, "livestream_concurrent_viewers", **sfd(key)) == 10 + i
    for key in keys[20:]:
        assert series_of(m, stream=key) == []
    assert value(m, "livestream_exporter_targets", **src_labels()) == 20
    return m


async def test_e2e_discovered_targets_and_the_listing_count_against_both_limits(world, rigs):
    await discovery_load(world, rigs)
    log = world.sim.request_log("swiftfederation")
    assert {r["status"] for r in log} == {200}
    assert world.sim.max_in_window("swiftfederation", 60) <= 100
    assert world.sim.max_in_window("swiftfederation", 3600) <= 1000


async def test_e2e_discovery_load_is_spread_without_limiter_waits(world, rigs):
    """The listing and the first poll are spread over the cycle like every other request, so
    at the budget's edge the plan, not the limiter, keeps the hour within 1000."""
    m = await discovery_load(world, rigs)
    assert value(m, "livestream_exporter_rate_limit_waits_total", **src_labels()) == 0


async def test_e2e_discovery_tracks_streaming_streams(world, rigs):
    """discover: true lists the configured domains' streaming streams every cycle; a stream
    that starts appears, one that stops streaming vanishes from /metrics."""
    world.sim.set_quirk("sfd_malformed_streams", [])
    pins = {MAIN: 1000, BACKUP: 600, CONCERT: 900, WEBINAR: 50, LATE: 300}
    for key, n in pins.items():
        world.sim.set_viewers("swiftfederation", key, n)
    s = await rigs.make(
        [
            sim_source(
                world, "sfd", [target(MAIN, region="SG", protocol="http-flv")], discover=True, fzone="SG"
            )
        ]
    )
    world.at(10)
    await s.cycle()
    m = await s.metrics()
    for key in (MAIN, BACKUP, CONCERT, WEBINAR):
        expect(m, sfd(key), pins[key], pins[key], START)
    assert series_of(m, stream=LATE) == [], "late-show goes live at +120 s"
    assert value(m, "livestream_exporter_targets", **src_labels()) == 4
    (listing,) = world.requests_to(LIST)
    assert listing.raw_path.endswith(
        f"{LIST}?domain=live.example.com&status=active&streamingStatus=streaming"
    )
    assert listing.headers["X-SFD-FZone"] == "SG"
    assert_signed(listing, DEMO_SFD_KEY_ID, DEMO_SFD_SECRET)

    world.at(130)
    await s.cycle()
    m = await s.metrics()
    expect(m, sfd(LATE), 300, 300, START)

    world.sim.end_stream("swiftfederation", CONCERT)
    world.at(200)
    await s.cycle()
    m = await s.metrics()
    assert series_of(m, stream=CONCERT) == [], "a stream that stopped streaming vanishes"
    for key in (MAIN, BACKUP, WEBINAR, LATE):
        assert value(m, "livestream_concurrent_viewers", **sfd(key)) == pins[key]

    world.at(610)  # the "ends" scenario: webinar stops at +600 s
    await s.cycle()
    m = await s.metrics()
    assert series_of(m, stream=WEBINAR) == []
    up = {dict(labels)["stream"] for name, labels in m if name == "livestream_target_up"}
    assert up == {MAIN, BACKUP, LATE}
    assert value(m, "livestream_exporter_targets", **src_labels()) == 3
    assert {r["status"] for r in world.sim.request_log("swiftfederation")} == {200}
    assert world.sim.max_in_window("swiftfederation", 60) <= 100
    assert world.sim.max_in_window("swiftfederation", 3600) <= 1000


async def test_e2e_failed_discovery_keeps_the_discovered_streams(world, rigs):
    for key, n in ((MAIN, 1000), (BACKUP, 600)):
        world.sim.set_viewers("swiftfederation", key, n)
    world.sim.set_quirk("sfd_malformed_streams", [])
    s = await rigs.make([sim_source(world, "sfd", [target(MAIN)], discover=True)])
    await s.cycle()
    assert value(await s.metrics(), "livestream_concurrent_viewers", **sfd(BACKUP)) == 600
    world.sim.inject("swiftfederation", "throttle200")  # the next request: the stream list
    world.at(70)
    await s.cycle()
    m = await s.metrics()
    assert value(m, "livestream_concurrent_viewers", **sfd(BACKUP)) == 600
    assert value(m, "livestream_target_up", **sfd(BACKUP)) == 1
    assert value(m, "livestream_exporter_throttled_total", **src_labels()) == 1


async def test_daemon_polls_the_simulator(simulator, write_config, running):
    """The real exporter (scheduler, discovery, /metrics) against the real-time simulator."""
    sim, root = simulator
    # a short interval for a quick test: the documented limits are proven on a FakeClock above
    (source,) = sim_sources(
        root, "swiftfederation", interval="200ms", rate_limit=[{"requests": 10, "per": "1s"}]
    )
    sim.set_quirk("sfd_malformed_streams", [])
    pins = {MAIN: 1111, BACKUP: 2222, CONCERT: 3333, WEBINAR: 44}
    for key, n in pins.items():
        sim.set_viewers("swiftfederation", key, n)
    _, client = await running(write_config([source]))
    labels = src_labels("demo-swiftfederation")
    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        m = parse(await (await client.get("/metrics")).text())
        if all(value(m, "livestream_target_up", **labels, stream=k) == 1 for k in pins):
            break
        assert asyncio.get_running_loop().time() < deadline, "the demo streams were not all polled"
        await asyncio.sleep(0.05)
    for key, n in pins.items():
        assert value(m, "livestream_concurrent_viewers", **labels, stream=key) == n
    assert {r["status"] for r in sim.request_log("swiftfederation")} == {200}
    assert sim.max_in_window("swiftfederation", 60) <= 100
