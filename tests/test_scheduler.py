"""Scheduling within rate limits: spreading, the effective interval, back-off, discovery.

The first tests drive a SourceRunner by hand on a FakeClock (time is simulated, HTTP to
the fake vendor is real); the last ones run the daemon's own schedule, on the fake clock too.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter.model.clock import FakeClock
from exporter.model.windows import Window
from exporter.providers.transport import parse_retry_after
from tests import fakevendor
from tests.conftest import tv_source, wait_for
from tests.fakevendor import API_KEY, FakeVendor
from tests.pollhelpers import Rig, TimedLog, build_rig, fake_time_log, parse, series_of, tv, value

SOURCE = {"provider": "testvendor", "source": "tv"}
#: a budget no test here comes near
BIG = [{"requests": 100_000, "per": "1m"}]


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(config_file: Path, clock: FakeClock | None = None) -> Rig:
        r = build_rig(config_file, clock)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        await r.close()


def timed(vendor: FakeVendor, clock: FakeClock) -> TimedLog:
    vendor.log = fake_time_log(clock)
    return vendor.log


def gaps(times: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def assert_within(times: Sequence[float], windows: Sequence[Window]) -> None:
    times = sorted(times)
    for w in windows:
        for i in range(len(times) - w.requests):
            assert times[i + w.requests] - times[i] > w.per, f"window {w} exceeded at request {i}"


# -- spreading and the effective interval (FakeClock) ---------------------------------------


async def test_targets_are_spread_evenly_over_the_interval(vendor, vendor_url, write_config, rig):
    """Six targets at a 60 s interval: one request every 10 s, not a burst."""
    ids = ["a", "b", "c", "d", "e", "f"]
    vendor.viewers = {i: 10.0 for i in ids}
    r = rig(write_config([tv_source(vendor_url, targets=ids, interval="60s")]))
    log = timed(vendor, r.clock)
    start = r.clock.monotonic()
    for cycle in range(2):
        r.clock.advance(start + cycle * 60.0 - r.clock.monotonic())
        await r.runner.run_cycle()
    assert [k for _, k in log] == ids * 2
    assert log.times == pytest.approx([start + 10.0 * k for k in range(12)])
    assert all(t.up for t in r.store.sources["tv"].targets.values())


async def test_more_targets_than_budget_lengthen_the_interval(vendor, vendor_url, write_config, rig):
    """150 targets at 100/min AND 1000/h: the interval becomes 9 min, shown on /metrics,
    and seven cycles (1050 requests) keep within both windows."""
    ids = [f"s{i}" for i in range(150)]
    vendor.viewers = {i: 1.0 for i in ids}
    windows = [{"requests": 100, "per": "1m"}, {"requests": 1000, "per": "1h"}]
    r = rig(write_config([tv_source(vendor_url, targets=ids, rate_limit=windows)]))
    runner = r.runner
    assert runner.configured_interval == pytest.approx(0.2)
    assert runner.interval == pytest.approx(540.0)

    samples = r.scrape()
    assert value(samples, "livestream_exporter_poll_interval_seconds", **SOURCE) == pytest.approx(540.0)
    assert value(samples, "livestream_exporter_rate_limit_requests_per_second", **SOURCE) == pytest.approx(
        1000 / 3600
    )
    assert value(samples, "livestream_exporter_targets", **SOURCE) == 150

    log = timed(vendor, r.clock)
    start = r.clock.monotonic()
    for cycle in range(7):
        r.clock.advance(start + cycle * 540.0 - r.clock.monotonic())
        await runner.run_cycle()
    assert len(log) == 1050
    assert_within(log.times, [Window(100, 60.0), Window(1000, 3600.0)])
    # evenly spread: one request every 540/150 = 3.6 s (the limiter may add its 1 ms margin)
    assert all(3.6 - 0.002 <= g <= 3.6 + 0.002 for g in gaps(log.times)), set(gaps(log.times))


async def test_polls_within_the_planned_interval_are_not_counted_as_limiter_waits(
    vendor, vendor_url, write_config, rig
):
    """A source whose effective interval was planned from its budget is not held back by
    its own limiter: `rate_limit_waits_total` stays 0 cycle after cycle."""
    r = rig(write_config([tv_source(vendor_url, rate_limit=[{"requests": 2, "per": "10s"}])]))
    assert r.runner.interval == pytest.approx(15.0)
    start = r.clock.monotonic()
    for cycle in range(4):
        r.clock.advance(start + cycle * 15.0 - r.clock.monotonic())
        await r.runner.run_cycle()
    samples = r.scrape()
    assert value(samples, "livestream_exporter_rate_limit_waits_total", **SOURCE) == 0, (
        "every poll past the first window was 'delayed' by the limiter's 1 ms edge margin"
    )


async def test_limiter_waits_are_counted(vendor, vendor_url, write_config, rig):
    """Requests the limiter really holds back show in rate_limit_waits_total."""
    r = rig(write_config([tv_source(vendor_url, rate_limit=[{"requests": 2, "per": "10s"}])]))
    log = timed(vendor, r.clock)
    runner = r.runner
    t0 = r.clock.monotonic()
    for target in runner.targets():  # three polls back to back, budget 2 per 10 s
        await runner.poll_batch([target])
    assert log.times[2] >= t0 + 10.0
    assert runner.stats.limiter_waits == 1
    assert value(r.scrape(), "livestream_exporter_rate_limit_waits_total", **SOURCE) == 1


# -- throttling and back-off (FakeClock) ------------------------------------------------


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_retry_after_pauses_the_source(vendor, vendor_url, write_config, rig, form):
    r = rig(write_config([tv_source(vendor_url, targets=["a", "b"])]))
    vendor.faults["a"] = "429"
    vendor.retry_after = (
        "30" if form == "seconds" else email.utils.formatdate(r.clock.time() + 30, usegmt=True)
    )
    log = timed(vendor, r.clock)
    await r.runner.run_cycle()
    (t_a,), (t_b,) = log.at("stream", "a"), log.at("stream", "b")
    assert t_b >= t_a + 30.0, "the next request went out before Retry-After"
    assert t_b <= t_a + 31.0 + 0.1  # the hint plus at most 1 s of jitter, not more

    samples = r.scrape()
    assert value(samples, "livestream_exporter_throttled_total", **SOURCE) == 1
    # the cycle's next slot moved to the end of the pause: the limiter had nothing to hold
    assert value(samples, "livestream_exporter_rate_limit_waits_total", **SOURCE) == 0
    assert (
        value(samples, "livestream_exporter_api_requests_total", **SOURCE, endpoint="stream", code="429") == 1
    )
    assert value(samples, "livestream_target_up", **tv("a")) == 0
    assert value(samples, "livestream_target_up", **tv("b")) == 1
    assert r.store.sources["tv"].targets["a"].error == "throttled"


async def test_5xx_backs_off_exponentially_and_recovers(vendor, vendor_url, write_config, rig):
    r = rig(write_config([tv_source(vendor_url, targets=["a"])]))
    vendor.faults["a"] = "500"
    log = timed(vendor, r.clock)
    for _ in range(6):
        await r.runner.run_cycle()  # back to back: only the back-off spaces them
    pauses = gaps(log.times)
    for k, p in enumerate(pauses):
        full = 2.0**k  # base 1 s, doubling per failure
        assert full / 2 - 0.01 <= p <= full + 0.01, (
            f"pause {k + 1} was {p:.3f}s, expected [{full / 2}, {full}]"
        )
    assert pauses == sorted(pauses)
    samples = r.scrape()
    assert value(samples, "livestream_exporter_throttled_total", **SOURCE) == 0  # a 5xx is not throttling
    assert (
        value(samples, "livestream_exporter_api_requests_total", **SOURCE, endpoint="stream", code="500") == 6
    )

    # recovery resets the back-off: after one success the next poll is not held back
    del vendor.faults["a"]
    await r.runner.run_cycle()
    t_ok = r.clock.monotonic()
    await r.runner.run_cycle()
    assert log.times[-1] == pytest.approx(t_ok)
    assert r.store.sources["tv"].targets["a"].up


async def test_throttling_answered_with_http_200_counts_and_backs_off(vendor, vendor_url, write_config, rig):
    """A vendor that says "too frequent" with HTTP 200 (provider raises ThrottledError)."""
    r = rig(write_config([tv_source(vendor_url, targets=["a", "b"])]))
    vendor.faults["a"] = "throttle200"  # answers {"throttled": true, "retry_after": 3}
    log = timed(vendor, r.clock)
    await r.runner.run_cycle()
    (t_a,), (t_b,) = log.at("stream", "a"), log.at("stream", "b")
    assert t_b >= t_a + 3.0
    samples = r.scrape()
    assert value(samples, "livestream_exporter_throttled_total", **SOURCE) == 1
    assert (
        value(samples, "livestream_exporter_api_requests_total", **SOURCE, endpoint="stream", code="200") == 2
    )
    assert value(samples, "livestream_target_up", **tv("a")) == 0
    assert r.store.sources["tv"].targets["a"].error == "throttled"


# -- batching, discovery, provider bugs ---------------------------------------------------


async def test_batching_sends_several_targets_per_request(vendor, vendor_url, write_config, rig):
    r = rig(write_config([tv_source(vendor_url, batch_size=2, interval="10s")]))
    runner = r.runner
    assert runner.requests_per_cycle() == {"default": 2}  # the interval is planned on requests
    log = timed(vendor, r.clock)
    start = r.clock.monotonic()
    await runner.run_cycle()
    assert list(log) == [("batch", "a,b"), ("stream", "c")]
    assert log.times == pytest.approx([start, start + 5.0])  # two requests spread over 10 s
    samples = r.scrape()
    for stream, viewers in (("a", 100), ("b", 200), ("c", 300)):
        assert value(samples, "livestream_concurrent_viewers", **tv(stream)) == viewers
        assert value(samples, "livestream_target_up", **tv(stream)) == 1


async def test_batching_plans_the_interval_on_requests_not_targets(vendor, vendor_url, write_config, rig):
    ids = [f"s{i}" for i in range(10)]
    limit = [{"requests": 1, "per": "10s"}]
    plain = rig(write_config([tv_source(vendor_url, targets=ids, rate_limit=limit)]))
    batched = rig(write_config([tv_source(vendor_url, targets=ids, rate_limit=limit, batch_size=5)]))
    assert plain.runner.interval == pytest.approx(100.0)
    assert batched.runner.interval == pytest.approx(20.0)


async def test_a_provider_bug_fails_only_its_targets(vendor, vendor_url, write_config, rig, logs):
    r = rig(write_config([tv_source(vendor_url)]))
    runner = r.runner
    real_poll = runner.provider.poll

    async def buggy(batch):
        if any(t.key == "b" for t in batch):
            raise KeyError("unexpected field")
        return await real_poll(batch)

    runner.provider.poll = buggy  # type: ignore[method-assign]
    await runner.run_cycle()
    targets = r.store.sources["tv"].targets
    assert targets["a"].up and targets["c"].up
    assert not targets["b"].up and targets["b"].error == "internal"
    assert r.store.ready()
    samples = r.scrape()
    assert value(samples, "livestream_concurrent_viewers", **tv("c")) == 300
    assert value(samples, "livestream_target_up", **tv("b")) == 0
    assert any("provider failed unexpectedly" in line and "KeyError" in line for line in logs)


# -- the daemon's schedule, on the fake clock ---------------------------------------------


class CountingVendor:
    """A FakeVendor server that counts requests in flight and logs arrival times."""

    def __init__(self, vendor: FakeVendor, clock: FakeClock) -> None:
        self.vendor = vendor
        self.inflight = 0
        self.max_inflight = 0
        vendor.clock = clock
        vendor.log = self.log = TimedLog(clock.monotonic)

    def app(self) -> web.Application:
        app = self.vendor.app()

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            try:
                return await handler(request)
            finally:
                self.inflight -= 1

        app.middlewares.append(count)
        return app


@pytest.fixture
async def counting(aiohttp_server) -> Callable[..., Any]:
    async def start(vendor: FakeVendor, clock: FakeClock) -> tuple[CountingVendor, str]:
        cv = CountingVendor(vendor, clock)
        server = await aiohttp_server(cv.app())
        return cv, str(server.make_url("")).rstrip("/")

    return start


async def test_slow_answers_never_hold_back_the_next_requests(write_config, running, counting):
    """Answers that take 0.3 s while a slot comes every 100 ms: the requests still leave at
    their planned moments, several in flight at once, but never two polls of one target."""
    clock = FakeClock()
    vendor = FakeVendor(slow_seconds=0.3, faults={"a": "slow", "b": "slow", "c": "slow"})
    cv, url = await counting(vendor, clock)
    exporter, _ = await running(write_config([tv_source(url)]), clock=clock)
    await wait_for(lambda: len(vendor.log.at("stream", "c")) >= 4)
    assert cv.max_inflight == 3, "the requests waited for earlier answers"
    sent = vendor.log.times[:9]
    assert gaps(sent)[:2] == pytest.approx([0.1, 0.1]), "the first slots left late"
    for stream in "abc":
        polls = vendor.log.at("stream", stream)
        # a target is polled again only once its previous answer is in: every other cycle
        assert min(gaps(polls)) >= 0.3 - 1e-6, f"two polls of {stream} at once"
    assert exporter.store.sources["tv"].targets["a"].up


async def test_a_slow_source_never_delays_another(write_config, running, counting):
    """One source whose vendor answers in 3 s; the other keeps its cycles meanwhile (its budget
    of 10 requests/s makes them 300 ms: a poll every 100 ms)."""
    clock = FakeClock()
    slow_vendor = FakeVendor(slow_seconds=3.0, faults={"a": "slow", "b": "slow", "c": "slow"})
    fast_vendor = FakeVendor()
    _, slow_url = await counting(slow_vendor, clock)
    _, fast_url = await counting(fast_vendor, clock)
    _, client = await running(
        write_config([tv_source(slow_url, name="slow"), tv_source(fast_url, name="fast")], timeout="5s"),
        clock=clock,
    )
    await wait_for(lambda: len(slow_vendor.log.at("stream", "a")) >= 3)
    t0, t1 = slow_vendor.log.at("stream", "a")[0], slow_vendor.log.at("stream", "a")[2]
    assert t1 - t0 >= 6.0, "the slow source polled a target before its answer came"
    fast = [t for t in fast_vendor.log.at("stream") if t0 <= t <= t1]
    assert len(fast) >= (t1 - t0) / 0.1 - 1, f"{len(fast)} polls of the fast source in {t1 - t0:g} s"
    assert max(gaps(fast)) == pytest.approx(0.1), "the fast source stalled"
    samples = parse(await (await client.get("/metrics")).text())
    for s in ("a", "b", "c"):
        assert value(samples, "livestream_target_up", **tv(s, "fast")) == 1


async def test_a_removed_source_sends_nothing_after_the_reload(write_config, running, counting):
    """A reload that removes a source stops its cycle at once: no request of the old
    configuration goes out next to the new one's."""
    clock = FakeClock()
    removed, kept = FakeVendor(), FakeVendor()
    _, removed_url = await counting(removed, clock)
    _, kept_url = await counting(kept, clock)
    exporter, _ = await running(
        write_config([tv_source(removed_url, name="removed"), tv_source(kept_url, name="kept")]), clock=clock
    )
    await wait_for(lambda: len(removed.log) >= 6)
    write_config([tv_source(kept_url, name="kept")])
    assert await exporter.reload() is None
    assert set(exporter.runners) == {"kept"}
    sent_removed, sent_kept = len(removed.log), len(kept.log)
    await wait_for(lambda: len(kept.log) >= sent_kept + 12)
    assert len(removed.log) == sent_removed, "the removed source kept polling"
    assert "removed" not in exporter.store.sources


