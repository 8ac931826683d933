"""Exposition lines rendered by hand, byte for byte as prometheus_client renders them.

The sample lines of our families are the same in the text format 0.0.4 and in OpenMetrics
(gauges, counters whose sample names end in `_total` and have no `_created`, one histogram
without `_created`): only the `# HELP`/`# TYPE` headers differ (a counter's family is
`livestream_messages_total` in the text format and `livestream_messages` in OpenMetrics),
plus OpenMetrics' final `# EOF`.  The headers are taken from prometheus_client itself
(`FamilyDef.header`); labels are sorted by name and their values escaped (backslash, double
quote, newline), values formatted with prometheus_client's `floatToGoString`.

The families come in a fixed order: the catalog's (stream and app-level), the per-target
health families (`ROW_FAMILIES`: both rendered per row when a poll lands, see
`exporter.store.rows`), then the exporter's self-metrics (`SELF_FAMILIES`, rendered on each
scrape: a few lines per source).
"""

from __future__ import annotations

import functools
import platform
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import exposition as prom_text
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics import exposition as prom_om
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.engine.stats import ClusterStats, SourceStats
from exporter.model.catalog import CATALOG
from exporter.model.samples import Sample

Kind = Literal["gauge", "counter", "histogram"]

#: prometheus_client's value formatting (untyped there)
_float_to_go: Callable[[float], str] = floatToGoString


def go_float(value: float) -> str:
    """`value` as prometheus_client writes it (its `floatToGoString`), faster for the usual
    values: `repr` unless the number is large enough for Go's exponent form, inf or nan."""
    s = repr(float(value))
    if s.find(".") > 6 or s[-1] in "fn":
        return _float_to_go(value)
    return s


#: prometheus_client's renderings (the OpenMetrics one is untyped there)
generate_text: Callable[[Collector], bytes] = prom_text.generate_latest
generate_openmetrics: Callable[[Collector], bytes] = prom_om.generate_latest


@dataclass(frozen=True)
class FamilyDef:
    """One family: `name` as its samples are named in the text format (counters end in `_total`)."""

    name: str
    kind: Kind
    help: str

    @property
    def base(self) -> str:
        """The name prometheus_client's metric families take (a counter's without `_total`)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name

    def metric(self, labels: Sequence[str] = ()) -> Metric:
        """An empty prometheus_client family of this definition."""
        if self.kind == "counter":
            return CounterMetricFamily(self.base, self.help, labels=labels)
        if self.kind == "histogram":
            return HistogramMetricFamily(self.base, self.help, labels=labels)
        return GaugeMetricFamily(self.base, self.help, labels=labels)

    def header(self, openmetrics: bool) -> bytes:
        """The family's `# HELP` and `# TYPE` lines in the format, as prometheus_client writes them."""
        return _header(self, openmetrics)


class _One(Collector):
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def _prom(metric: Metric, openmetrics: bool) -> bytes:
    """prometheus_client's rendering of one family, without OpenMetrics' `# EOF`."""
    one = _One(metric)
    return generate_openmetrics(one).removesuffix(b"# EOF\n") if openmetrics else generate_text(one)


@functools.cache
def _header(fdef: FamilyDef, openmetrics: bool) -> bytes:
    return _prom(fdef.metric(), openmetrics)


# -- the families ---------------------------------------------------------------------------

TARGET_UP = FamilyDef(
    "livestream_target_up", "gauge", "Whether the last poll of the target succeeded (1) or failed (0)."
)
TARGET_LAST_SUCCESS = FamilyDef(
    "livestream_target_last_success_timestamp_seconds",
    "gauge",
    "When the target was last polled successfully, in Unix seconds.",
)
TARGET_POLL_DURATION = FamilyDef(
    "livestream_target_poll_duration_seconds",
    "gauge",
    "How long the last poll of the target took, in seconds.",
)
HEALTH_FAMILIES = (TARGET_UP, TARGET_LAST_SUCCESS, TARGET_POLL_DURATION)

#: what each row (a target, or a source's app-level values) may have lines in, in exposition order
ROW_FAMILIES: tuple[FamilyDef, ...] = (
    *(FamilyDef(name, mdef.type, mdef.help) for name, mdef in CATALOG.items()),
    *HEALTH_FAMILIES,
)
#: a catalog name's index in ROW_FAMILIES
ROW_INDEX: dict[str, int] = {f.name: i for i, f in enumerate(ROW_FAMILIES)}
_UP, _LAST, _DURATION = (ROW_INDEX[f.name] for f in HEALTH_FAMILIES)

