"""What the exporter knows: the latest snapshot of every target of every source.

Polls replace a target's `TargetState` as a whole (it is frozen), so `/metrics` reads a
consistent snapshot without locks.  Every change bumps `Store.generation`, which is how
the exposition knows when its cached rendering is out of date.  The store is the
engine's `PollSink`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.engine.stats import SourceStats
from exporter.model.errors import GoneError, PollError
from exporter.model.samples import Sample, Target


@dataclass(frozen=True)
class TargetState:
    target: Target[Any]
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
class SourceState:
    name: str
    provider: str
    stats: SourceStats
    stale_after: float = 300.0
    targets: dict[str, TargetState] = field(default_factory=dict)
    app_samples: tuple[Sample, ...] = ()
    app_last_success_mono: float | None = None
    attempted: bool = False


class Store:
    def __init__(self) -> None:
        self.sources: dict[str, SourceState] = {}
        self.generation = 0

    def bump(self) -> None:
        self.generation += 1

    # -- sources ----------------------------------------------------------------------
    def keep_sources(self, sources: Iterable[tuple[str, str, SourceStats]]) -> None:
        """The sources of the configuration now, as (name, provider, stats).

        A source that keeps its name and provider keeps its targets' last values; a new
        one starts empty and not yet attempted; one that is gone vanishes with its series.
        """
        new: dict[str, SourceState] = {}
        for name, provider, stats in sources:
            prev = self.sources.get(name)
            if prev is not None and prev.provider == provider:
                prev.stats = stats
                new[name] = prev
            else:
                new[name] = SourceState(name=name, provider=provider, stats=stats)
        self.sources = new
        self.bump()

    def set_stale_after(self, source: str, seconds: float) -> None:
        s = self.sources.get(source)
        if s is not None:
            s.stale_after = seconds

    def changed(self) -> None:
        self.bump()

    def set_targets(self, source: str, targets: Sequence[Target[Any]]) -> None:
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
        gone = isinstance(error, GoneError)
        s.targets[key] = replace(
            prev,
            samples=() if gone else prev.samples,
            up=False,
            attempted=True,
            poll_duration=duration,
            error=str(error.kind),
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