async def test_discovered_targets_appear_and_vanish(vendor, vendor_url, write_config, running):
    exporter, client = await running(write_config([tv_source(vendor_url, targets=[], discover=True)]))
    targets = lambda: exporter.store.sources["tv"].targets  # noqa: E731

    await wait_for(lambda: set(targets()) == {"a", "b", "c"} and all(t.up for t in targets().values()))
    samples = parse(await (await client.get("/metrics")).text())
    assert value(samples, "livestream_concurrent_viewers", **tv("c")) == 300
    assert value(samples, "livestream_exporter_targets", **SOURCE) == 3

    vendor.listed = ["a", "b", "d"]
    vendor.viewers["d"] = 400.0
    await wait_for(lambda: set(targets()) == {"a", "b", "d"} and targets()["d"].up)
    samples = parse(await (await client.get("/metrics")).text())
    assert series_of(samples, stream="tv/c") == [], "a stream no longer listed kept series"
    assert value(samples, "livestream_concurrent_viewers", **tv("d")) == 400
    assert value(samples, "livestream_exporter_targets", **SOURCE) == 3
    assert ("list", "") in vendor.log


# -- back-off pauses and Retry-After ---------------------------------------------------------


async def test_poll_duration_leaves_out_the_wait_for_the_budget(vendor, vendor_url, write_config, rig):
    """After a 30 s Retry-After pause, the next target's poll duration is its own, not 30 s."""
    r = rig(write_config([tv_source(vendor_url, targets=["a", "b"])]))
    vendor.faults["a"] = "429"
    vendor.retry_after = "30"
    timed(vendor, r.clock)
    await r.runner.run_cycle()
    state_b = r.store.sources["tv"].targets["b"]
    assert state_b.up
    assert state_b.poll_duration is not None and state_b.poll_duration < 1.0


