"""What a provider is: config models, budgets, and `poll` from targets to samples.

A provider builds requests through the source's `HttpClient` (which owns the budget,
timeouts and request metrics) and turns answers into `Sample`s or a typed `PollError`
per target.  It never touches metrics, logs of responses or scheduling: the runner in
`scheduler.py` owns success, duration, back-off and series removal for all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from exporter.config import SourceBase, TargetBase
from exporter.errors import PollError
from exporter.ratelimit import Window

if TYPE_CHECKING:
    import structlog

    from exporter.clock import Clock
    from exporter.http import HttpClient


@dataclass(frozen=True)
class Sample:
    """One value of a metric in the catalog (`exporter.metrics.CATALOG`).

    `labels` are extra labels beyond provider/source/stream, e.g. `status` of
    `livestream_status`; they are sorted at construction so equal samples compare equal.
    """

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def of(metric: str, value: float, /, **labels: str) -> Sample:
        return Sample(metric, float(value), tuple(sorted(labels.items())))


@dataclass(frozen=True)
class Target:
    """One stream to poll: from config (`spec` set) or discovered at run time."""

    key: str
    stream: str
    spec: TargetBase | None = None
    discovered: bool = False
    #: what discovery learnt about it, for providers that need more than the key
    params: Mapping[str, str] = field(default_factory=dict)


#: per target: its samples, or why it failed
Outcome = Sequence[Sample] | PollError


class Provider(ABC):
    """Base of the five vendors (and of the test provider)."""

    name: ClassVar[str]
    Source: ClassVar[type[SourceBase]]
    default_base_url: ClassVar[str | None] = None
    #: bucket -> windows; "default" is what `rate_limit:` in the config overrides
    default_rate_limits: ClassVar[Mapping[str, tuple[Window, ...]]]
    #: whether `poll_app` publishes source-level series
    has_app_metrics: ClassVar[bool] = False
    #: the bucket discovery requests are counted in
    discovery_bucket: ClassVar[str] = "default"

    def __init__(
        self,
        source: SourceBase,
        *,
        base_url: str,
        http: HttpClient,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.source = source
        self.base_url = base_url
        self.http = http
        self.clock = clock
        self.log = log
        #: requests the last discovery took (pages), for planning the interval
        self.discovery_requests = 1

    @classmethod
    def base_url_for(cls, source: SourceBase) -> str | None:
        """The default URL for a source that sets no `base_url` (may depend on e.g. region)."""
        return cls.default_base_url

    def configured_targets(self) -> list[Target]:
        return [Target(key=t.key(), stream=t.stream_label(), spec=t) for t in self.source.targets]

    def batch_size(self) -> int:
        """How many targets one `poll` call may answer."""
        return 1

    def requests_per_cycle(self, batches: int) -> dict[str, int]:
        """Requests one cycle sends, per bucket: what the effective interval is planned on."""
        out = {"default": batches + (1 if self.has_app_metrics else 0)}
        if self.source.discovery_enabled():
            out[self.discovery_bucket] = out.get(self.discovery_bucket, 0) + self.discovery_requests
        return out

    async def discover(self) -> list[Target]:
        """The targets the vendor lists now; only called when the source enables discovery."""
        raise NotImplementedError(f"{self.name} has no discovery")

    @abstractmethod
    async def poll(self, batch: Sequence[Target]) -> Mapping[str, Outcome]:
        """Poll `batch` (at most `batch_size()` targets), returning an outcome per target key.

        Raising a PollError fails every target of the batch; a key left out of the
        mapping fails with a parse error.
        """

    async def poll_app(self) -> Sequence[Sample]:
        """Source-level samples (`livestream_app_*`); only called when `has_app_metrics`."""
        return ()

    def skipped(self, points: int) -> None:
        """Count vendor data points skipped as malformed (never fatal to the poll)."""
        if points:
            self.http.stats.skipped_points += points
            self.log.debug("skipped malformed data points", points=points)

    async def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release anything beyond the HTTP client (which the runner closes)."""
