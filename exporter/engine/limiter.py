"""Request budgets as the vendor counts them: several sliding windows at once, plus back-off.

A vendor that documents "100 per minute and 1000 per hour" means both, in any window, and
it counts a request when the request *arrives*, which can be any time between our send and
its answer.  So a request occupies every window of its bucket from the moment it is sent
until its answer (or timeout) plus the window's length: a new request may go only while
fewer than `requests` are in flight or finished within the last `per` seconds.  Then no
window can ever hold more than `requests` arrivals, whatever the latencies: of any
`requests + 1` arrivals inside one window, the last one sent would have found all the
others in flight or finished less than `per` before it was sent.

Completions are logged in the order they happen, at most `requests` per window, so the log
is exact and small (1000 floats for the hourly swiftfederation window).

Back-off is shared by every bucket of a source: when a vendor says "slow down" it rarely
cares which endpoint we were calling.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from exporter.model.clock import Clock
from exporter.model.windows import Window

#: a request may be sent this long after the entry it waits for has left the window, so a
#: closed window of exactly `per` seconds still holds at most `requests` requests
EPSILON = 0.001
#: a hold-up this short is the edge margin above (a cycle planned exactly at the budget
#: meets it every time) or timer jitter, not the limiter holding a poll back: not a wait
WAIT_TOLERANCE = 0.01
MAX_RETRY_AFTER = 3600.0
#: 2 ** 30 seconds is far beyond any cap: the exponent stops growing there
_MAX_EXPONENT = 30


@dataclass(frozen=True)
class Ticket:
    """One request's place in its bucket, from send until `release`."""

    bucket: str
    number: int
    waited: bool


class Bucket:
    """The windows of one group of endpoints (e.g. Tencent's get_room_list at 10/s)."""

    def __init__(self, windows: Sequence[Window]) -> None:
        if not windows:
            raise ValueError("a bucket needs at least one window")
        self.windows = tuple(sorted(windows, key=lambda w: (w.per, w.requests)))
        #: completion times, oldest first: enough for the largest window
        self._done: deque[float] = deque(maxlen=max(w.requests for w in self.windows))
        self.in_flight = 0

    @property
    def requests_per_second(self) -> float:
        return min(w.rate for w in self.windows)

    def interval_for(
        self, requests_per_cycle: int, answer_seconds: float = 0.0, windows: Sequence[Window] | None = None
    ) -> float:
        """The shortest cycle that sends `requests_per_cycle` requests within every window
        (`windows` instead of the bucket's own: a replica's share), each occupying its
        window for `answer_seconds` longer than the window itself; inf if a window is 0."""
        if requests_per_cycle <= 0:
            return 0.0
        return max(
            requests_per_cycle * (w.per + answer_seconds) / w.requests if w.requests > 0 else math.inf
            for w in (self.windows if windows is None else windows)
        )

    def earliest(self, now: float, windows: Sequence[Window] | None = None) -> float:
        """When a new request fits every window (`windows` instead of the bucket's own: a
        replica's share of them): `now` or later; inf while only a completion of a request
        in flight can make room."""
        ready = -math.inf
        done = self._done
        for w in self.windows if windows is None else windows:
            # the new request and the finished ones still in the window must fit beside those in flight
            room = w.requests - self.in_flight
            if room <= 0:
                return math.inf
            if len(done) >= room:
                # completions are in time order: the room-th most recent one decides
                leaves = done[len(done) - room] + w.per + EPSILON
                if leaves > now:
                    ready = max(ready, leaves)
        return ready

    def sent(self) -> None:
        self.in_flight += 1

    def finished(self, at: float) -> None:
        self.in_flight -= 1
        self._done.append(at)

    def history(self) -> list[float]:
        """The completion times it remembers, oldest first."""
        return list(self._done)


class SourceLimiter:
    """All budgets of one source, with the back-off state they share."""

    def __init__(
        self,
        buckets: Mapping[str, Sequence[Window]],
        clock: Clock,
        *,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        rng: Callable[[], float] = random.random,
        previous: SourceLimiter | None = None,
    ) -> None:
        """`previous` is the limiter of the same source before a reload (its requests have
        all finished): its history and back-off carry over, so a reload never resets a
        vendor's window."""
        if "default" not in buckets:
            raise ValueError("a source needs a 'default' bucket")
        self.buckets = {name: Bucket(w) for name, w in buckets.items()}
        self._clock = clock
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._paused_until = -math.inf
        self._failures = 0
        self._numbers = itertools.count()
        if previous is not None:
            for name, bucket in self.buckets.items():
                if name in previous.buckets:
                    for at in previous.buckets[name].history():
                        bucket.sent()
                        bucket.finished(at)
            self._paused_until = previous._paused_until
            self._failures = previous._failures
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng
        self.waits = 0
        self.sent = 0

    @property
    def requests_per_second(self) -> float:
        """The budget in force for the main endpoints."""
        return self.buckets["default"].requests_per_second

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def interval_for(self, requests: Mapping[str, int], answer_seconds: float = 0.0) -> float:
        """The shortest cycle for `requests` per bucket: the buckets' requests go out side by
        side, so the slowest bucket decides."""
        return max(
            (self.buckets[b].interval_for(n, answer_seconds) for b, n in requests.items()), default=0.0
        )

    async def acquire(self, bucket: str = "default") -> Ticket:
        """Wait until a request in `bucket` fits every window, then count it as sent.

        The caller must `release` the ticket when the answer (or the timeout) arrives.
        Waits re-check, because a back-off may have been ordered meanwhile; requests wait
        their turn in order.
        """
        b = self.buckets[bucket]
        waited = False
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                ready = max(b.earliest(now), self._paused_until)
                if ready <= now:
                    break
                if math.isinf(ready):
                    # only an answer to a request in flight can make room
                    waited = True
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                waited = waited or ready - now > WAIT_TOLERANCE
                await self._clock.sleep(ready - now)
            b.sent()
            self.sent += 1
        if waited:
            self.waits += 1
        return Ticket(bucket, next(self._numbers), waited)

    def release(self, ticket: Ticket) -> None:
        """The request's answer (or timeout) has arrived: it stays in its windows `per` longer."""
        self.buckets[ticket.bucket].finished(self._clock.monotonic())
        self._changed.set()

    def backoff(self, retry_after: float | None = None) -> float:
        """Pause the source; honour the vendor's Retry-After, else exponential with jitter.

        Failures of requests that were already in flight when a pause began belong to the
        same episode: they do not double the pause again.  Returns the pause in seconds.
        """
        now = self._clock.monotonic()
        if retry_after is None and now < self._paused_until:
            return self._paused_until - now
        self._failures += 1
        if retry_after is not None and retry_after >= 0:
            delay = min(retry_after, MAX_RETRY_AFTER)
            delay += self._rng() * min(1.0, 0.1 * delay)
        else:
            exponent = min(self._failures - 1, _MAX_EXPONENT)
            full = min(self._backoff_cap, self._backoff_base * 2.0**exponent)
            delay = full / 2 + self._rng() * full / 2
        self._paused_until = max(self._paused_until, now + delay)
        return delay

    def pause_for_window(self, bucket: str = "default") -> None:
        """The vendor said the budget is spent (e.g. X-RateLimit-Remaining: 0): wait until
        the shortest window of `bucket` has passed."""
        seconds = min(w.per for w in self.buckets[bucket].windows)
        self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)

    def succeeded(self) -> None:
        self._failures = 0
