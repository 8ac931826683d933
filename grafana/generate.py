"""Generate the Grafana dashboards of grafana/dashboards/ from code and the mixin's settings.

    python -m grafana.mixin              # (re)write the dashboards and the rule files
    python -m grafana.generate           # (re)write grafana/dashboards/*.json only, default settings
    python -m grafana.generate --check   # exit 1 if the committed JSON differs from the code

Plain dicts, no dependency: the few panel kinds used here are built by the helpers
below, so every panel gets the same datasource, units and layout rules.

Every dashboard is import-ready for Grafana 10+: an `__inputs` entry DS_PROMETHEUS for
the import dialog, a `datasource` template variable (type prometheus) that every panel,
query and variable uses as `${datasource}`, and no datasource uid written anywhere.

Helpers for tests that run the queries against a real Prometheus:

    iter_queries(dashboard) -> list[(panel title, expr)]
    iter_variable_queries(dashboard) -> list[(variable name, label_values(...) query)]
    substitute(expr, variables=None) -> expr with Grafana variables replaced
    metric_names(expr) -> set of metric names the expression selects
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from grafana.settings import Settings, load

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 38  # Grafana 10.0; later versions migrate it on load
DS = {"type": "prometheus", "uid": "${datasource}"}

UID_OVERVIEW = "livestream-overview"
UID_STREAM = "livestream-stream"
UID_EXPORTER = "livestream-exporter"

#: what substitute() puts in for Grafana's built-in interval variables
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
#: what substitute() puts in for a template variable it is not given: the "All" value
ALL = ".*"

Panel = dict[str, Any]


# --------------------------------------------------------------------- queries


def _sel(*labels: str) -> str:
    """Label matchers for the template variables named, e.g. provider=~"$provider"."""
    return ", ".join(f'{name}=~"${name}"' for name in labels)


STREAM_SEL = _sel("provider", "source", "stream")
SOURCE_SEL = _sel("provider", "source")
BY_STREAM = "provider, source, stream"


def _one(metric: str, sel: str, by: str = BY_STREAM) -> str:
    """A gauge once per stream (or source), whichever exporter replica exports it.

    With several replicas a stream's series change `instance` when it moves to another
    one, and every replica reports a source's totals (targets, budget, interval): max, never
    sum, over what they report. Counters of the vendor (watch time, likes) are summed instead:
    after a move each replica's rate() covers its part of the window.
    """
    return f"max by ({by}) ({metric}{{{sel}}})"


def _audience(sel: str) -> str:
    """Audience per stream: concurrent viewers, or Cloudflare's average from watch time."""
    return (
        f"{_one('livestream_concurrent_viewers', sel)}\n"
        f"  or sum by ({BY_STREAM}) (rate(livestream_viewer_seconds_total{{{sel}}}[5m]))"
    )


def _per_minute(metric: str, sel: str, by: str | None = None) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{sel}}}[$__rate_interval])) * 60"


# ----------------------------------------------------------------- panel kit

Query = str | tuple[str, str]  # an expr, or (expr, legend)


def target(expr: str, legend: str, ref: str, *, instant: bool, table: bool) -> dict[str, Any]:
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "format": "table" if table else "time_series",
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def _value_map(mapping: Mapping[int, tuple[str, str]]) -> list[dict[str, Any]]:
    options = {str(v): {"index": i, "text": t, "color": c} for i, (v, (t, c)) in enumerate(mapping.items())}
    return [{"type": "value", "options": options}]


