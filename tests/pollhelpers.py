"""Helpers for driving SourceRunners by hand on a FakeClock against the real FakeVendor.

`Rig` builds the runners exactly as the daemon does (config file -> load_config ->
Store + SourceRunner), but no scheduler: the test calls `run_cycle()` itself and moves
fake time, while every request still goes over real HTTP to the fake vendor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.loader import Config, load_config
from exporter.engine.runner import SourceMemory, SourceRunner
from exporter.model.clock import Clock, FakeClock
from exporter.process import logsetup as exlog
from exporter.store.exposition import ReloadStatus, StoreCollector
from exporter.store.store import Store


class TimedLog(list[tuple[str, str]]):
    """A FakeVendor.log that also notes when (by `now()`) each request reached the vendor.

    With `cost`, each request advances a FakeClock by that much: a simulated response time.
    """

    def __init__(self, now: Callable[[], float], *, advance: Callable[[float], None] | None = None) -> None:
        super().__init__()
        self.now = now
        self.times: list[float] = []
        self._advance = advance
        self.cost = 0.0

    def append(self, item: tuple[str, str]) -> None:
        super().append(item)
        self.times.append(self.now())
        if self._advance is not None and self.cost:
            self._advance(self.cost)

    def at(self, kind: str | None = None, key: str | None = None) -> list[float]:
        """Times of the requests matching kind ("stream", "batch", "list", "app") and key."""
        return [
            t
            for t, (k, v) in zip(self.times, self, strict=True)
            if (kind is None or k == kind) and (key is None or v == key)
        ]


def fake_time_log(clock: FakeClock) -> TimedLog:
    return TimedLog(clock.monotonic, advance=clock.advance)


@dataclass
class Rig:
    config: Config
    clock: Any
    store: Store = field(default_factory=Store)
    runners: dict[str, SourceRunner] = field(default_factory=dict)
    reload_status: ReloadStatus = field(default_factory=ReloadStatus)

    @property
    def runner(self) -> SourceRunner:
        (r,) = self.runners.values()
        return r

    async def close(self) -> None:
        for r in self.runners.values():
            await r.stop()

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """What /metrics would show now (values expire as they do on a scrape)."""
        self.store.expire(self.clock.monotonic())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(self.store, reload_status=self.reload_status))
        return parse(generate_latest(registry).decode())


def build_rig(config_file: Path, clock: Clock | None = None) -> Rig:
    config = load_config(config_file)
    rig = Rig(config=config, clock=clock or FakeClock())
    memories = {s.name: SourceMemory.carried(s, None) for s in config.sources}
    rig.store.keep_sources((s.name, s.provider, memories[s.name].stats) for s in config.sources)
    for source in config.sources:
        rig.runners[source.name] = SourceRunner(
            config=config,
            source=source,
            sink=rig.store,
            memory=memories[source.name],
            clock=rig.clock,
            log=exlog.get_logger(),
        )
    return rig


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: Any) -> float | None:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


def series_of(samples: Samples, **labels: str) -> list[str]:
    """Names of every series carrying all of `labels`."""
    want = set(labels.items())
    return sorted(name for name, lv in samples if want <= set(lv))


def tv(stream: str, source: str = "tv") -> dict[str, str]:
    return {"provider": "testvendor", "source": source, "stream": f"tv/{stream}"}


def stream_values(samples: Samples, stream: str) -> dict[str, float]:
    """The `livestream_*` values of one stream, by name, without the target health series."""
    return {
        name: v
        for (name, labels), v in samples.items()
        if dict(labels).get("stream") == stream and name.startswith("livestream_") and "target" not in name
    }
