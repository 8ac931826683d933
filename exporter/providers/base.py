"""What a provider is: its config models, budgets, and `poll` from targets to samples.

A provider builds requests through a `Transport` (the engine's HTTP client, which owns the
budget, timeouts and request metrics) and turns answers into `Sample`s or a typed
`PollError` per target.  It never touches metrics, logs of responses or scheduling: the
engine owns success, duration, back-off and series removal for all of them.

`Provider` is generic over its source and target models, so a vendor module reads
`self.source.credentials.api_key` and `target.spec.project_id` fully typed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import structlog

from exporter.config.registry import get_spec
from exporter.config.schema import SourceBase, TargetBase
from exporter.model.clock import Clock
from exporter.model.samples import Outcome, Sample, Target
from exporter.model.windows import Window
from exporter.providers.transport import Transport

S = TypeVar("S", bound=SourceBase)
T = TypeVar("T", bound=TargetBase)


class Provider(ABC, Generic[S, T]):
    """Base of the vendors (and of the test provider)."""

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
        source: S,
        *,
        base_url: str,
        http: Transport,
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
    def source_model(cls) -> type[SourceBase]:
        return cls.Source

    @classmethod
    def rate_limits(cls) -> Mapping[str, tuple[Window, ...]]:
        return cls.default_rate_limits

    @classmethod
    def base_url_for(cls, source: SourceBase) -> str | None:
        """The default URL for a source that sets no `base_url` (may depend on e.g. region)."""
        return cls.default_base_url

    def configured_targets(self) -> list[Target[T]]:
        targets: Sequence[Any] = self.source.targets
        return [Target.of(t) for t in targets]

    def app_metrics(self) -> bool:
        """Whether each cycle calls `poll_app`."""
        return self.has_app_metrics

    def batch_size(self) -> int:
        """How many targets one `poll` call may answer."""
        return 1

    def requests_per_cycle(self, batches: int) -> dict[str, int]:
        """Requests one cycle sends, per bucket: what the effective interval is planned on."""
        out = {"default": batches + (1 if self.app_metrics() else 0)}
        if self.source.discovery_enabled():
            out[self.discovery_bucket] = out.get(self.discovery_bucket, 0) + self.discovery_requests
        return out

    async def discover(self) -> list[Target[T]]:
        """The targets the vendor lists now; only called when the source enables discovery."""
        raise NotImplementedError(f"{self.name} has no discovery")

    @abstractmethod
    async def poll(self, batch: Sequence[Target[T]]) -> Mapping[str, Outcome]:
        """Poll `batch` (at most `batch_size()` targets), returning an outcome per target key.

        Raising a PollError fails every target of the batch; a key left out of the
        mapping fails with a parse error.
        """

    async def poll_app(self) -> Sequence[Sample]:
        """Source-level samples (`livestream_app_*`); only called when `app_metrics()`."""
        return ()

    async def close(self) -> None:
        """Release anything beyond the HTTP client (which the engine closes)."""


def provider_class(name: str) -> type[Provider[Any, Any]]:
    """The registered provider class of `name` (KeyError when none)."""
    cls = get_spec(name)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"provider {name!r} is registered with a class that is not a Provider")
    return cls