API_REQUESTS = FamilyDef(
    "livestream_exporter_api_requests_total",
    "counter",
    "Requests sent to the vendor API, by endpoint and HTTP status (or timeout/error).",
)
API_REQUEST_DURATION = FamilyDef(
    "livestream_exporter_api_request_duration_seconds",
    "histogram",
    "Duration of requests to the vendor API, in seconds.",
)
THROTTLED = FamilyDef(
    "livestream_exporter_throttled_total",
    "counter",
    "Answers that asked the exporter to slow down (HTTP 429 or a vendor's throttling code).",
)
RATE_LIMIT_WAITS = FamilyDef(
    "livestream_exporter_rate_limit_waits_total",
    "counter",
    "Requests the rate limiter delayed to stay within the budget.",
)
SKIPPED_POINTS = FamilyDef(
    "livestream_exporter_skipped_points_total",
    "counter",
    "Vendor data points skipped because they were malformed (e.g. a bad timestamp).",
)
BUDGET = FamilyDef(
    "livestream_exporter_rate_limit_requests_per_second",
    "gauge",
    "The request budget in force (the tightest window), in requests per second.",
)
POLL_INTERVAL = FamilyDef(
    "livestream_exporter_poll_interval_seconds",
    "gauge",
    "Effective poll interval of the source (the configured one, lengthened to fit the budget), in seconds.",
)
TARGETS = FamilyDef(
    "livestream_exporter_targets", "gauge", "Targets the source polls, configured and discovered."
)
CYCLE_DURATION = FamilyDef(
    "livestream_exporter_cycle_duration_seconds",
    "gauge",
    "How long the source's last poll cycle took, from its start to its last answer (while a cycle"
    " runs past its plan, its running time), in seconds.",
)
IN_FLIGHT = FamilyDef(
    "livestream_exporter_requests_in_flight", "gauge", "Requests sent to the vendor API and not yet answered."
)
TARGET_SOURCE_UP = FamilyDef(
    "livestream_exporter_target_source_up",
    "gauge",
    "Whether the last read of a target file or URL (origin) gave a list that was taken.",
)
TARGET_SOURCE_LAST_SUCCESS = FamilyDef(
    "livestream_exporter_target_source_last_success_timestamp_seconds",
    "gauge",
    "When a target file or URL (origin) last gave a list that was taken, in Unix seconds.",
)
TARGET_SOURCE_TARGETS = FamilyDef(
    "livestream_exporter_target_source_targets",
    "gauge",
    "Targets the file or URL (origin) contributes (its last list that was taken).",
)
BUILD_INFO = FamilyDef("livestream_exporter_build_info", "gauge", "Build information; always 1.")
RELOAD_OK = FamilyDef(
    "livestream_exporter_config_last_reload_successful",
    "gauge",
    "Whether the last configuration reload succeeded.",
)
RELOAD_TIMESTAMP = FamilyDef(
    "livestream_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the configuration was last loaded successfully, in Unix seconds.",
)
CLUSTER_MEMBERS = FamilyDef(
    "livestream_exporter_cluster_members",
    "gauge",
    "Replicas alive in the cluster, as this replica last saw them in Redis.",
)
CLUSTER_OWNED = FamilyDef(
    "livestream_exporter_cluster_owned_targets",
    "gauge",
    "Targets of the source this replica owns: polls and exports.",
)
CLUSTER_LEADER = FamilyDef(
    "livestream_exporter_cluster_source_leader",
    "gauge",
    "Whether this replica holds the source's lease: sends its discovery and app-level requests.",
)
CLUSTER_REDIS_UP = FamilyDef(
    "livestream_exporter_cluster_redis_up",
    "gauge",
    "Whether the last heartbeat reached Redis (0: polling with this replica's share of each budget).",
)
CLUSTER_REPLICA = FamilyDef(
    "livestream_exporter_cluster_replica_info",
    "gauge",
    "This replica's name in the cluster (the replica label); always 1.",
)
#: the exporter's own families, in exposition order
SELF_FAMILIES = (
    API_REQUESTS,
    API_REQUEST_DURATION,
    THROTTLED,
    RATE_LIMIT_WAITS,
    SKIPPED_POINTS,
    BUDGET,
    POLL_INTERVAL,
    TARGETS,
    CYCLE_DURATION,
    IN_FLIGHT,
    TARGET_SOURCE_UP,
    TARGET_SOURCE_LAST_SUCCESS,
    TARGET_SOURCE_TARGETS,
    BUILD_INFO,
    RELOAD_OK,
    RELOAD_TIMESTAMP,
    CLUSTER_MEMBERS,
    CLUSTER_OWNED,
    CLUSTER_LEADER,
    CLUSTER_REDIS_UP,
    CLUSTER_REPLICA,
)