async def test_polls_after_a_back_off_pause_keep_their_spacing(vendor, vendor_url, write_config, rig):
    """A pause in the middle of a cycle must not make the remaining targets go out in a burst."""
    ids = ["a", "b", "c", "d"]
    vendor.viewers = {i: 1.0 for i in ids}
    vendor.faults["a"] = "429"
    vendor.retry_after = "30"
    r = rig(write_config([tv_source(vendor_url, targets=ids, interval="40s")]))
    log = timed(vendor, r.clock)
    await r.runner.run_cycle()
    times = [log.at("stream", i)[0] for i in ids]
    assert min(gaps(times[1:])) >= 10.0 - 1e-6, f"burst after the pause: {gaps(times)}"


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Tokyo"])
def test_retry_after_date_without_zone_is_utc(monkeypatch, tz):
    """An HTTP date with the `-0000` zone is read as UTC, not in the local time zone, so
    Retry-After is right on a host outside UTC."""
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30)  # "Tue, 14 Nov 2023 22:13:50 -0000"
    assert header.endswith("-0000")
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        assert parse_retry_after(header, now) == pytest.approx(30.0)
        assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30.0)
    finally:
        monkeypatch.undo()
        time.tzset()


# -- slow vendors and provider bugs ----------------------------------------------------------