UP_MAP = _value_map({1: ("UP", "green"), 0: ("DOWN", "red")})
_REDUCE = {"calcs": ["lastNotNull"], "fields": "", "values": False}
_OPTIONS: dict[str, dict[str, Any]] = {
    "timeseries": {
        "legend": {
            "calcs": ["lastNotNull", "max"],
            "displayMode": "table",
            "placement": "right",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    },
    "stat": {
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": _REDUCE,
        "textMode": "auto",
    },
    "bargauge": {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "reduceOptions": _REDUCE,
        "showUnfilled": True,
    },
    "table": {"cellHeight": "sm", "showHeader": True},
    "state-timeline": {
        "alignValue": "left",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "mergeValues": True,
        "rowHeight": 0.9,
        "showValue": "auto",
        "tooltip": {"mode": "single", "sort": "none"},
    },
}
_CUSTOM: dict[str, dict[str, Any]] = {
    "timeseries": {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never"},
    "table": {"align": "auto", "cellOptions": {"type": "auto"}},
    "state-timeline": {"fillOpacity": 80, "lineWidth": 0},
}


def panel(
    kind: str,
    title: str,
    *queries: Query,
    unit: str = "short",
    description: str = "",
    instant: bool = False,
    table: Mapping[str, str] | None = None,
    thresholds: dict[str, Any] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    decimals: int | None = None,
    min_: float | None = None,
    max_: float | None = None,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
) -> Panel:
    """One panel. `table` makes instant table queries merged into one table, renaming its columns."""
    defaults: dict[str, Any] = {
        "color": {"mode": "palette-classic" if kind == "timeseries" else "thresholds"},
        "custom": {**_CUSTOM.get(kind, {}), **(custom or {})},
        "mappings": mappings or [],
        "thresholds": thresholds or _thresholds((None, "green")),
        "unit": unit,
    }
    extra = {"decimals": decimals, "min": min_, "max": max_}
    defaults.update({k: v for k, v in extra.items() if v is not None})
    p: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {**_OPTIONS[kind], **(options or {})},
        "targets": [
            target(*((q, "__auto") if isinstance(q, str) else q), chr(ord("A") + i),
                   instant=instant or table is not None, table=table is not None)
            for i, q in enumerate(queries)
        ],
    }  # fmt: skip
    if table is not None:
        organize = {"excludeByName": {"Time": True}, "indexByName": {}, "renameByName": dict(table)}
        p["transformations"] = [{"id": "merge", "options": {}}, {"id": "organize", "options": organize}]
    return p


def _column(name: str, **properties: Any) -> dict[str, Any]:
    """A field override of one table column."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k, "value": v} for k, v in properties.items()],
    }


def _stream_link() -> dict[str, Any]:
    """Table column `stream` links to the drill-down of that stream."""
    url = (
        f"/d/{UID_STREAM}/livestream-stream?var-provider=${{__data.fields.provider}}"
        "&var-source=${__data.fields.source}&var-stream=${__data.fields.stream}&${__url_time_range}"
    )
    return _column("stream", links=[{"title": "Stream drill-down", "url": url}])


class Layout:
    """Places panels left to right on Grafana's 24-column grid, with rows as section headers."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self._x = self._y = self._line_h = self._ids = 0
        self._collapsed: Panel | None = None

    def _place(self, p: Panel, w: int, h: int) -> None:
        if self._x + w > 24:
            self._y += self._line_h
            self._x = self._line_h = 0
        p["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._ids += 1
        p["id"] = self._ids
        if self._collapsed is not None and p["type"] != "row":
            self._collapsed["panels"].append(p)
        else:
            self.panels.append(p)
        self._x += w
        self._line_h = max(self._line_h, h)

    def row(self, title: str, *, collapsed: bool = False) -> None:
        """A section header; a collapsed row holds the panels after it (Grafana queries them
        only once the row is opened), so it must be the dashboard's last."""
        if self._collapsed is not None:
            raise ValueError("a collapsed row must be the last one")
        r: Panel = {"type": "row", "title": title, "collapsed": collapsed, "panels": []}
        self._place(r, 24, 1)
        if collapsed:
            self._collapsed = r

    def add(self, w: int, h: int, kind: str, title: str, *queries: Query, **kw: Any) -> None:
        self._place(panel(kind, title, *queries, **kw), w, h)


# ----------------------------------------------------------------- variables


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def _query_variable(
    name: str, label: str, query: str, *, multi: bool = True, all_: bool = True
) -> dict[str, Any]:
    current: dict[str, Any] = (
        {"selected": True, "text": ["All"], "value": ["$__all"]} if all_ and multi else {}
    )
    v: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        **({"current": current} if current else {}),
        "hide": 0,
        "includeAll": all_,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }
    if all_:
        v["allValue"] = ".*"
    return v


def _chained_variables(*, stream: bool, single_stream: bool = False) -> list[dict[str, Any]]:
    """provider, then source (given provider), then stream (given both), from livestream_target_up."""
    variables = [
        _query_variable("provider", "Provider", "label_values(livestream_target_up, provider)"),
        _query_variable(
            "source", "Source", f"label_values(livestream_target_up{{{_sel('provider')}}}, source)"
        ),
    ]
    if stream:
        variables.append(
            _query_variable(
                "stream",
                "Stream",
                f"label_values(livestream_target_up{{{SOURCE_SEL}}}, stream)",
                multi=not single_stream,
                all_=not single_stream,
            )
        )
    return variables


# ---------------------------------------------------------------- dashboards

_PANEL_NAMES = {
    "timeseries": "Time series",
    "stat": "Stat",
    "bargauge": "Bar gauge",
    "table": "Table",
    "state-timeline": "State timeline",
}


def _dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    variables: list[dict[str, Any]],
    *,
    settings: Settings,
) -> dict[str, Any]:
    kinds = sorted({p["type"] for p in layout.panels if p["type"] != "row"})
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "Prometheus that scrapes livestream-exporter",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__elements": {},
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *({"type": "panel", "id": k, "name": _PANEL_NAMES[k], "version": ""} for k in kinds),
        ],
        "annotations": {"list": []},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": [settings.dashboard_tags[0]],
                "targetBlank": False,
                "title": "Livestream dashboards",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }
        ],
        "panels": layout.panels,
        "refresh": settings.dashboard_refresh,
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(settings.dashboard_tags),
        "templating": {"list": [_datasource_variable(), *variables]},
        "time": {"from": settings.dashboard_time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def _rate(metric: str, sel: str, window: str = "$__rate_interval") -> str:
    return f"rate({metric}{{{sel}}}[{window}])"


def _engagement_rates(sel: str, by: str | None = None) -> list[tuple[str, str]]:
    return [
        (_per_minute("livestream_likes_total", sel, by), "Likes"),
        (_per_minute("livestream_gifts_total", sel, by), "Gifts"),
        (_per_minute("livestream_messages_total", sel, by), "Messages"),
    ]


# fmt: off
def overview(settings: Settings) -> dict[str, Any]:
    s = STREAM_SEL
    cf_avg = "average from watch time"
    top = f"topk(10,\n  {_audience(s)}\n)"
    live = f"({_one('livestream_live', s)} == 1)"
    started = f"{_one('livestream_started_timestamp_seconds', s)} * 1000"
    lay = Layout()
    lay.row("Audience")
    lay.add(6, 4, "stat", "Concurrent viewers", f"sum({_one('livestream_concurrent_viewers', s)})",
            description="Viewers watching now, summed over the selected streams that report them "
            "(Gjirafa, SwiftFederation, Fermion).")
    lay.add(6, 4, "stat", "Cloudflare average concurrent viewers",
            f"sum({_rate('livestream_viewer_seconds_total', s, '5m')})", decimals=1,
            description="Watch time per second over 5 minutes: the average concurrent audience "
            "of Cloudflare livestreams, which report no viewer count.")
    lay.add(4, 4, "stat", "Streams live", f"count{live} or vector(0)",
            description="Streams whose vendor says they are live (Fermion, Cloudflare).")
    lay.add(4, 4, "stat", "Streams polled", f"count({_one('livestream_target_up', s)})")
    lay.add(4, 4, "stat", "Targets up", f"avg({_one('livestream_target_up', s)})", unit="percentunit",
            decimals=0, thresholds=_thresholds((None, "red"), (0.9, "yellow"), (1, "green")))
    for by, legend in (("provider", "{{provider}}"), ("provider, source", "{{source}}")):
        lay.add(12, 9, "timeseries", f"Audience by {by.split()[-1]}",
                (f"sum by ({by}) ({_one('livestream_concurrent_viewers', s)})", legend),
                (f"sum by ({by}) ({_rate('livestream_viewer_seconds_total', s, '5m')})",
                 f"{legend} ({cf_avg})"),
                description=f"Concurrent viewers by {by.split()[-1]}; Cloudflare as watch time per second.")
    lay.add(12, 9, "timeseries", "Top streams", (top, "{{provider}} {{stream}}"),
            description="The ten largest audiences at each moment.")
    lay.add(12, 9, "bargauge", "Top streams now", (top, "{{provider}} {{stream}}"), instant=True,
            description="The ten largest audiences now.")

    lay.row("Live streams")
    lay.add(24, 8, "table", "Live streams",
            live,
            f"({_audience(s)})\nand on ({BY_STREAM}) {live}",
            f"{started}\nand on ({BY_STREAM}) {live}",
            table={"Value #A": "Live", "Value #B": "Audience", "Value #C": "Started"},
            overrides=[_column("Started", unit="dateTimeAsIso"), _stream_link()],
            description="Streams live now (livestream_live == 1), their audience and start time.")

    lay.row("Engagement")
    for expr, what in _engagement_rates(s):
        lay.add(8, 4, "stat", f"{what} per minute", expr, decimals=1)
    for expr, what in _engagement_rates(s, BY_STREAM):
        lay.add(8, 8, "timeseries", f"{what} per minute by stream", (expr, "{{provider}} {{stream}}"),
                options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}})
    return _dashboard(
        UID_OVERVIEW,
        "Livestream / Overview",
        "Audience across providers, top streams, live streams and engagement (livestream-exporter).",
        lay,
        _chained_variables(stream=True),
        settings=settings,
    )


