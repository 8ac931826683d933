"""Request budgets: several sliding windows at once, plus back-off.

A vendor that documents "100 per minute and 1000 per hour" means both, in any window,
so each window keeps a log of the last `requests` send times and a request may go only
once the oldest of them has left the window.  A log of at most `requests` entries per
window is exact and small (1000 floats for the hourly swiftfederation window).

Back-off is shared by every bucket of a source: when a vendor says "slow down" it
rarely cares which endpoint we were calling.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from exporter.model.clock import Clock
from exporter.model.windows import Window

#: a request may be sent this long after the oldest one in a full window expired, so
#: a closed window of exactly `per` seconds still holds at most `requests` requests.
EPSILON = 0.001
#: a hold-up this short is the edge margin above (a cycle planned exactly at the budget
#: meets it every time) or timer jitter, not the limiter holding a poll back: not a wait
WAIT_TOLERANCE = 0.01
MAX_RETRY_AFTER = 3600.0


class _WindowLog:
    __slots__ = ("log", "window")

    def __init__(self, window: Window) -> None:
        self.window = window
        self.log: deque[float] = deque(maxlen=window.requests)

    def earliest(self) -> float:
        if len(self.log) < self.window.requests:
            return -math.inf
        return self.log[0] + self.window.per + EPSILON


class Bucket:
    """The windows of one group of endpoints (e.g. Tencent's get_room_list at 10/s)."""

    def __init__(self, windows: Sequence[Window]) -> None:
        if not windows:
            raise ValueError("a bucket needs at least one window")
        self.windows = tuple(sorted(windows, key=lambda w: (w.per, w.requests)))
        self._logs = [_WindowLog(w) for w in self.windows]

    @property
    def requests_per_second(self) -> float:
        return min(w.rate for w in self.windows)

    def interval_for(self, requests_per_cycle: int) -> float:
        """The shortest cycle that sends `requests_per_cycle` requests within every window."""
        if requests_per_cycle <= 0:
            return 0.0
        return max(requests_per_cycle * w.per / w.requests for w in self.windows)

    def earliest(self) -> float:
        return max(log.earliest() for log in self._logs)

    def record(self, at: float) -> None:
        for log in self._logs:
            log.log.append(at)

    def history(self) -> list[float]:
        """The last send times, oldest first: the longest log holds every other log's entries."""
        return list(max(self._logs, key=lambda log: log.window.requests).log)


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
        """`previous` is the limiter of the same source before a reload: its send times and
        back-off carry over, so a reload can never reset a vendor's window."""
        if "default" not in buckets:
            raise ValueError("a source needs a 'default' bucket")
        self.buckets = {name: Bucket(w) for name, w in buckets.items()}
        self._clock = clock
        self._lock = asyncio.Lock()
        self._paused_until = -math.inf
        self._failures = 0
        if previous is not None:
            for name, bucket in self.buckets.items():
                if name in previous.buckets:
                    for at in previous.buckets[name].history():
                        bucket.record(at)
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

    def interval_for(self, requests: Mapping[str, int]) -> float:
        """The shortest cycle for `requests` per bucket.  A cycle sends them one after
        another (Tencent's room list, then its rooms), so the buckets' times add up."""
        return sum(self.buckets[b].interval_for(n) for b, n in requests.items())

    async def acquire(self, bucket: str = "default") -> bool:
        """Wait until a request in `bucket` fits every window, then count it.

        Returns whether it had to wait.  Waits re-check, because a back-off may
        have been ordered while we slept.
        """
        b = self.buckets[bucket]
        waited = False
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                ready = max(b.earliest(), self._paused_until)
                if ready <= now:
                    break
                waited = waited or ready - now > WAIT_TOLERANCE
                await self._clock.sleep(ready - now)
            b.record(self._clock.monotonic())
            self.sent += 1
        if waited:
            self.waits += 1
        return waited

    def backoff(self, retry_after: float | None = None) -> float:
        """Pause the source; honour the vendor's Retry-After, else exponential with jitter.

        Returns the pause in seconds.
        """
        self._failures += 1
        if retry_after is not None and retry_after >= 0:
            delay = min(retry_after, MAX_RETRY_AFTER)
            delay += self._rng() * min(1.0, 0.1 * delay)
        else:
            full = min(self._backoff_cap, self._backoff_base * 2 ** (self._failures - 1))
            delay = full / 2 + self._rng() * full / 2
        self._paused_until = max(self._paused_until, self._clock.monotonic() + delay)
        return delay

    def pause_for_window(self, bucket: str = "default") -> None:
        """The vendor said the budget is spent (e.g. X-RateLimit-Remaining: 0): wait until
        the shortest window of `bucket` has passed."""
        seconds = min(w.per for w in self.buckets[bucket].windows)
        self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)

    def succeeded(self) -> None:
        self._failures = 0