async def test_slow_answers_lengthen_the_interval_only_beyond_the_requests_in_flight(
    write_config, running, counting, logs
):
    """10 targets at 1 s whose answers take 0.5 s: with 10 requests allowed in flight the plan
    holds (the cycle lasts 1.4 s, and says so); with 2, the answers bound the interval to
    10 x 0.5 / 2 = 2.5 s, which is shown, logged, and lengthens stale_after with it."""
    clock = FakeClock()
    ids = [f"s{i}" for i in range(10)]
    vendor = FakeVendor(viewers={i: 1.0 for i in ids}, slow_seconds=0.5, faults={i: "slow" for i in ids})
    _, url = await counting(vendor, clock)
    exporter, client = await running(
        write_config(
            [
                tv_source(url, name="wide", targets=ids, interval="1s", max_in_flight=10, rate_limit=BIG),
                tv_source(url, name="narrow", targets=ids, interval="1s", max_in_flight=2, rate_limit=BIG),
            ],
            stale_after="2s",
        ),
        clock=clock,
    )
    await wait_for(lambda: len(vendor.log) >= 100)
    wide = {"provider": "testvendor", "source": "wide"}
    narrow = {"provider": "testvendor", "source": "narrow"}
    shown: list[float] = []

    async def finished_cycle_shown() -> bool:
        samples = parse(await (await client.get("/metrics")).text())
        shown.append(value(samples, "livestream_exporter_cycle_duration_seconds", **wide))
        return shown[-1] == pytest.approx(1.4)

    # a cycle running past its 1 s plan shows its running time (1 to 1.4 s) until it ends
    for _ in range(50):
        if await finished_cycle_shown():
            break
        await asyncio.sleep(0.01)  # idle: the fake clock moves on
    assert shown[-1] == pytest.approx(1.4), shown
    assert all(1.0 <= s <= 1.4 + 1e-6 for s in shown)
    samples = parse(await (await client.get("/metrics")).text())
    assert value(samples, "livestream_exporter_poll_interval_seconds", **wide) == 1.0
    assert value(samples, "livestream_exporter_poll_interval_seconds", **narrow) == pytest.approx(2.5)
    assert exporter.store.sources["narrow"].stale_after >= 5.0
    for i in ids:  # nothing went stale between two polls
        assert value(samples, "livestream_concurrent_viewers", **tv(i, "narrow")) == 1.0
    changed = [line for line in logs if "poll interval changed" in line and "source=narrow" in line]
    assert changed and "answer_seconds=0.5" in changed[0]
    assert not [line for line in logs if "poll interval changed" in line and "source=wide" in line]


