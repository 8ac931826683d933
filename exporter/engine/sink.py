"""Where the engine reports what it learns: the store implements `PollSink`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from exporter.model.errors import PollError
from exporter.model.samples import Sample, Target


class PollSink(Protocol):
    def set_targets(self, source: str, targets: Sequence[Target[Any]]) -> None:
        """The source's target list now; targets no longer listed lose all their series."""

    def record_success(
        self, source: str, key: str, samples: Sequence[Sample], *, now: float, mono: float, duration: float
    ) -> None:
        """A target polled successfully: its values are `samples`."""

    def record_failure(self, source: str, key: str, error: PollError, *, duration: float) -> None:
        """A target's poll failed: up=0, previous values kept until stale; gone drops them."""

    def record_app(self, source: str, samples: Sequence[Sample], *, mono: float) -> None:
        """The source's app-level values."""

    def mark_attempted(self, source: str) -> None:
        """The source has tried its first requests (readiness)."""

    def expire(self, mono: float) -> None:
        """Drop values not refreshed within their source's `stale_after`."""

    def set_stale_after(self, source: str, seconds: float) -> None:
        """How long the source's values live without a successful poll."""

    def changed(self) -> None:
        """Something the self-metrics show changed (request counters, the plan)."""
