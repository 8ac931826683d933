"""Exporter self-metrics of one source, written by the engine and read by the exposition."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

#: request duration histogram buckets (seconds): vendors answer in 50 ms to 10 s
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(DURATION_BUCKETS, value)
        if i < len(self.buckets):
            self.buckets[i] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip(DURATION_BUCKETS, self.buckets, strict=True):
            running += n
            out.append((repr(bound), float(running)))
        out.append(("+Inf", float(self.count)))
        return out


@dataclass(frozen=True)
class TargetListStats:
    """One target file's or URL's state, for the target_source families."""

    up: bool
    last_success: float | None
    targets: int


@dataclass
class SourceStats:
    """Counters and gauges of one source; they survive reloads of the source."""

    provider: str
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    durations: dict[str, Histogram] = field(default_factory=dict)
    throttled: int = 0
    limiter_waits: int = 0
    skipped_points: int = 0
    budget_rps: float = 0.0
    interval: float = 0.0
    targets: int = 0
    #: requests sent and not yet answered
    in_flight: int = 0
    #: the last cycle's duration from its start to its last answer; while a cycle runs past
    #: its plan, its running time
    cycle_seconds: float = 0.0
    #: target files and the URL by origin (the path or the URL)
    target_lists: dict[str, TargetListStats] = field(default_factory=dict)

    def request_done(self, endpoint: str, code: str, duration: float) -> None:
        self.requests[(endpoint, code)] += 1
        self.durations.setdefault(endpoint, Histogram()).observe(duration)


@dataclass
class ClusterStats:
    """One replica's view of its cluster, for the cluster families and the landing page."""

    replica: str
    members: tuple[str, ...] = ()
    redis_up: bool = False
    #: targets this replica owns, per source
    owned: dict[str, int] = field(default_factory=dict)
    #: sources whose lease this replica holds
    leading: frozenset[str] = frozenset()
    #: per source: every member's number of targets, and the lease holder (the landing page)
    assigned: dict[str, dict[str, int]] = field(default_factory=dict)
    leaders: dict[str, str] = field(default_factory=dict)
