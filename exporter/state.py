"""What the exporter knows: the latest snapshot of every target, and per-source counters.

Polls replace a target's `TargetState` as a whole (it is frozen), so `/metrics` reads a
consistent snapshot without locks.  Every change bumps `Store.generation`, which is how
the web layer knows when its cached rendering is out of date.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.errors import PollError
    from exporter.providers.base import Sample, Target
    from exporter.ratelimit import SourceLimiter

#: request duration histogram buckets (seconds): vendors answer in 50 ms to 10 s
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class TargetState:
    target: Target
    samples: tuple[Sample, ...] = ()
    up: bool = False
    attempted: bool = False
    last_success: float | None = None  # wall clock, for the metric
    last_success_mono: float | None = None  # monotonic, for staleness
    poll_duration: float | None = None
    error: str | None = None  # the PollError kind of the last failure
    error_message: str | None = None
    gone: bool = False

    @property
    def health(self) -> str:
        if self.gone:
            return "gone"
        if not self.attempted:
            return "pending"
        return "up" if self.up else "down"


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


@dataclass
class SourceStats:
    """Exporter self-metrics of one source; survives reloads of an unchanged source."""

    provider: str
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    durations: dict[str, Histogram] = field(default_factory=dict)
    throttled: int = 0
    limiter_waits: int = 0
    skipped_points: int = 0
    budget_rps: float = 0.0
    interval: float = 0.0
    targets: int = 0


@dataclass
class SourceState:
    name: str
    provider: str
    stale_after: float
    targets: dict[str, TargetState] = field(default_factory=dict)
    app_samples: tuple[Sample, ...] = ()
    app_last_success_mono: float | None = None
    attempted: bool = False
    stats: SourceStats | None = None
    #: the source's rate limiter, kept across reloads so its windows are never reset
    limiter: SourceLimiter | None = None
    #: the last discovery's targets and page count, kept across reloads
    discovered: list[Target] = field(default_factory=list)
    discovery_requests: int = 1
    #: how long the last complete cycle really took (monotonic seconds)
    last_cycle_seconds: float = 0.0


class Store:
    def __init__(self) -> None:
        self.sources: dict[str, SourceState] = {}
        self.generation = 0

    def bump(self) -> None:
        self.generation += 1

    # -- sources ----------------------------------------------------------------------
    def set_sources(self, sources: Iterable[SourceState]) -> None:
        """Replace the set of sources (on start and reload); removed sources vanish."""
        self.sources = {s.name: s for s in sources}
        self.bump()

    # -- targets ----------------------------------------------------------------------
    def set_targets(self, source: str, targets: Sequence[Target]) -> None:
        """Make `targets` the source's target list, keeping what is known of those that stay.

        Targets no longer listed (a discovered stream that vanished) are removed with
        all their series.
        """
        s = self.sources[source]
        old = s.targets
        new: dict[str, TargetState] = {}
        for t in targets:
            prev = old.get(t.key)
            new[t.key] = replace(prev, target=t) if prev is not None else TargetState(target=t)
        s.targets = new
        self.bump()

    def record_success(
        self, source: str, key: str, samples: Sequence[Sample], *, now: float, mono: float, duration: float
    ) -> None:
        s = self.sources[source]
        prev = s.targets.get(key)
        if prev is None:
            return  # removed while its poll was in flight
        s.targets[key] = replace(
            prev,
            samples=tuple(samples),
            up=True,
            attempted=True,
            last_success=now,
            last_success_mono=mono,
            poll_duration=duration,
            error=None,
            error_message=None,
            gone=False,
        )
        self.bump()

    def record_failure(self, source: str, key: str, error: PollError, *, duration: float) -> None:
        """A failed poll: up=0, previous values kept (until stale); gone drops them."""
        s = self.sources[source]
        prev = s.targets.get(key)
        if prev is None:
            return
        gone = error.kind == "gone"
        s.targets[key] = replace(
            prev,
            samples=() if gone else prev.samples,
            up=False,
            attempted=True,
            poll_duration=duration,
            error=error.kind,
            error_message=error.message,
            gone=gone,
        )
        self.bump()

    def record_app(self, source: str, samples: Sequence[Sample], *, mono: float) -> None:
        s = self.sources[source]
        s.app_samples = tuple(samples)
        s.app_last_success_mono = mono
        self.bump()

    def mark_attempted(self, source: str) -> None:
        s = self.sources.get(source)
        if s is not None and not s.attempted:
            s.attempted = True
            self.bump()

    def expire(self, mono: float) -> None:
        """Drop the values of targets without a successful poll for `stale_after`."""
        changed = False
        for s in self.sources.values():
            for key, t in list(s.targets.items()):
                if (
                    t.samples
                    and t.last_success_mono is not None
                    and mono - t.last_success_mono > s.stale_after
                ):
                    s.targets[key] = replace(t, samples=())
                    changed = True
            if (
                s.app_samples
                and s.app_last_success_mono is not None
                and mono - s.app_last_success_mono > s.stale_after
            ):
                s.app_samples = ()
                changed = True
        if changed:
            self.bump()

    def ready(self) -> bool:
        return bool(self.sources) and all(s.attempted for s in self.sources.values())