# -- lines ----------------------------------------------------------------------------------


def escape(value: str) -> str:
    """A label value escaped for both formats: backslash, newline and double quote."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labelstr(pairs: Iterable[tuple[str, str]]) -> str:
    """`{a="x",b="y"}` with the labels sorted by name, as prometheus_client writes them."""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in sorted(pairs)) + "}"


def encode(text: str) -> bytes:
    # a lone surrogate (JSON can carry one) must not fail the exposition: it becomes "?"
    return text.encode("utf-8", "replace")


@dataclass(frozen=True)
class Health:
    """What the health families show of a target that was attempted and is not gone."""

    up: bool
    last_success: float | None
    poll_duration: float | None


@functools.lru_cache(maxsize=1 << 14)  # a target's labels, rendered at each of its polls
def _base_labels(base: tuple[tuple[str, str], ...]) -> str:
    return labelstr(base)


def row_lines(
    base: tuple[tuple[str, str], ...], samples: Iterable[Sample], health: Health | None
) -> dict[int, bytes]:
    """The lines of one row by ROW_FAMILIES index: its samples with the `base` labels (provider,
    source and, for a target, stream) and, when `health` is given, its health lines."""
    plain = _base_labels(base)
    out: dict[int, str] = {}
    for s in samples:
        f = ROW_INDEX[s.name]
        line = f"{s.name}{labelstr((*base, *s.labels)) if s.labels else plain} {go_float(s.value)}\n"
        prev = out.get(f)
        out[f] = line if prev is None else prev + line
    if health is not None:
        out[_UP] = f"{TARGET_UP.name}{plain} {'1.0' if health.up else '0.0'}\n"
        if health.last_success is not None:
            out[_LAST] = f"{TARGET_LAST_SUCCESS.name}{plain} {go_float(health.last_success)}\n"
        if health.poll_duration is not None:
            out[_DURATION] = f"{TARGET_POLL_DURATION.name}{plain} {go_float(health.poll_duration)}\n"
    return {f: encode(text) for f, text in out.items()}


def self_metrics(
    sources: Iterable[tuple[str, str, SourceStats]],
    *,
    reload_successful: bool,
    reload_last_success: float,
    openmetrics: bool,
    cluster: ClusterStats | None = None,
) -> bytes:
    """The exporter's own families of the sources (provider, source name, stats), with headers."""
    fams: dict[FamilyDef, list[str]] = {f: [] for f in SELF_FAMILIES}
    named = list(sources)
    for provider, name, st in named:
        base = (("provider", provider), ("source", name))
        plain = labelstr(base)
        req = fams[API_REQUESTS]
        for (endpoint, code), n in sorted(st.requests.items()):
            req.append(
                f"{API_REQUESTS.name}{labelstr((*base, ('endpoint', endpoint), ('code', code)))}"
                f" {go_float(n)}\n"
            )
        hist = fams[API_REQUEST_DURATION]
        hname = API_REQUEST_DURATION.name
        for endpoint, h in sorted(st.durations.items()):
            labels = (*base, ("endpoint", endpoint))
            buckets = h.cumulative()
            hist.extend(
                f"{hname}_bucket{labelstr((*labels, ('le', le)))} {go_float(v)}\n" for le, v in buckets
            )
            ls = labelstr(labels)
            hist.append(f"{hname}_count{ls} {go_float(buckets[-1][1])}\n")
            hist.append(f"{hname}_sum{ls} {go_float(h.total)}\n")
        values: list[tuple[FamilyDef, float]] = [
            (THROTTLED, st.throttled),
            (RATE_LIMIT_WAITS, st.limiter_waits),
            (SKIPPED_POINTS, st.skipped_points),
            (BUDGET, st.budget_rps),
            (POLL_INTERVAL, st.interval),
            (TARGETS, st.targets),
            (CYCLE_DURATION, st.cycle_seconds),
            (IN_FLIGHT, st.in_flight),
        ]
        for fdef, value in values:
            fams[fdef].append(f"{fdef.name}{plain} {go_float(value)}\n")
        for origin, ts in sorted(st.target_lists.items()):
            ls = labelstr((*base, ("origin", origin)))
            fams[TARGET_SOURCE_UP].append(f"{TARGET_SOURCE_UP.name}{ls} {'1.0' if ts.up else '0.0'}\n")
            if ts.last_success is not None:
                last = go_float(ts.last_success)
                fams[TARGET_SOURCE_LAST_SUCCESS].append(f"{TARGET_SOURCE_LAST_SUCCESS.name}{ls} {last}\n")
            fams[TARGET_SOURCE_TARGETS].append(f"{TARGET_SOURCE_TARGETS.name}{ls} {go_float(ts.targets)}\n")
    build = labelstr([("version", __version__), ("python_version", platform.python_version())])
    fams[BUILD_INFO].append(f"{BUILD_INFO.name}{build} 1.0\n")
    fams[RELOAD_OK].append(f"{RELOAD_OK.name} {'1.0' if reload_successful else '0.0'}\n")
    fams[RELOAD_TIMESTAMP].append(f"{RELOAD_TIMESTAMP.name} {go_float(reload_last_success)}\n")
    if cluster is not None:
        for fam, line in cluster_values(cluster, [(p, n) for p, n, _ in named]):
            fams[fam].append(line)
    parts: list[bytes] = []
    for fdef, lines in fams.items():
        if lines:
            parts.append(fdef.header(openmetrics))
            parts.append(encode("".join(lines)))
    return b"".join(parts)