STATUS_MAP = _value_map(
    {1: ("LIVE", "green"), 2: ("IDLE", "blue"), 3: ("ERRORED", "red"), 4: ("INVOKED", "yellow")}
)
LIVE_MAP = _value_map({1: ("live", "green"), 0: ("not live", "text")})
UP_COLORS = _thresholds((None, "red"), (1, "green"))
NO_GRAPH = {"graphMode": "none"}


def stream(settings: Settings) -> dict[str, Any]:
    s = STREAM_SEL
    watch = f"sum by ({BY_STREAM}) ({_rate('livestream_viewer_seconds_total', s, '5m')})"
    status = "\n+ ".join(
        f"{code} * max by ({BY_STREAM}) (livestream_status{{{s}, status=\"{name}\"}})"
        for code, name in ((1, "LIVE"), (2, "IDLE"), (3, "ERRORED"), (4, "INVOKED"))
    )
    lay = Layout()
    lay.row("Audience")
    lay.add(4, 4, "stat", "Concurrent viewers", _one("livestream_concurrent_viewers", s))
    lay.add(4, 4, "stat", "Peak concurrent viewers", _one("livestream_peak_concurrent_viewers", s))
    lay.add(4, 4, "stat", "Unique viewers", _one("livestream_unique_viewers", s))
    lay.add(4, 4, "stat", "Average concurrent viewers (watch time)", watch, decimals=1,
            description="Cloudflare: watch time per second over 5 minutes.")
    lay.add(4, 4, "stat", "Viewers (cumulative)", _one("livestream_viewers_total", s),
            description="Tencent: viewers of the room so far.")
    lay.add(4, 4, "stat", "Gift senders", _one("livestream_gift_senders", s))
    lay.add(24, 9, "timeseries", "Viewers",
            (_one("livestream_concurrent_viewers", s), "concurrent"),
            (_one("livestream_peak_concurrent_viewers", s), "peak"),
            (_one("livestream_unique_viewers", s), "unique"),
            (watch, "average from watch time"))

    lay.row("Status")
    lay.add(12, 5, "state-timeline", "Status (Cloudflare)", (status, "{{stream}}"), mappings=STATUS_MAP,
            description="Cloudflare's livestream status: LIVE, IDLE, ERRORED or INVOKED.")
    lay.add(12, 5, "state-timeline", "Live", (_one("livestream_live", s), "{{stream}}"), mappings=LIVE_MAP,
            description="Fermion and Cloudflare: whether the vendor says the stream is live.")

    lay.row("Engagement")
    lay.add(16, 8, "timeseries", "Engagement per minute",
            *((expr, what.lower()) for expr, what in _engagement_rates(s)),
            (_per_minute("livestream_gift_coins_total", s), "gift coins"),
            (_per_minute("livestream_instructor_messages_total", s), "instructor messages"),
            (_per_minute("livestream_polls_total", s), "polls"),
            (_per_minute("livestream_viewers_total", s), "new viewers"))
    lay.add(8, 8, "timeseries", "Session time per second",
            (f"sum by ({BY_STREAM}) ({_rate('livestream_viewer_seconds_total', s)})", "viewer seconds"),
            (f"sum by ({BY_STREAM}) ({_rate('livestream_ingest_seconds_total', s)})", "ingest seconds"),
            description="Cloudflare: watch time and ingest time accrued per second.")

    lay.row("Timing and polling")
    for title, metric in (("Started", "started"), ("Ended", "ended"), ("Data point time", "data")):
        lay.add(5 if metric != "ended" else 4, 4, "stat", title,
                f"{_one(f'livestream_{metric}_timestamp_seconds', s)} * 1000", unit="dateTimeAsIso",
                options=NO_GRAPH)
    lay.add(5, 4, "stat", "Duration", _one("livestream_duration_seconds", s), unit="s")
    lay.add(5, 4, "stat", "Data point age", f"time() - {_one('livestream_data_timestamp_seconds', s)}",
            unit="s",
            description="Age of the vendor's interval or point the values come from "
            "(Gjirafa, SwiftFederation).")
    lay.add(6, 4, "stat", "Target up", _one("livestream_target_up", s), mappings=UP_MAP,
            thresholds=UP_COLORS, options=NO_GRAPH)
    lay.add(6, 4, "stat", "Last success age",
            f"time() - {_one('livestream_target_last_success_timestamp_seconds', s)}", unit="s",
            description="Seconds since the last successful poll of the stream.")
    lay.add(12, 4, "timeseries", "Poll duration",
            (_one("livestream_target_poll_duration_seconds", s), "poll"),
            unit="s")
    return _dashboard(
        UID_STREAM,
        "Livestream / Stream",
        "One stream in detail: viewers, status, engagement, timing and polling (livestream-exporter).",
        lay,
        _chained_variables(stream=True, single_stream=True),
        settings=settings,
    )


