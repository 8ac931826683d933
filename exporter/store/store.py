"""What the exporter knows: the latest snapshot of every target of every source.

Polls replace a target's `TargetState` as a whole (it is frozen), so `/metrics` reads a
consistent snapshot without locks.  The store is the engine's `PollSink`.

When a poll lands, the store also renders the target's exposition lines once (its row in
`Store.rows`, see `exporter.store.rows`): a scrape then only joins cached bytes and rebuilds
the blocks that changed.  Every change bumps `Store.generation`.  Values expire through a
heap of deadlines (`exporter.store.expiry`), so `expire` costs nothing while none is due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.engine.stats import ClusterStats, SourceStats
from exporter.model.errors import GoneError, PollError
from exporter.model.samples import Sample, Target
from exporter.store.expiry import Deadlines, Row
from exporter.store.lines import ROW_FAMILIES, Health, row_lines
from exporter.store.rows import BLOCK_SLOTS, CHUNK_BLOCKS, GZIP_LEVEL, RowTable

#: deadlines are checked this much early, so that float rounding never makes one late
_EARLY = 1e-6


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
    #: its row in `Store.rows`
    slot: int = -1

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
    #: the row of its app-level values in `Store.rows`
    app_slot: int = -1


class Store:
    """Every source's targets and values, and their rendered lines in `rows`.

    `block_slots`, `chunk_blocks` and `gzip_level` tune the row table (see `RowTable`).
    """

    def __init__(
        self,
        *,
        block_slots: int = BLOCK_SLOTS,
        chunk_blocks: int = CHUNK_BLOCKS,
        gzip_level: int = GZIP_LEVEL,
    ) -> None:
        self.sources: dict[str, SourceState] = {}
        #: this replica's view of its cluster; None when it runs alone
        self.cluster: ClusterStats | None = None
        self.generation = 0
        self.rows = RowTable(
            len(ROW_FAMILIES), block_slots=block_slots, chunk_blocks=chunk_blocks, gzip_level=gzip_level
        )
        self._deadlines = Deadlines()

    def bump(self) -> None:
        self.generation += 1

    # -- sources ----------------------------------------------------------------------
    def keep_sources(self, sources: Iterable[tuple[str, str, SourceStats]]) -> None:
        """The sources of the configuration now, as (name, provider, stats).

        A source that keeps its name and provider keeps its targets' last values; a new
        one starts empty and not yet attempted; one that is gone vanishes with its series.
        """
        wanted = {name: (provider, stats) for name, provider, stats in sources}  # the last one counts
        new: dict[str, SourceState] = {}
        for name, (provider, stats) in wanted.items():
            prev = self.sources.get(name)
            if prev is not None and prev.provider == provider:
                prev.stats = stats
                new[name] = prev
            else:
                new[name] = SourceState(
                    name=name, provider=provider, stats=stats, app_slot=self.rows.allocate()
                )
        for name, old in self.sources.items():
            if new.get(name) is not old:
                self._release(old)
        self.sources = new
        self.bump()

    def _release(self, s: SourceState) -> None:
        for key, t in s.targets.items():
            self._forget(s.name, key, t)
        self.rows.release(s.app_slot)
        self._deadlines.cancel((s.name, None))

    def _forget(self, source: str, key: str, t: TargetState) -> None:
        """The target is removed: its row and its deadline go."""
        self.rows.release(t.slot)
        self._deadlines.cancel((source, key))

    def set_stale_after(self, source: str, seconds: float) -> None:
        s = self.sources.get(source)
        if s is None:
            return
        if seconds < s.stale_after:  # the deadlines in the heap may come too late now
            for key, t in s.targets.items():
                if t.samples and t.last_success_mono is not None:
                    self._deadlines.schedule((source, key), t.last_success_mono + seconds - _EARLY)
            if s.app_samples and s.app_last_success_mono is not None:
                self._deadlines.schedule((source, None), s.app_last_success_mono + seconds - _EARLY)
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
            prev = new.get(t.key) or old.get(t.key)
            if prev is None:
                new[t.key] = TargetState(target=t, slot=self.rows.allocate())
            elif prev.target is t:
                new[t.key] = prev
            else:
                new[t.key] = state = replace(prev, target=t)
                if t.stream != prev.target.stream:
                    self._render(s, state)
        for key, state in old.items():
            if key not in new:
                self._forget(source, key, state)
        s.targets = new
        self.bump()

    def record_success(
        self, source: str, key: str, samples: Sequence[Sample], *, now: float, mono: float, duration: float
    ) -> None:
        s = self.sources[source]
        prev = s.targets.get(key)
        if prev is None:
            return  # removed while its poll was in flight
        s.targets[key] = state = replace(
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
        self._render(s, state)
        self._watch((source, key), state.samples, mono, s.stale_after)
        self.bump()

    def record_failure(self, source: str, key: str, error: PollError, *, duration: float) -> None:
        """A failed poll: up=0, previous values kept (until stale); gone drops them."""
        s = self.sources[source]
        prev = s.targets.get(key)
        if prev is None:
            return
        gone = isinstance(error, GoneError)
        s.targets[key] = state = replace(
            prev,
            samples=() if gone else prev.samples,
            up=False,
            attempted=True,
            poll_duration=duration,
            error=str(error.kind),
            error_message=error.message,
            gone=gone,
        )
        self._render(s, state)
        self.bump()

    def record_app(self, source: str, samples: Sequence[Sample], *, mono: float) -> None:
        s = self.sources[source]
        s.app_samples = tuple(samples)
        s.app_last_success_mono = mono
        self._render_app(s)
        self._watch((source, None), s.app_samples, mono, s.stale_after)
        self.bump()

    def mark_attempted(self, source: str) -> None:
        s = self.sources.get(source)
        if s is not None and not s.attempted:
            s.attempted = True
            self.bump()

    def expire(self, mono: float) -> None:
        """Drop the values of targets without a successful poll for `stale_after`.

        Only the rows whose deadline has come are looked at: nothing while none is due.
        """
        changed = False
        for row in self._deadlines.due(mono):
            source, key = row
            s = self.sources.get(source)
            if s is None:
                continue
            if key is None:
                last, has_values = s.app_last_success_mono, bool(s.app_samples)
            else:
                t = s.targets.get(key)
                if t is None:
                    continue
                last, has_values = t.last_success_mono, bool(t.samples)
            if not has_values or last is None:
                continue
            if mono - last <= s.stale_after:  # a later success, or a longer stale_after
                self._deadlines.schedule(row, last + s.stale_after - _EARLY)
                continue
            changed = True
            if key is None:
                s.app_samples = ()
                self._render_app(s)
            else:
                s.targets[key] = state = replace(s.targets[key], samples=())
                self._render(s, state)
        if changed:
            self.bump()

    def ready(self) -> bool:
        return bool(self.sources) and all(s.attempted for s in self.sources.values())

    # -- rendering ------------------------------------------------------------------------
    def _render(self, s: SourceState, t: TargetState) -> None:
        """Render the target's lines into its row: none when gone, health once attempted."""
        if t.gone:
            self.rows.set(t.slot, {})
            return
        health = Health(t.up, t.last_success, t.poll_duration) if t.attempted else None
        base = (("provider", s.provider), ("source", s.name), ("stream", t.target.stream))
        self.rows.set(t.slot, row_lines(base, t.samples, health))

    def _render_app(self, s: SourceState) -> None:
        self.rows.set(
            s.app_slot, row_lines((("provider", s.provider), ("source", s.name)), s.app_samples, None)
        )

    def _watch(self, row: Row, samples: Sequence[Sample], mono: float, stale_after: float) -> None:
        """Values just landed: make sure the row's expiry is scheduled (a pending deadline,
        earlier than this one, is checked against the new success when it comes up)."""
        if samples and not self._deadlines.pending(row):
            self._deadlines.schedule(row, mono + stale_after - _EARLY)