async def test_one_slow_cycle_does_not_slow_polling_afterwards(write_config, running, counting):
    """40 targets at 10 s; answers take 1 s for one cycle, then are instant again: the interval
    stays 10 s (the budget and the requests in flight allow it), and the cycles keep starting
    10 s apart."""
    clock = FakeClock()
    ids = [f"s{i:02d}" for i in range(40)]
    vendor = FakeVendor(viewers={i: 1.0 for i in ids}, slow_seconds=1.0, faults={i: "slow" for i in ids})
    _, url = await counting(vendor, clock)
    exporter, _ = await running(
        write_config([tv_source(url, targets=ids, interval="10s")], timeout="5s"), clock=clock
    )
    await wait_for(lambda: len(vendor.log) >= 40)
    vendor.faults.clear()
    await wait_for(lambda: len(vendor.log) >= 160)
    firsts = vendor.log.at("stream", "s00")
    assert gaps(firsts[:4]) == pytest.approx([10.0, 10.0, 10.0])
    assert exporter.runners["tv"].interval == 10.0


@pytest.mark.parametrize("method", ["discover", "poll_app"])
async def test_a_provider_bug_in_discovery_or_app_poll_spares_the_cycle(
    vendor, vendor_url, write_config, running, monkeypatch, logs, method
):
    """An unexpected exception (not a PollError) in discover() or poll_app() is logged and does
    not end the cycle: every target is still polled and /-/ready turns 200."""

    async def buggy(self: fakevendor.TestVendor) -> Any:
        raise KeyError("field the vendor stopped sending")

    monkeypatch.setattr(fakevendor.TestVendor, method, buggy)
    cfg = write_config([tv_source(vendor_url, discover=True, app_metrics=True)])
    exporter, client = await running(cfg)
    targets = lambda: exporter.store.sources["tv"].targets  # noqa: E731
    await wait_for(lambda: all(targets()[k].up for k in "abc"), within=3)
    assert exporter.store.ready()
    r = await client.get("/-/ready")
    assert r.status == 200, await r.text()
    assert any("provider failed unexpectedly" in line and "KeyError" in line for line in logs)


