"""The mixin's settings: the one place a user changes thresholds, selectors and URLs.

The defaults live in deploy/mixin/config.yaml, not here, so that the file a user reads is
the whole truth. A user's own file holds only what it changes and is merged over the
defaults; anything unknown or mistyped is an error naming its key, because a typo that
silently kept a default would leave an alert tuned differently from what its owner believes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "deploy" / "mixin" / "config.yaml"

ALERT_NAMES = (
    "LivestreamViewerDrop",
    "LivestreamNoViewers",
    "LivestreamErrored",
    "LivestreamTargetDown",
    "LivestreamDataStale",
    "LivestreamExporterThrottled",
    "LivestreamExporterDown",
    "LivestreamExporterClusterDegraded",
)
SEVERITIES = ("critical", "warning")

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = (("h", 3600), ("m", 60), ("s", 1))
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: labels the rules group by: a replica label must never be one of them
_TARGET_LABELS = frozenset({"provider", "source", "stream", "job", "le", "status"})


class SettingsError(ValueError):
    """A settings file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Duration:
    """A Prometheus duration of whole seconds, printable for PromQL and for people."""

    seconds: int

    @classmethod
    def parse(cls, text: str) -> Duration:
        m = _DURATION.fullmatch(text)
        if not text or m is None:
            raise ValueError(f"{text!r} is not a duration like 90s, 10m or 1h30m")
        h, mi, s = (int(g or 0) for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
        if seconds <= 0:
            raise ValueError(f"{text!r} is not a positive duration")
        return cls(seconds)

    def __str__(self) -> str:
        """The shortest Prometheus spelling, e.g. 20m or 1h30m."""
        rest, out = self.seconds, ""
        for unit, size in _UNITS:
            if rest >= size:
                out += f"{rest // size}{unit}"
                rest %= size
        return out

    def words(self) -> str:
        """For annotations: 10 minutes, 1 hour, 90 seconds."""
        number, unit = self.in_one_unit()
        return f"{number} {unit if number == 1 else unit + 's'}"

    def in_one_unit(self) -> tuple[int, str]:
        for name, size in (("hour", 3600), ("minute", 60)):
            if self.seconds % size == 0:
                return self.seconds // size, name
        return self.seconds, "second"


def span_words(longer: Duration, shorter: Duration) -> str:
    """'30 to 10 minutes' when both fit one unit, else '1 hour to 10 minutes'."""
    (a, unit_a), (b, unit_b) = longer.in_one_unit(), shorter.in_one_unit()
    if unit_a == unit_b:
        return f"{a} to {b} {unit_a}s"
    return f"{longer.words()} to {shorter.words()}"


@dataclass(frozen=True)
class AlertSettings:
    severity: str
    for_: Duration
    keep_firing_for: Duration | None


@dataclass(frozen=True)
class Settings:
    exporter_job_selector: str
    replica_labels: tuple[str, ...]
    viewer_drop_fraction: float
    viewer_drop_min_baseline: float
    viewer_drop_baseline_from: Duration
    viewer_drop_baseline_to: Duration
    data_stale_intervals: float
    data_stale_min_seconds: float
    runbook_base_url: str
    alerts: Mapping[str, AlertSettings]
    dashboard_tags: tuple[str, ...]
    dashboard_refresh: str
    dashboard_time_from: str

    def runbook_url(self, alert: str) -> str:
        return f"{self.runbook_base_url}#{alert.lower()}"

    @property
    def replicas(self) -> str:
        """The replica labels for `without (...)` and `ignoring (...)`, e.g. `instance, pod`."""
        return ", ".join(self.replica_labels)


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SettingsError(f"{path}: {e}") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SettingsError(f"{path}: the settings must be a mapping")
    return doc


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class _Reader:
    """Takes typed values out of the merged mapping, so every error names its key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> SettingsError:
        return SettingsError(f"{self.source}: {key}: {problem}")

    def mapping(self, doc: Any, key: str, keys: set[str], optional: Collection[str] = ()) -> Any:
        if not isinstance(doc, Mapping):
            raise self.fail(key, "must be a mapping")
        unknown = set(doc) - keys - set(optional)
        if unknown:
            raise self.fail(key, f"unknown setting(s) {', '.join(sorted(map(str, unknown)))}")
        missing = keys - set(doc)
        if missing:
            raise self.fail(key, f"missing setting(s) {', '.join(sorted(missing))}")
        return doc

    def number(self, value: Any, key: str, *, low: float, high: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.fail(key, f"must be a number from {low} to {high}, not {value!r}")
        return float(value)

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        return value

    def duration(self, value: Any, key: str) -> Duration:
        try:
            return Duration.parse(self.text(value, key))
        except ValueError as e:
            raise self.fail(key, str(e)) from e


def load(override: Path | None = None, defaults: Path = DEFAULT_CONFIG) -> Settings:
    """The default settings, with `override` (a partial settings file) merged over them."""
    doc = _read(defaults)
    source = str(defaults)
    if override is not None:
        doc = _merge(doc, _read(override))
        source = f"{override} (over {defaults})"
    r = _Reader(source)
    top = r.mapping(
        doc,
        "(top level)",
        {
            "exporter_job_selector",
            "replica_labels",
            "viewer_drop",
            "data_stale",
            "runbook_base_url",
            "alerts",
            "dashboards",
        },
    )
    drop = r.mapping(
        top["viewer_drop"], "viewer_drop", {"fraction", "min_baseline", "baseline_from", "baseline_to"}
    )
    stale = r.mapping(top["data_stale"], "data_stale", {"intervals", "min_seconds"})
    dash = r.mapping(top["dashboards"], "dashboards", {"tags", "refresh", "time_from"})
    alerts_doc = r.mapping(top["alerts"], "alerts", set(ALERT_NAMES))
    alerts: dict[str, AlertSettings] = {}
    for name in ALERT_NAMES:
        a = r.mapping(alerts_doc[name], f"alerts.{name}", {"severity", "for"}, {"keep_firing_for"})
        if a["severity"] not in SEVERITIES:
            raise r.fail(f"alerts.{name}.severity", f"must be one of {', '.join(SEVERITIES)}")
        keep = a.get("keep_firing_for")
        alerts[name] = AlertSettings(
            severity=a["severity"],
            for_=r.duration(a["for"], f"alerts.{name}.for"),
            keep_firing_for=None if keep is None else r.duration(keep, f"alerts.{name}.keep_firing_for"),
        )
    selector = r.text(top["exporter_job_selector"], "exporter_job_selector")
    if "{" in selector or "}" in selector:
        raise r.fail("exporter_job_selector", 'label matchers without braces, e.g. job="livestream-exporter"')
    replica_labels = top["replica_labels"]
    if (
        not isinstance(replica_labels, list)
        or not replica_labels
        or not all(isinstance(x, str) and _LABEL.fullmatch(x) for x in replica_labels)
        or len(set(replica_labels)) != len(replica_labels)
    ):
        raise r.fail(
            "replica_labels", f"must be a non-empty list of distinct label names, not {replica_labels!r}"
        )
    if set(replica_labels) & _TARGET_LABELS:
        bad = ", ".join(sorted(set(replica_labels) & _TARGET_LABELS))
        raise r.fail("replica_labels", f"{bad} identifies a target, not a replica")
    tags = dash["tags"]
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
        raise r.fail("dashboards.tags", "must be a non-empty list of strings")
    settings = Settings(
        exporter_job_selector=selector,
        replica_labels=tuple(replica_labels),
        viewer_drop_fraction=r.number(drop["fraction"], "viewer_drop.fraction", low=0, high=1),
        viewer_drop_min_baseline=r.number(drop["min_baseline"], "viewer_drop.min_baseline", low=0),
        viewer_drop_baseline_from=r.duration(drop["baseline_from"], "viewer_drop.baseline_from"),
        viewer_drop_baseline_to=r.duration(drop["baseline_to"], "viewer_drop.baseline_to"),
        data_stale_intervals=r.number(stale["intervals"], "data_stale.intervals", low=1),
        data_stale_min_seconds=r.number(stale["min_seconds"], "data_stale.min_seconds", low=0),
        runbook_base_url=r.text(top["runbook_base_url"], "runbook_base_url").rstrip("/"),
        alerts=alerts,
        dashboard_tags=tuple(tags),
        dashboard_refresh=r.text(dash["refresh"], "dashboards.refresh"),
        dashboard_time_from=r.text(dash["time_from"], "dashboards.time_from"),
    )
    if settings.viewer_drop_baseline_from.seconds <= settings.viewer_drop_baseline_to.seconds:
        raise r.fail("viewer_drop.baseline_from", "must be longer than viewer_drop.baseline_to")
    if settings.viewer_drop_baseline_to.seconds <= alerts["LivestreamViewerDrop"].for_.seconds:
        raise r.fail(
            "viewer_drop.baseline_to",
            "must be longer than alerts.LivestreamViewerDrop.for: the baseline must end before the drop",
        )
    return settings