def exporter(settings: Settings) -> dict[str, Any]:
    s = SOURCE_SEL
    by = "provider, source"
    requests = f"sum by ({by}) ({_rate('livestream_exporter_api_requests_total', s)})"
    failed = _rate("livestream_exporter_api_requests_total", s + ', code!~"2.."')
    budget = _one("livestream_exporter_rate_limit_requests_per_second", s, by)
    buckets = _rate("livestream_exporter_api_request_duration_seconds_bucket", s)
    age = f"time() - {_one('livestream_target_last_success_timestamp_seconds', s)}"
    up = _one("livestream_target_up", s)
    own = "and on (job, instance) livestream_exporter_build_info"
    lay = Layout()
    lay.row("Polling")
    lay.add(4, 4, "stat", "Targets up", f"sum({up})")
    lay.add(4, 4, "stat", "Targets down", f"count({up} == 0) or vector(0)",
            thresholds=_thresholds((None, "green"), (1, "red")))
    lay.add(4, 4, "stat", "Targets polled", f"sum({_one('livestream_exporter_targets', s, by)})",
            description="Targets polled, configured and discovered (every replica reports its "
            "sources' totals: counted once).")
    lay.add(4, 4, "stat", "Build",
            ("count by (version, python_version) (livestream_exporter_build_info)",
             "{{version}} (Python {{python_version}})"),
            options={"textMode": "name", "graphMode": "none", "colorMode": "none"})
    lay.add(4, 4, "stat", "Config reload", "min(livestream_exporter_config_last_reload_successful)",
            mappings=_value_map({1: ("OK", "green"), 0: ("FAILED", "red")}), thresholds=UP_COLORS,
            options=NO_GRAPH)
    lay.add(4, 4, "stat", "Last successful reload",
            "max(livestream_exporter_config_last_reload_success_timestamp_seconds) * 1000",
            unit="dateTimeFromNow", options={"graphMode": "none", "colorMode": "none"})
    lay.add(12, 8, "timeseries", "Poll success by source",
            (f"avg by ({by}) ({up})", "{{source}}"),
            unit="percentunit", min_=0, max_=1,
            description="Share of the source's targets whose last poll succeeded.")
    lay.add(12, 8, "timeseries", "Data age",
            (f"max by ({by}) ({age})", "{{source}} oldest"),
            (_one("livestream_exporter_poll_interval_seconds", s, by), "{{source}} interval"),
            unit="s", description="Seconds since the last successful poll of the source's stalest target, "
            "against its effective poll interval.")
    lay.add(12, 8, "state-timeline", "Target up", (up, "{{source}} {{stream}}"),
            mappings=UP_MAP, thresholds=UP_COLORS)
    lay.add(12, 8, "table", "Targets",
            up, f"max by ({BY_STREAM}) ({age})", _one("livestream_target_poll_duration_seconds", s),
            table={"Value #A": "Up", "Value #B": "Data age", "Value #C": "Poll duration"},
            overrides=[_column("Data age", unit="s"), _column("Poll duration", unit="s"), _stream_link(),
                       _column("Up", mappings=UP_MAP, thresholds=UP_COLORS,
                               **{"custom.cellOptions": {"type": "color-background"}})])
    lay.add(12, 8, "timeseries", "Poll duration",
            (f"max by ({by}) (livestream_target_poll_duration_seconds{{{s}}})", "{{source}} max"), unit="s")
    lay.add(12, 8, "timeseries", "Skipped points",
            (f"sum by ({by}) (increase(livestream_exporter_skipped_points_total{{{s}}}[$__rate_interval]))",
             "{{source}}"),
            description="Vendor data points skipped because they were malformed.")

    lay.row("Vendor APIs")
    lay.add(12, 8, "timeseries", "API requests by endpoint and code",
            (f"sum by ({by}, endpoint, code) ({_rate('livestream_exporter_api_requests_total', s)})",
             "{{source}} {{endpoint}} {{code}}"), unit="reqps")
    lay.add(12, 8, "timeseries", "API error ratio",
            (f"(sum by ({by}) ({failed}) or 0 * {requests})\n/ {requests}", "{{source}}"),
            unit="percentunit", min_=0,
            description="Requests answered with anything but 2xx, or that timed out or failed.")
    lay.add(12, 8, "timeseries", "API latency percentiles",
            *((f"histogram_quantile({q}, sum by (le, {by}, endpoint) ({buckets}))",
               f"p{round(q * 100)} {{{{source}}}} {{{{endpoint}}}}") for q in (0.5, 0.9, 0.99)),
            unit="s")
    lay.add(12, 8, "timeseries", "Throttled answers",
            (f"sum by ({by}) ({_rate('livestream_exporter_throttled_total', s)})", "{{source}}"),
            unit="reqps", description="HTTP 429 or a vendor's 'too frequent' answers.")

    lay.row("Budget and scheduling")
    lay.add(12, 8, "timeseries", "Budget in use", (f"{requests}\n/ on ({by}) {budget}", "{{source}}"),
            unit="percentunit", min_=0, thresholds=_thresholds((None, "green"), (0.8, "yellow"), (1, "red")),
            custom={"thresholdsStyle": {"mode": "line"}},
            description="Request rate against the budget in force (the tightest rate-limit window).")
    lay.add(12, 8, "timeseries", "Request rate and budget",
            (requests, "{{source}} sent"), (budget, "{{source}} budget"), unit="reqps")
    lay.add(8, 8, "timeseries", "Effective poll interval",
            (_one("livestream_exporter_poll_interval_seconds", s, by), "{{source}}"), unit="s",
            description="The configured interval, lengthened where the budget requires it.")
    lay.add(8, 8, "timeseries", "Rate limiter waits",
            (f"sum by ({by}) ({_rate('livestream_exporter_rate_limit_waits_total', s)})", "{{source}}"),
            unit="reqps", description="Requests the rate limiter delayed to stay within the budget.")
    lay.add(8, 8, "timeseries", "Targets by source",
            (_one("livestream_exporter_targets", s, by), "{{source}}"))

    lay.row("Process")
    lay.add(12, 6, "timeseries", "CPU",
            (f"rate(process_cpu_seconds_total[$__rate_interval])\n  {own}", "{{instance}}"),
            unit="percentunit")
    lay.add(12, 6, "timeseries", "Resident memory",
            (f"process_resident_memory_bytes\n  {own}", "{{instance}}"), unit="bytes")

    cluster_row(lay, s, by)
    return _dashboard(
        UID_EXPORTER,
        "Livestream / Exporter health",
        "livestream-exporter itself: polling, vendor API requests, latency, throttling, budgets, intervals.",
        lay,
        _chained_variables(stream=False),
        settings=settings,
    )

