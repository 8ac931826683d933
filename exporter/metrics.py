"""Metric catalog and the collector that renders the store.

Every family is built afresh on each collect from the snapshots, so a stream that
vanished vanishes from /metrics: there are no global labelled gauges to forget.

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

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.state import Store


@dataclass(frozen=True)
class MetricDef:
    type: str  # "gauge" or "counter"
    help: str
    extra_labels: tuple[str, ...] = ()
    app_level: bool = False


STREAM_LABELS = ("provider", "source", "stream")
SOURCE_LABELS = ("provider", "source")

#: the stream and app metrics of CONTRACT.md section 3; counter names carry `_total`
CATALOG: dict[str, MetricDef] = {
    "livestream_concurrent_viewers": MetricDef(
        "gauge", "Viewers watching now (latest interval or point the vendor reports)."
    ),
    "livestream_peak_concurrent_viewers": MetricDef(
        "gauge", "Highest concurrent viewers the vendor reports for the stream."
    ),
    "livestream_unique_viewers": MetricDef(
        "gauge", "Distinct viewers of the stream over the vendor's reporting period."
    ),
    "livestream_viewers_total": MetricDef("counter", "Cumulative viewers of the stream."),
    "livestream_messages_total": MetricDef("counter", "Chat messages sent in the stream."),
    "livestream_instructor_messages_total": MetricDef("counter", "Chat messages sent by instructors."),
    "livestream_polls_total": MetricDef("counter", "Audience polls conducted in the stream."),
    "livestream_likes_total": MetricDef("counter", "Likes received by the stream."),
    "livestream_gifts_total": MetricDef("counter", "Gifts sent to the stream."),
    "livestream_gift_coins_total": MetricDef("counter", "Value of the gifts sent to the stream, in coins."),
    "livestream_gift_senders": MetricDef("gauge", "Distinct viewers who sent gifts."),
    "livestream_viewer_seconds_total": MetricDef(
        "counter", "Watch time of the current session summed over viewers, in seconds."
    ),
    "livestream_ingest_seconds_total": MetricDef(
        "counter", "Ingest time of the current session, in seconds."
    ),
    "livestream_duration_seconds": MetricDef("gauge", "Duration of the stream so far, in seconds."),
    "livestream_started_timestamp_seconds": MetricDef("gauge", "When the stream started, in Unix seconds."),
    "livestream_ended_timestamp_seconds": MetricDef("gauge", "When the stream ended, in Unix seconds."),
    "livestream_live": MetricDef("gauge", "Whether the stream is live (1) or not (0)."),
    "livestream_status": MetricDef(
        "gauge", "The stream's status: 1 for the current one, 0 for the others.", ("status",)
    ),
    "livestream_data_timestamp_seconds": MetricDef(
        "gauge", "Time of the vendor's data point the values come from, in Unix seconds."
    ),
    "livestream_stream_info": MetricDef("gauge", "Descriptive labels of the stream; always 1.", ("name",)),
    "livestream_app_livestreams": MetricDef(
        "gauge", "Livestreams of the app, as the vendor counts them.", app_level=True
    ),
    "livestream_app_viewer_seconds_total": MetricDef(
        "counter", "Watch time over all livestreams of the app, in seconds.", app_level=True
    ),
    "livestream_app_ingest_seconds_total": MetricDef(
        "counter", "Ingest time over all livestreams of the app, in seconds.", app_level=True
    ),
}


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
            if st is None:
                continue
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
