"""Sliding-window rate limits per credential, and the request log."""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

# (requests, seconds): at most `requests` in any window of `seconds`.
Window = tuple[int, float]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    limit: int | None = None  # the longest window's limit (for X-RateLimit-* headers)
    remaining: int | None = None


class SlidingWindowLimiter:
    """Counts accepted requests per key; refuses one that would exceed any window."""

    def __init__(self) -> None:
        self._accepted: dict[tuple[str, ...], list[float]] = {}

    def clear(self) -> None:
        self._accepted.clear()

    def check(self, key: tuple[str, ...], windows: Sequence[Window], now: float) -> Verdict:
        if not windows:
            return Verdict(allowed=True)
        times = self._accepted.setdefault(key, [])
        longest = max(w for _, w in windows)
        del times[: bisect.bisect_right(times, now - longest)]
        retry = 0.0
        for limit, window in windows:
            inside = len(times) - bisect.bisect_right(times, now - window)
            if inside >= limit:
                # The request that must leave the window before one more fits.
                oldest = times[len(times) - limit]
                retry = max(retry, oldest + window - now)
        limit, window = max(windows, key=lambda lw: lw[1])
        inside = len(times) - bisect.bisect_right(times, now - window)
        if retry > 0.0:
            return Verdict(allowed=False, retry_after=retry, limit=limit, remaining=0)
        bisect.insort(times, now)
        return Verdict(allowed=True, limit=limit, remaining=max(0, limit - inside - 1))


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


@dataclass
class RequestRecord:
    """One vendor request as the simulator saw it. `credential` is never a secret.

    Times are on the simulator's monotonic clock: `received` when the request reached the
    simulator (on loopback: when the client sent it), `time` when it arrived at the vendor,
    which counts it then (later than `received` when the vendor has latency), `answered` when
    the answer's first byte left and `finished` when its last one did (or the connection
    ended). Without latency the four are equal.
    """

    vendor: str
    endpoint: str
    credential: str | None
    time: float  # arrival: when the vendor counted the request (rate limits, max_in_window)
    wall: float  # simulator wall clock at arrival
    streams: tuple[str, ...] = ()
    received: float | None = None  # None: the same as `time`
    answered: float | None = None  # None while in flight
    finished: float | None = None
    latency: float = 0.0  # the answer time drawn for this request (0 without latency)
    status: int | None = None  # HTTP status; None while in flight
    error: str | None = None  # vendor error code when the answer is a failure
    fault: str | None = None  # injected fault kind
    throttled: bool = False  # refused by the simulator's rate limit

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["streams"] = list(self.streams)
        return data


@dataclass
class RequestLog:
    """Every request the simulator saw, for the tests' counting.  A simulator that runs for
    days (`--demo`) keeps only the newest `keep` records, so its memory stays flat."""

    keep: int | None = None
    records: deque[RequestRecord] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.records = deque(self.records, maxlen=self.keep)

    def add(self, record: RequestRecord) -> RequestRecord:
        self.records.append(record)
        return record

    def clear(self) -> None:
        self.records.clear()

    def select(
        self, vendor: str | None = None, endpoint: str | None = None, credential: str | None = None
    ) -> list[RequestRecord]:
        return [
            r
            for r in self.records
            if (vendor is None or r.vendor == vendor)
            and (endpoint is None or r.endpoint == endpoint)
            and (credential is None or r.credential == credential)
        ]


def max_in_window(times: Iterable[float], window_seconds: float) -> int:
    """The most requests found in any half-open window [t, t + window_seconds)."""
    ordered = sorted(times)
    best = 0
    first = 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= window_seconds:
            first += 1
        best = max(best, last - first + 1)
    return best
