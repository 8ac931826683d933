"""The exposition of the store: a collector over its snapshots, rendered once per change.

Every family is built afresh on each render from the snapshots, so a stream that
vanished vanishes from /metrics: there are no global labelled gauges to forget.
`MetricsCache` renders the exporter's families once per change of the store and format;
the process metrics, which change on every scrape, are rendered fresh and appended.

Example exposition (one cloudflare target and its source):

    # HELP livestream_live Whether the stream is live (1) or not (0).
    # TYPE livestream_live gauge
    livestream_live{provider="cloudflare",source="cf-main",stream="3fd7..."} 1.0
    # HELP livestream_target_up Whether the last poll of the target succeeded.
    # TYPE livestream_target_up gauge
    livestream_target_up{provider="cloudflare",source="cf-main",stream="3fd7..."} 1.0
    # HELP livestream_exporter_api_requests_total Requests sent to the vendor API, by endpoint and HTTP code.
    # TYPE livestream_exporter_api_requests_total counter
    livestream_exporter_api_requests_total{code="200",endpoint="analytics_overall",...} 42.0
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import exposition as prom_text
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics import exposition as prom_om
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.model.catalog import CATALOG, SOURCE_LABELS, STREAM_LABELS, MetricDef
from exporter.model.clock import Clock
from exporter.store.store import Store


def _family(name: str, mdef: MetricDef, labels: tuple[str, ...]) -> Metric:
    if mdef.type == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), mdef.help, labels=labels)
    return GaugeMetricFamily(name, mdef.help, labels=labels)


class StoreCollector(Collector):
    """Renders the store: stream, app, health and per-source exporter metrics."""

    def __init__(self, store: Store, *, reload_status: ReloadStatus) -> None:
        self._store = store
        self._reload = reload_status

    def collect(self) -> Iterator[Metric]:
        yield from self._stream_metrics()
        yield from self._health_metrics()
        yield from self._exporter_metrics()

    def _stream_metrics(self) -> Iterator[Metric]:
        families: dict[tuple[str, tuple[str, ...]], Metric] = {}
        for s in self._store.sources.values():
            for t in list(s.targets.values()):
                if t.gone:
                    continue
                for sample in t.samples:
                    extra = tuple(k for k, _ in sample.labels)
                    self._add(
                        families,
                        sample.name,
                        STREAM_LABELS + extra,
                        (s.provider, s.name, t.target.stream, *(v for _, v in sample.labels)),
                        sample.value,
                    )
            for sample in s.app_samples:
                extra = tuple(k for k, _ in sample.labels)
                self._add(
                    families,
                    sample.name,
                    SOURCE_LABELS + extra,
                    (s.provider, s.name, *(v for _, v in sample.labels)),
                    sample.value,
                )
        # one family per name even if extra label sets differ between samples
        merged: dict[str, Metric] = {}
        for (name, _), fam in sorted(families.items()):
            if name in merged:
                merged[name].samples.extend(fam.samples)
            else:
                merged[name] = fam
        yield from merged.values()

    @staticmethod
    def _add(
        families: dict[tuple[str, tuple[str, ...]], Metric],
        name: str,
        labels: tuple[str, ...],
        values: tuple[str, ...],
        value: float,
    ) -> None:
        mdef = CATALOG[name]
        fam = families.get((name, labels))
        if fam is None:
            fam = families[(name, labels)] = _family(name, mdef, labels)
        fam.add_metric(list(values), value)  # type: ignore[attr-defined]

    def _health_metrics(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "livestream_target_up",
            "Whether the last poll of the target succeeded (1) or failed (0).",
            labels=STREAM_LABELS,
        )
        last = GaugeMetricFamily(
            "livestream_target_last_success_timestamp_seconds",
            "When the target was last polled successfully, in Unix seconds.",
            labels=STREAM_LABELS,
        )
        dur = GaugeMetricFamily(
            "livestream_target_poll_duration_seconds",
            "How long the last poll of the target took, in seconds.",
            labels=STREAM_LABELS,
        )
        for s in self._store.sources.values():
            for t in list(s.targets.values()):
                if t.gone or not t.attempted:
                    continue
                lv = [s.provider, s.name, t.target.stream]
                up.add_metric(lv, 1.0 if t.up else 0.0)
                if t.last_success is not None:
                    last.add_metric(lv, t.last_success)
                if t.poll_duration is not None:
                    dur.add_metric(lv, t.poll_duration)
        yield from (up, last, dur)

    def _exporter_metrics(self) -> Iterator[Metric]:
        req = CounterMetricFamily(
            "livestream_exporter_api_requests",
            "Requests sent to the vendor API, by endpoint and HTTP status (or timeout/error).",
            labels=(*SOURCE_LABELS, "endpoint", "code"),
        )
        hist = HistogramMetricFamily(
            "livestream_exporter_api_request_duration_seconds",
            "Duration of requests to the vendor API, in seconds.",
            labels=(*SOURCE_LABELS, "endpoint"),
        )
        thr = CounterMetricFamily(
            "livestream_exporter_throttled",
            "Answers that asked the exporter to slow down (HTTP 429 or a vendor's throttling code).",
            labels=SOURCE_LABELS,
        )
        waits = CounterMetricFamily(
            "livestream_exporter_rate_limit_waits",
            "Requests the rate limiter delayed to stay within the budget.",
            labels=SOURCE_LABELS,
        )
        skipped = CounterMetricFamily(
            "livestream_exporter_skipped_points",
            "Vendor data points skipped because they were malformed (e.g. a bad timestamp).",
            labels=SOURCE_LABELS,
        )
        budget = GaugeMetricFamily(
            "livestream_exporter_rate_limit_requests_per_second",
            "The request budget in force (the tightest window), in requests per second.",
            labels=SOURCE_LABELS,
        )
        interval = GaugeMetricFamily(
            "livestream_exporter_poll_interval_seconds",
            "Effective poll interval of the source (the configured one, lengthened to fit the budget),"
            " in seconds.",
            labels=SOURCE_LABELS,
        )
        targets = GaugeMetricFamily(
            "livestream_exporter_targets",
            "Targets the source polls, configured and discovered.",
            labels=SOURCE_LABELS,
        )
        for s in self._store.sources.values():
            st = s.stats
            lv = [s.provider, s.name]
            for (endpoint, code), n in sorted(st.requests.items()):
                req.add_metric([*lv, endpoint, code], float(n))
            for endpoint, h in sorted(st.durations.items()):
                hist.add_metric([*lv, endpoint], h.cumulative(), h.total)
            thr.add_metric(lv, float(st.throttled))
            waits.add_metric(lv, float(st.limiter_waits))
            skipped.add_metric(lv, float(st.skipped_points))
            budget.add_metric(lv, st.budget_rps)
            interval.add_metric(lv, st.interval)
            targets.add_metric(lv, float(st.targets))
        yield from (req, hist, thr, waits, skipped, budget, interval, targets)

        info = GaugeMetricFamily(
            "livestream_exporter_build_info",
            "Build information; always 1.",
            labels=("version", "python_version"),
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
        ok = GaugeMetricFamily(
            "livestream_exporter_config_last_reload_successful",
            "Whether the last configuration reload succeeded.",
        )
        ok.add_metric([], 1.0 if self._reload.successful else 0.0)
        yield ok
        ts = GaugeMetricFamily(
            "livestream_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully, in Unix seconds.",
        )
        ts.add_metric([], self._reload.last_success)
        yield ts


@dataclass
class ReloadStatus:
    successful: bool = True
    last_success: float = 0.0


class MetricsCache:
    """The /metrics body: the store's families rendered once per change, process metrics fresh."""

    def __init__(self, store: Store, reload_status: ReloadStatus, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(StoreCollector(store, reload_status=reload_status))
        self._process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._process)
        PlatformCollector(registry=self._process)
        GCCollector(registry=self._process)
        self._cache: dict[bool, tuple[int, bytes]] = {}
        #: how many times the store's families were rendered (a scrape that hits the cache renders none)
        self.renders = 0

    def render(self, openmetrics: bool) -> bytes:
        store = self._store
        store.expire(self._clock.monotonic())
        hit = self._cache.get(openmetrics)
        if hit is None or hit[0] != store.generation:
            generation = store.generation
            gen = prom_om.generate_latest if openmetrics else prom_text.generate_latest
            body = gen(self._registry)
            self.renders += 1
            if openmetrics:
                body = body.removesuffix(b"# EOF\n")
            self._cache[openmetrics] = hit = (generation, body)
        gen = prom_om.generate_latest if openmetrics else prom_text.generate_latest
        return hit[1] + gen(self._process)
