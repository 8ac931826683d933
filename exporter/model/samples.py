"""What a poll produces (`Sample`s) and what it polls (`Target`s)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from exporter.model.catalog import CATALOG
from exporter.model.errors import PollError


class UnknownMetricError(ValueError):
    """A provider made a sample the catalog does not know: a bug in that provider."""


@dataclass(frozen=True)
class Sample:
    """One value of a metric in the catalog.

    `labels` are the labels beyond provider/source/stream (e.g. `status` of
    `livestream_status`), sorted so that equal samples compare equal.  The name, the label
    names and the value are checked here, when the provider makes the sample.
    """

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        mdef = CATALOG.get(self.name)
        if mdef is None:
            raise UnknownMetricError(f"{self.name!r} is not a metric of the catalog")
        names = tuple(k for k, _ in self.labels)
        if names != tuple(sorted(mdef.extra_labels)):
            raise UnknownMetricError(
                f"{self.name} takes the extra labels {list(mdef.extra_labels)}, not {list(names)}"
            )
        if not math.isfinite(self.value):
            raise ValueError(f"{self.name}: {self.value} is not a finite value")

    @staticmethod
    def of(metric: str, value: float, /, **labels: str) -> Sample:
        return Sample(metric, float(value), tuple(sorted(labels.items())))

    @property
    def app_level(self) -> bool:
        return CATALOG[self.name].app_level


class TargetSpec(Protocol):
    """What a target's configuration model tells about it (the config layer implements it)."""

    def key(self) -> str:
        """What identifies the target at the vendor, unique within a source."""
        ...

    def stream_label(self) -> str:
        """The `stream` label value."""
        ...


class Origin(StrEnum):
    """Where a target comes from."""

    CONFIG = "configured"
    DISCOVERY = "discovered"
    FILE = "file"
    URL = "url"


SpecT = TypeVar("SpecT", bound=TargetSpec)


@dataclass(frozen=True)
class Target(Generic[SpecT]):
    """One stream to poll, with its provider's target model (`spec`).

    `info` is what discovery learnt beyond the spec (e.g. a livestream's name).
    """

    key: str
    stream: str
    spec: SpecT
    origin: Origin = Origin.CONFIG
    info: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, spec: SpecT, origin: Origin = Origin.CONFIG, info: Mapping[str, str] | None = None
    ) -> Target[SpecT]:
        return cls(key=spec.key(), stream=spec.stream_label(), spec=spec, origin=origin, info=info or {})

    @property
    def discovered(self) -> bool:
        return self.origin is Origin.DISCOVERY


#: per target: its samples, or why it failed
Outcome = Sequence[Sample] | PollError