def cluster_values(cluster: ClusterStats, sources: Iterable[tuple[str, str]]) -> list[tuple[FamilyDef, str]]:
    """The cluster families' lines, for the sources (provider, name) of this replica."""
    out = [
        (CLUSTER_MEMBERS, f"{CLUSTER_MEMBERS.name} {go_float(len(cluster.members))}\n"),
        (CLUSTER_REDIS_UP, f"{CLUSTER_REDIS_UP.name} {'1.0' if cluster.redis_up else '0.0'}\n"),
        (CLUSTER_REPLICA, f"{CLUSTER_REPLICA.name}{labelstr([('replica', cluster.replica)])} 1.0\n"),
    ]
    for provider, name in sources:
        ls = labelstr((("provider", provider), ("source", name)))
        out.append((CLUSTER_OWNED, f"{CLUSTER_OWNED.name}{ls} {go_float(cluster.owned.get(name, 0))}\n"))
        leads = "1.0" if name in cluster.leading else "0.0"
        out.append((CLUSTER_LEADER, f"{CLUSTER_LEADER.name}{ls} {leads}\n"))
    return out


# -- any collector's families (the process metrics) -------------------------------------------

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_SIMPLE = frozenset({"gauge", "counter", "histogram", "summary"})
_MOVED_SUFFIXES = ("_created", "_gsum", "_gcount")


@functools.lru_cache(maxsize=1024)
def _metric_header(name: str, typ: str, documentation: str, unit: str, openmetrics: bool) -> bytes:
    return _prom(Metric(name, documentation, typ, unit), openmetrics)


def _simple(metric: Metric) -> bool:
    """Whether the family's lines are plain `name{labels} value` lines in both formats."""
    if metric.type not in _SIMPLE or not _METRIC_NAME.match(metric.name):
        return False
    for s in metric.samples:
        if s.timestamp is not None or s.exemplar is not None or s.native_histogram is not None:
            return False
        if s.name.endswith(_MOVED_SUFFIXES) or not _METRIC_NAME.match(s.name):
            return False
        if not all(_LABEL_NAME.match(k) for k in s.labels):
            return False
    return True


def render_metrics(metrics: Iterable[Metric], openmetrics: bool) -> bytes:
    """prometheus_client families (e.g. the process collectors'), without `# EOF`: byte for
    byte what prometheus_client renders, faster for plain families; any other family (with
    timestamps, exemplars, `_created`, info, ...) is rendered by prometheus_client itself."""
    parts: list[bytes] = []
    for m in metrics:
        if not _simple(m):
            parts.append(_prom(m, openmetrics))
            continue
        parts.append(_metric_header(m.name, m.type, m.documentation, m.unit, openmetrics))
        text = "".join(
            f"{s.name}{labelstr(s.labels.items()) if s.labels else ''} {go_float(s.value)}\n"
            for s in m.samples
        )
        parts.append(encode(text))
    return b"".join(parts)