# -- reloads ----------------------------------------------------------------------------------


async def test_reload_keeps_the_limiter_history_of_a_changed_source(
    vendor, vendor_url, write_config, running
):
    """A reload that changes a source must not give it a fresh, empty budget (the vendor's
    window goes on)."""
    cfg = write_config([tv_source(vendor_url)])
    exporter, _ = await running(cfg)
    await wait_for(exporter.store.ready)
    old = exporter.runners["tv"].limiter
    sent = old.buckets["default"].history()
    assert sent
    write_config([tv_source(vendor_url, targets=["a", "b", "c", "d"])])
    assert await exporter.reload() is None
    new = exporter.runners["tv"].limiter
    assert new is not old
    assert new.buckets["default"].history()[: len(sent)] == sent


async def test_a_reload_keeps_the_discovered_targets(vendor, vendor_url, write_config, running):
    """A reload starts the source with the targets discovered before it, so no discovered stream
    loses its series until the next discovery (nor for good when that discovery fails)."""
    cfg = write_config([tv_source(vendor_url, targets=[], discover=True)])
    exporter, client = await running(cfg)
    targets = lambda: exporter.store.sources["tv"].targets  # noqa: E731
    await wait_for(lambda: set(targets()) == {"a", "b", "c"} and all(t.up for t in targets().values()))
    # from now on the vendor refuses the list: only what was discovered before can be polled
    vendor._auth = lambda request: request.path != "/streams" and request.headers.get("X-Key") == API_KEY  # type: ignore[method-assign]
    lists = vendor.log.count(("list", ""))
    assert await exporter.reload() is None
    assert set(targets()) == {"a", "b", "c"}, "the reload dropped the discovered targets"
    assert vendor.log.count(("list", "")) == lists  # no discovery has run since the reload
    samples = parse(await (await client.get("/metrics")).text())
    for stream, viewers in (("a", 100), ("b", 200), ("c", 300)):
        assert value(samples, "livestream_concurrent_viewers", **tv(stream)) == viewers

    # the first discovery after the reload fails: the list from before the reload is kept
    await wait_for(lambda: vendor.log.count(("list", "")) > lists)
    polled = len(vendor.log)
    await wait_for(lambda: {("stream", k) for k in "abc"} <= set(vendor.log[polled:]), within=5)
    samples = parse(await (await client.get("/metrics")).text())
    for stream in "abc":
        assert value(samples, "livestream_target_up", **tv(stream)) == 1