def cluster_row(lay: Layout, s: str, by: str) -> None:
    """Replicas sharing their budgets through Redis: a collapsed row, empty for a lone exporter."""
    replica = "on (job, instance) group_left (replica) livestream_exporter_cluster_replica_info"
    owned = f"livestream_exporter_cluster_owned_targets{{{s}}}"
    leader = f"livestream_exporter_cluster_source_leader{{{s}}}"
    alone = "Empty when the exporter runs alone (no cluster configured)."
    lay.row("Cluster", collapsed=True)
    lay.add(6, 4, "stat", "Cluster members",
            ("max(livestream_exporter_cluster_members)", "in Redis"),
            ("count(livestream_exporter_cluster_replica_info)", "scraped"),
            options={"graphMode": "none", "textMode": "value_and_name"},
            description="Replicas alive in Redis as the replicas see them, and replicas Prometheus "
            f"scrapes. Fewer in Redis: a replica is out of the cluster. {alone}")
    lay.add(6, 4, "stat", "Redis", "min(livestream_exporter_cluster_redis_up)",
            mappings=_value_map({1: ("reachable", "green"), 0: ("UNREACHABLE", "red")}),
            thresholds=UP_COLORS, options=NO_GRAPH,
            description="Whether every replica reaches Redis; one that does not polls with its share "
            f"of each budget. {alone}")
    lay.add(6, 4, "stat", "Targets owned by nobody",
            f"sum(\n  {_one('livestream_exporter_targets', s, by)}\n"
            f"  - sum by ({by}) (livestream_exporter_cluster_owned_targets{{{s}}})\n)",
            thresholds=_thresholds((None, "green"), (1, "red")), options=NO_GRAPH,
            description=f"The sources' targets minus those the replicas own. {alone}")
    lay.add(6, 4, "stat", "Sources without one leader",
            f"count(sum by ({by}) (livestream_exporter_cluster_source_leader{{{s}}}) != 1)\n"
            "  or 0 * count(livestream_exporter_cluster_members)",
            thresholds=_thresholds((None, "green"), (1, "red")), options=NO_GRAPH,
            description="Sources whose lease no replica or several hold (discovery and app-level "
            f"requests). {alone}")
    lay.add(12, 8, "timeseries", "Owned targets by replica",
            (f"sum by (replica, {by}) (\n  {owned}\n  * {replica}\n)",
             "{{replica}} {{source}}"),
            description=f"Targets each replica polls and exports, by source. {alone}")
    lay.add(12, 8, "table", "Source leaders",
            f"max by ({by}, replica) (\n  {leader}\n  * {replica}\n) == 1",
            table={"replica": "Leaseholder"},
            overrides=[_column("Value", **{"custom.hidden": True})],
            description="The replica holding each source's lease: it sends the source's discovery and "
            f"app-level requests. {alone}")


