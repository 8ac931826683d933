"""Rate limiting, on a FakeClock.

A source never sends more than its budget in any window, with several windows at once, as
the vendor counts it: on arrival, anywhere between the send and the answer.  Retry-After is
honoured; back-off on 429/5xx is exponential, capped and jittered.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.engine.limiter import MAX_RETRY_AFTER, Bucket, SourceLimiter
from exporter.model.clock import FakeClock
from exporter.model.windows import Window

MINUTE, HOUR = 60.0, 3600.0
SWIFT = (Window(100, MINUTE), Window(1000, HOUR))  # "100/minute AND 1000/hour"


def assert_within(times: Sequence[float], windows: Sequence[Window]) -> None:
    """No closed interval of length `per` holds more than `requests` send times.

    With the times sorted, that is: for every i, request i and request i+R (R+1
    requests) are more than `per` apart.
    """
    times = sorted(times)
    for w in windows:
        r = w.requests
        for i in range(len(times) - r):
            span = times[i + r] - times[i]
            assert span > w.per, (
                f"window {w}: requests {i}..{i + r} ({r + 1} requests) fall within {span:.6f}s <= {w.per}s"
            )


def failure_after_pause(limiter: SourceLimiter, clock: FakeClock) -> float:
    """A failure once the previous pause is over: the pause it orders."""
    clock.advance(max(0.0, limiter.paused_until - clock.monotonic()))
    return limiter.backoff()


async def send(limiter: SourceLimiter, bucket: str = "default") -> bool:
    """One request answered at once; whether the limiter held it back."""
    ticket = await limiter.acquire(bucket)
    limiter.release(ticket)
    return ticket.waited


async def acquire_n(limiter: SourceLimiter, clock: FakeClock, n: int, bucket: str = "default") -> list[float]:
    times = []
    for _ in range(n):
        await send(limiter, bucket)
        times.append(clock.monotonic())
    return times


async def test_single_window_is_never_exceeded() -> None:
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(10, 1.0)]}, clock)
    times = await acquire_n(limiter, clock, 1000)
    assert_within(times, [Window(10, 1.0)])
    # ...and it is not over-throttled: 1000 requests at 10/s take ~99 s, not more
    assert 99.0 <= times[-1] - times[0] <= 99.0 + 100 * 0.01


async def test_ten_thousand_polls_never_exceed_either_of_two_windows() -> None:
    """10,000 simulated acquisitions under 100/min AND 1000/h: no window of either is ever exceeded."""
    clock = FakeClock()
    limiter = SourceLimiter({"default": SWIFT}, clock)
    n = 10_000
    times = await acquire_n(limiter, clock, n)

    assert len(times) == n
    assert times == sorted(times)
    assert_within(times, SWIFT)

    # Not over-throttling either: the tighter window (1000/h) allows 10,000 requests in
    # 10 hours at its sustained rate, and no less than 9 full hours (bursting each hour).
    elapsed = times[-1] - times[0]
    rps = limiter.requests_per_second
    assert rps == pytest.approx(1000 / HOUR)
    assert 9 * HOUR <= elapsed <= n / rps, f"{n} requests took {elapsed:.1f}s"
    # the minute window binds within each hour: 1000 requests need 9 full minutes
    assert times[999] - times[0] == pytest.approx(9 * MINUTE, abs=0.1)
    assert limiter.sent == n


async def test_windows_hold_with_irregular_arrivals() -> None:
    """Requests arriving at random gaps (sometimes idle, sometimes bursting) still fit."""
    clock = FakeClock()
    rng = random.Random(42)
    windows = (Window(5, 1.0), Window(50, 30.0), Window(200, 300.0))
    limiter = SourceLimiter({"default": windows}, clock)
    times = []
    for _ in range(5000):
        if rng.random() < 0.3:
            clock.advance(rng.expovariate(1.0) * 2)
        await send(limiter)
        times.append(clock.monotonic())
    assert_within(times, windows)


async def test_concurrent_acquisitions_share_the_budget() -> None:
    """Many tasks acquiring at once are serialised and together stay within every window."""
    clock = FakeClock()
    windows = (Window(20, 1.0), Window(100, 10.0))
    limiter = SourceLimiter({"default": windows}, clock)
    times: list[float] = []

    async def worker() -> None:
        for _ in range(5):
            await send(limiter)
            times.append(clock.monotonic())  # still running: no other task moved the clock

    await asyncio.gather(*(worker() for _ in range(200)))
    assert len(times) == 1000
    assert_within(times, windows)
    # 1000 requests at 100 per 10 s need at least 90 s, and no more than the sustained rate allows
    assert 90.0 <= max(times) - min(times) <= 1000 / limiter.requests_per_second
    # the limiter slept before every new group of send times (tasks queued behind a
    # sleeper go out with it and are not counted again)
    assert limiter.waits >= len(set(times)) - 1 > 0


async def test_buckets_are_independent_but_backoff_is_shared() -> None:
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(2, 10.0)], "list": [Window(1, 1.0)]}, clock)
    t0 = clock.monotonic()
    await acquire_n(limiter, clock, 2)
    # the default bucket is full, the list bucket is not: no wait for it
    assert await send(limiter, "list") is False
    assert clock.monotonic() == t0
    # a back-off pauses every bucket of the source
    limiter.backoff(retry_after=5.0)
    assert await send(limiter, "list") is True
    assert clock.monotonic() >= t0 + 5.0


def test_bucket_interval_for() -> None:
    """The shortest cycle that fits every window: 150 targets at 100/min & 1000/h -> 9 min."""
    b = Bucket(SWIFT)
    assert b.interval_for(150) == pytest.approx(9 * MINUTE)
    assert b.interval_for(1000) == pytest.approx(HOUR)
    assert b.interval_for(0) == 0.0
    # the minute window binds when it is the tighter one
    assert Bucket([Window(10, MINUTE), Window(1000, HOUR)]).interval_for(30) == pytest.approx(3 * MINUTE)
    # buckets send side by side: the slowest decides
    limiter = SourceLimiter({"default": SWIFT, "list": [Window(1, 10.0)]}, FakeClock())
    assert limiter.interval_for({"default": 150, "list": 1}) == pytest.approx(540.0)
    assert limiter.interval_for({"default": 1, "list": 100}) == pytest.approx(1000.0)
    # answers that take time keep each request in its windows that much longer
    assert Bucket([Window(100, 1.0)]).interval_for(400, answer_seconds=0.2) == pytest.approx(4.8)


async def test_cycles_at_the_planned_interval_fit_the_budget() -> None:
    """Sending n requests evenly over interval_for(n), cycle after cycle, stays within budget
    (the limiter absorbs at most rounding at the window edge)."""
    clock = FakeClock()
    limiter = SourceLimiter({"default": SWIFT}, clock)
    n = 150
    interval = limiter.interval_for({"default": n})
    start = clock.monotonic()
    times = []
    for cycle in range(10):  # 1500 requests: more than the hourly budget
        for i in range(n):
            due = start + cycle * interval + i * interval / n
            if due > clock.monotonic():
                clock.advance(due - clock.monotonic())
            await send(limiter)
            times.append(clock.monotonic())
    assert_within(times, SWIFT)
    # no request was held back by more than a millisecond beyond its slot
    slots = [start + k * interval / n for k in range(len(times))]
    assert max(t - s for t, s in zip(times, slots, strict=True)) < 0.01


def test_requests_per_second_is_the_tightest_window() -> None:
    limiter = SourceLimiter({"default": SWIFT, "list": [Window(1, 100.0)]}, FakeClock())
    assert limiter.requests_per_second == pytest.approx(1000 / 3600)  # not 100/60, not the list bucket
    assert Bucket([Window(250, 10.0), Window(1200, 300.0)]).requests_per_second == pytest.approx(4.0)


async def test_waits_counts_delayed_acquisitions() -> None:
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(2, 1.0)]}, clock)
    results = [await send(limiter) for _ in range(5)]
    assert results == [False, False, True, False, True]
    assert limiter.waits == 2
    # time passing by itself is not a wait
    clock.advance(10.0)
    assert await send(limiter) is False
    assert limiter.waits == 2


async def test_the_window_edge_margin_delays_but_is_not_a_wait() -> None:
    """A request due exactly one window after the oldest is held for the 1 ms edge margin
    (a closed window holds at most R requests) without counting as a limiter wait."""
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(2, 1.0)]}, clock)
    t0 = clock.monotonic()
    await send(limiter)
    await send(limiter)
    clock.advance(1.0)
    assert await send(limiter) is False
    assert clock.monotonic() > t0 + 1.0
    assert limiter.waits == 0


async def test_retry_after_is_honoured() -> None:
    """After a 429 with Retry-After: 30, no request goes before now + 30 s."""
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(1000, 1.0)]}, clock, rng=lambda: 0.999)
    now = clock.monotonic()
    pause = limiter.backoff(retry_after=30.0)
    assert 30.0 <= pause <= 31.0  # the hint plus a little jitter, never less
    assert limiter.paused_until == pytest.approx(now + pause)
    assert await send(limiter) is True
    assert clock.monotonic() >= now + 30.0
    assert limiter.waits == 1


def test_retry_after_is_bounded() -> None:
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(1, 1.0)]}, clock, rng=lambda: 0.0)
    assert limiter.backoff(retry_after=10 * MAX_RETRY_AFTER) == MAX_RETRY_AFTER


def test_retry_after_never_shortens_a_running_pause() -> None:
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(1, 1.0)]}, clock, rng=lambda: 0.0)
    limiter.backoff(retry_after=60.0)
    limiter.backoff(retry_after=1.0)
    assert limiter.paused_until == pytest.approx(clock.monotonic() + 60.0)


def test_exponential_backoff_grows_to_the_cap() -> None:
    clock = FakeClock()
    limiter = SourceLimiter(
        {"default": [Window(1, 1.0)]}, clock, backoff_base=1.0, backoff_cap=60.0, rng=lambda: 1.0
    )
    delays = [failure_after_pause(limiter, clock) for _ in range(10)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]


def test_failures_during_a_pause_are_one_episode() -> None:
    """Forty requests in flight fail at once: one failure, one pause, not 2 ** 40 seconds."""
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(1, 1.0)]}, clock, backoff_base=1.0, rng=lambda: 1.0)
    pauses = [limiter.backoff() for _ in range(40)]
    assert limiter.paused_until == pytest.approx(clock.monotonic() + 1.0)
    assert max(pauses) == pytest.approx(1.0)
    assert failure_after_pause(limiter, clock) == 2.0, "the next episode doubles once"


def test_exponential_backoff_is_jittered_within_bounds() -> None:
    rng = random.Random(7)
    clock = FakeClock()
    limiter = SourceLimiter(
        {"default": [Window(1, 1.0)]}, clock, backoff_base=1.0, backoff_cap=60.0, rng=rng.random
    )
    delays = [failure_after_pause(limiter, clock) for _ in range(12)]
    for k, d in enumerate(delays):
        full = min(60.0, 2.0**k)
        assert full / 2 <= d <= full, f"failure {k + 1}: {d} not in [{full / 2}, {full}]"
    # randomised: two limiters with different random streams disagree
    other_clock = FakeClock()
    other = SourceLimiter(
        {"default": [Window(1, 1.0)]},
        other_clock,
        backoff_base=1.0,
        backoff_cap=60.0,
        rng=random.Random(8).random,
    )
    assert [failure_after_pause(other, other_clock) for _ in range(12)] != delays
    # and at the cap the delays still vary (no synchronised retries)
    assert len({round(d, 6) for d in delays[7:]}) > 1


def test_success_resets_the_backoff() -> None:
    clock = FakeClock()
    limiter = SourceLimiter(
        {"default": [Window(1, 1.0)]}, clock, backoff_base=1.0, backoff_cap=300.0, rng=lambda: 1.0
    )
    for _ in range(6):
        failure_after_pause(limiter, clock)
    assert failure_after_pause(limiter, clock) == 64.0
    limiter.succeeded()
    assert failure_after_pause(limiter, clock) == 1.0


async def test_backoff_ordered_while_waiting_is_respected() -> None:
    """A waiter re-checks after sleeping: a back-off ordered meanwhile still holds it."""

    class Clock(FakeClock):
        hook = None

        async def sleep(self, seconds: float) -> None:
            await super().sleep(seconds)
            if self.hook is not None:
                hook, self.hook = self.hook, None
                hook()

    clock = Clock()
    limiter = SourceLimiter({"default": [Window(1, 1.0)]}, clock, rng=lambda: 0.0)
    await send(limiter)
    t0 = clock.monotonic()
    clock.hook = lambda: limiter.backoff(retry_after=20.0)  # ordered during the 1 s wait
    await send(limiter)
    assert clock.monotonic() >= t0 + 1.0 + 20.0


async def test_a_reload_never_resets_a_window():
    """A limiter rebuilt by a reload carries over the old one's log (and pause), so a source that
    has spent its 100/minute cannot send 100 more in the same minute after SIGHUP."""
    clock = FakeClock()
    windows = {"default": (Window(100, 60.0), Window(1000, 3600.0))}
    before = SourceLimiter(windows, clock)
    sent = []
    for _ in range(100):
        await send(before)
        sent.append(clock.monotonic())
    before.backoff(retry_after=5.0)
    after = SourceLimiter(windows, clock, previous=before)
    await send(after)
    sent.append(clock.monotonic())
    assert sent[-1] - sent[0] > 60.0, "the reloaded limiter let a request into a full window"
    assert after.paused_until == before.paused_until


async def test_a_reload_with_new_windows_keeps_the_send_history():
    clock = FakeClock()
    before = SourceLimiter({"default": (Window(10, 1.0),), "list": (Window(5, 1.0),)}, clock)
    for _ in range(10):
        await send(before)
    after = SourceLimiter({"default": (Window(10, 60.0),)}, clock, previous=before)
    t0 = clock.monotonic()
    await send(after)
    assert clock.monotonic() - t0 >= 59.0  # the 10 sends of the last second count in the new minute


def test_back_off_never_overflows():
    """Thousands of failures in a row: the pause stays at its cap (2 ** failures would overflow)."""
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(1, 1.0)]}, clock, backoff_cap=300.0, rng=lambda: 1.0)
    delays = [failure_after_pause(limiter, clock) for _ in range(5000)]
    assert delays[-1] == 300.0
    assert max(delays) == 300.0


# -- the budget as the vendor counts it: on arrival, anywhere between send and answer ---------


async def test_a_request_in_flight_keeps_its_place_in_the_window():
    """2 per second: two requests still waiting for their answers hold the window, however
    long they take; the third goes one window after the first answer."""
    clock = FakeClock()
    limiter = SourceLimiter({"default": [Window(2, 1.0)]}, clock)
    first = await limiter.acquire()
    await limiter.acquire()
    third = asyncio.ensure_future(limiter.acquire())
    clock.advance(5.0)
    await asyncio.sleep(0)
    assert not third.done(), "a third request went while two were in flight"
    limiter.release(first)
    answered = clock.monotonic()
    await third
    assert clock.monotonic() == pytest.approx(answered + 1.0, abs=0.002)
    assert third.result().waited


def max_possible_arrivals(spans: Sequence[tuple[float, float]], per: float) -> int:
    """The most requests the vendor could count in one window of `per` seconds, each request
    arriving anywhere between its send and its answer: the most [send, answer] spans that one
    half-open window [x, x + per) can meet.  The count only falls when x passes an answer, so
    it is largest at some answer time."""
    sends = sorted(s for s, _ in spans)
    answers = sorted(e for _, e in spans)
    best = 0
    for x in answers:
        meeting = bisect.bisect_left(sends, x + per) - bisect.bisect_left(answers, x)
        best = max(best, meeting)
    return best


async def simulate(
    windows: Sequence[Window], latencies: Sequence[float], workers: int
) -> list[tuple[float, float]]:
    """`workers` clients sharing one limiter send requests that take `latencies[i]` each;
    the [send, answer] span of every request, in fake time."""
    clock = FakeClock()
    limiter = SourceLimiter({"default": windows}, clock)
    spans: list[tuple[float, float]] = []
    todo = iter(latencies)

    async def client() -> None:
        for latency in todo:
            ticket = await limiter.acquire()
            sent = clock.monotonic()
            await clock.sleep(latency)
            limiter.release(ticket)
            spans.append((sent, clock.monotonic()))

    await asyncio.gather(*(client() for _ in range(workers)))
    return spans


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    longest=st.sampled_from([0.5, 3.0, 10.0]),
    workers=st.integers(1, 64),
    windows=st.sampled_from(
        [
            (Window(100, 1.0),),
            (Window(60, 60.0),),
            (Window(250, 10.0), Window(1200, 300.0)),
            (Window(100, 60.0), Window(1000, 3600.0)),
            (Window(5, 1.0), Window(50, 30.0)),
        ]
    ),
)
async def test_no_window_is_exceeded_on_arrival_for_any_latencies(seed, longest, workers, windows):
    """10,000 requests with random latencies between 0 and the timeout, from up to 64 clients
    at once: whenever each of them arrives between its send and its answer, no window of the
    vendor ever counts more than its limit."""
    rng = random.Random(seed)
    shape = rng.choice(["uniform", "mostly fast", "bimodal"])
    latencies = []
    for _ in range(10_000):
        if shape == "uniform":
            latencies.append(rng.uniform(0.0, longest))
        elif shape == "mostly fast":
            latencies.append(min(longest, rng.expovariate(20.0)))
        else:
            latencies.append(longest if rng.random() < 0.1 else rng.uniform(0.0, 0.05))
    spans = await simulate(windows, latencies, workers)
    assert len(spans) == 10_000
    for w in windows:
        assert max_possible_arrivals(spans, w.per) <= w.requests, f"window {w} exceeded"


async def test_counting_only_sends_would_exceed_a_window_on_arrival():
    """The check above can fail: a limiter that forgets a request once it is sent lets a
    window of the vendor count more than its limit when answers take time."""
    spans = [(0.0, 0.9), (0.1, 1.0), (1.01, 1.02)]  # 2 per second, as counted at send
    assert max_possible_arrivals(spans, 1.0) == 3