# fmt: on


def build_dashboards(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """File name -> dashboard, as the generator produces them (default settings unless given)."""
    s = settings or load()
    return {
        "livestream-overview.json": overview(s),
        "livestream-stream.json": stream(s),
        "livestream-exporter.json": exporter(s),
    }


def render(dashboard: Mapping[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """File name -> dashboard, as committed."""
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


# ------------------------------------------------------------- query helpers


def _all_panels(panels: Iterable[Panel]) -> Iterable[Panel]:
    for p in panels:
        yield p
        yield from _all_panels(p.get("panels", []))


def iter_panels(dashboard: Mapping[str, Any]) -> list[Panel]:
    """Every panel, rows' nested panels included."""
    return list(_all_panels(dashboard.get("panels", [])))


def iter_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expr) of every panel query, in panel order, with Grafana variables left in."""
    return [
        (p["title"], t["expr"]) for p in iter_panels(dashboard) for t in p.get("targets", []) if t.get("expr")
    ]


def iter_variable_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(variable name, label_values(...) query) of every query variable."""
    out = []
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]
            out.append((v["name"], q["query"] if isinstance(q, dict) else q))
    return out


_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def _escape(value: str) -> str:
    """Grafana's escaping of a multi-value for a regex matcher inside a PromQL string literal."""
    value = value.replace("\\", "\\\\\\\\")
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value)


def substitute(expr: str, variables: Mapping[str, str | Sequence[str]] | None = None) -> str:
    """Replace Grafana variables in `expr` as Grafana would for a Prometheus query.

    `variables` maps a name to a raw string (put in as is, e.g. ".*") or a list of values
    (escaped and joined as Grafana does for multi-value variables: `(a|b)`). A template
    variable not given becomes ".*", the dashboards' All value; `$__rate_interval`,
    `$__interval` and `$__range` become BUILTINS unless given.
    """
    given = dict(variables or {})

    def value(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        v = given.get(name, BUILTINS.get(name, ALL))
        if isinstance(v, str):
            return v
        values = [_escape(x) for x in v]
        return values[0] if len(values) == 1 else "(" + "|".join(values) + ")"

    return _VAR.sub(value, expr)


_PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
}
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*\w+\s*\)$", re.DOTALL)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACKETS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (function names, keywords and labels left out)."""
    e = _LABEL_VALUES.sub(r"\1", expr.strip())
    e = _STRING.sub('""', e)
    e = _BRACKETS.sub(" ", e)
    e = _GROUPING.sub(" ", e)
    return {m for m in _IDENT.findall(e) if m.lower() not in _PROMQL_KEYWORDS}


# ---------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--check", action="store_true", help="exit 1 if the committed JSON is not what the code makes"
    )
    ap.add_argument(
        "--out", type=Path, default=DASHBOARD_DIR, help="directory to write (default: %(default)s)"
    )
    args = ap.parse_args(argv)
    dashboards = build_dashboards()
    stale = []
    for name, d in dashboards.items():
        path = args.out / name
        text = render(d)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m grafana.generate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
