"""The Grafana dashboards: generated from code, import-ready, and querying only real metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.model.catalog import CATALOG
from grafana import generate as gen
from tests.tooling import need, need_node_module

BUILT = gen.build_dashboards()
COMMITTED = gen.load_dashboards()

#: the exporter's own series beside the vendor metrics of CATALOG: per-target health, per-source
#: exporter metrics, and the standard process metrics
HEALTH_METRICS = {
    "livestream_target_up",
    "livestream_target_last_success_timestamp_seconds",
    "livestream_target_poll_duration_seconds",
}
EXPORTER_METRICS = {
    "livestream_exporter_api_requests_total",
    "livestream_exporter_api_request_duration_seconds_bucket",
    "livestream_exporter_throttled_total",
    "livestream_exporter_rate_limit_waits_total",
    "livestream_exporter_rate_limit_requests_per_second",
    "livestream_exporter_poll_interval_seconds",
    "livestream_exporter_targets",
    "livestream_exporter_skipped_points_total",
    "livestream_exporter_build_info",
    "livestream_exporter_config_last_reload_successful",
    "livestream_exporter_config_last_reload_success_timestamp_seconds",
}
#: exported only by replicas that share their budgets through Redis
CLUSTER_METRICS = {
    "livestream_exporter_cluster_members",
    "livestream_exporter_cluster_owned_targets",
    "livestream_exporter_cluster_source_leader",
    "livestream_exporter_cluster_redis_up",
    "livestream_exporter_cluster_replica_info",
}
STANDARD_PROCESS_METRICS = {"process_cpu_seconds_total", "process_resident_memory_bytes"}
KNOWN_METRICS = set(CATALOG) | HEALTH_METRICS | EXPORTER_METRICS | CLUSTER_METRICS | STANDARD_PROCESS_METRICS

DASHBOARDS = sorted(BUILT)


def _walk(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    """(path, key, value) of every dict entry in a JSON document."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((path, k, v))
            out += _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _walk(v, f"{path}[{i}]")
    return out


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in gen.iter_panels(d) if p["type"] != "row"]


def test_committed_json_is_what_the_generator_makes() -> None:
    assert sorted(COMMITTED) == DASHBOARDS, "run: python -m grafana.generate"
    for name, d in BUILT.items():
        text = (gen.DASHBOARD_DIR / name).read_text()
        assert text == gen.render(d), (
            f"{name} drifted from grafana/generate.py: run python -m grafana.generate"
        )
    assert gen.main(["--check"]) == 0


def test_generator_writes_what_it_checks(tmp_path: Path) -> None:
    assert gen.main(["--check", "--out", str(tmp_path)]) == 1
    assert gen.main(["--out", str(tmp_path)]) == 0
    assert gen.main(["--check", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == DASHBOARDS


@pytest.mark.parametrize("name", DASHBOARDS)
def test_import_ready(name: str) -> None:
    d = COMMITTED[name]
    assert d["schemaVersion"] >= 38
    assert d["id"] is None
    assert re.fullmatch(r"[a-z0-9-]{1,40}", d["uid"])
    assert d["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "Prometheus that scrapes livestream-exporter",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    requires = {(r["type"], r["id"]) for r in d["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= requires
    assert {("panel", p["type"]) for p in _panels(d)} <= requires
    grafana_version = next(r["version"] for r in d["__requires"] if r["id"] == "grafana")
    assert int(grafana_version.split(".")[0]) >= 10


def test_uids_and_titles_unique() -> None:
    uids = [d["uid"] for d in COMMITTED.values()]
    titles = [d["title"] for d in COMMITTED.values()]
    assert len(set(uids)) == len(uids) == 3
    assert len(set(titles)) == len(titles)
    assert set(uids) == {gen.UID_OVERVIEW, gen.UID_STREAM, gen.UID_EXPORTER}


@pytest.mark.parametrize("name", DASHBOARDS)
def test_datasource_variable_everywhere(name: str) -> None:
    d = COMMITTED[name]
    variables = d["templating"]["list"]
    ds_var = variables[0]
    assert ds_var["name"] == "datasource"
    assert ds_var["type"] == "datasource"
    assert ds_var["query"] == "prometheus"
    assert ds_var["current"]["value"] == "${DS_PROMETHEUS}"
    for p in _panels(d):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
    for v in variables[1:]:
        assert v["type"] == "query"
        assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, v["name"]
    # no datasource written anywhere but as the variable, and the import input only in its current value
    for path, key, value in _walk(d):
        if key == "datasource":
            assert value == {"type": "prometheus", "uid": "${datasource}"}, path
        if key == "uid" and path:
            assert value == "${datasource}", path
    assert json.dumps(d).count("${DS_PROMETHEUS}") == 2


@pytest.mark.parametrize("name", DASHBOARDS)
def test_queries_use_only_exported_metrics(name: str) -> None:
    d = COMMITTED[name]
    queries = gen.iter_queries(d) + gen.iter_variable_queries(d)
    assert queries
    for title, expr in queries:
        names = gen.metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= KNOWN_METRICS, f"{title}: unknown metrics {names - KNOWN_METRICS}"


def test_dashboards_cover_the_metrics() -> None:
    used = {m for d in COMMITTED.values() for _, e in gen.iter_queries(d) for m in gen.metric_names(e)}
    informational = {"livestream_stream_info", "livestream_app_livestreams"}
    app_level = {"livestream_app_viewer_seconds_total", "livestream_app_ingest_seconds_total"}
    assert set(CATALOG) - informational - app_level <= used
    assert used >= HEALTH_METRICS | EXPORTER_METRICS | CLUSTER_METRICS


@pytest.mark.parametrize("name", DASHBOARDS)
def test_layout(name: str) -> None:
    d = COMMITTED[name]
    panels = gen.iter_panels(d)
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
    titles = [p["title"] for p in _panels(d)]
    assert len(set(titles)) == len(titles), "panel titles identify queries in tests: keep them unique"


def _panel(name: str, title: str) -> dict[str, Any]:
    return next(p for p in _panels(COMMITTED[name]) if p["title"] == title)


def test_units() -> None:
    unit = lambda name, title: _panel(name, title)["fieldConfig"]["defaults"]["unit"]  # noqa: E731
    health = "livestream-exporter.json"
    assert unit(health, "API latency percentiles") == "s"
    assert unit(health, "API requests by endpoint and code") == "reqps"
    assert unit(health, "Throttled answers") == "reqps"
    assert unit(health, "Effective poll interval") == "s"
    assert unit(health, "Data age") == "s"
    assert unit(health, "Budget in use") == "percentunit"
    assert unit("livestream-overview.json", "Concurrent viewers") == "short"
    assert unit("livestream-stream.json", "Last success age") == "s"
    for d in COMMITTED.values():
        for p in _panels(d):
            assert p["fieldConfig"]["defaults"]["unit"], p["title"]


def test_overview_variables_chain() -> None:
    variables = {v["name"]: v for v in COMMITTED["livestream-overview.json"]["templating"]["list"]}
    assert list(variables) == ["datasource", "provider", "source", "stream"]
    assert "$provider" not in variables["provider"]["definition"]
    assert "$provider" in variables["source"]["definition"]
    assert {"$provider", "$source"} <= set(re.findall(r"\$\w+", variables["stream"]["definition"]))
    for name in ("provider", "source", "stream"):
        v = variables[name]
        assert v["multi"] and v["includeAll"] and v["allValue"] == ".*"
        assert v["definition"].startswith("label_values(")
    stream_var = COMMITTED["livestream-stream.json"]["templating"]["list"][-1]
    assert stream_var["name"] == "stream" and not stream_var["multi"] and not stream_var["includeAll"]


def test_overview_content() -> None:
    exprs = dict(gen.iter_queries(COMMITTED["livestream-overview.json"]))
    everything = "\n".join(e for _, e in gen.iter_queries(COMMITTED["livestream-overview.json"]))
    assert "sum by (provider) (max by (provider, source, stream) (livestream_concurrent_viewers" in everything
    assert "rate(livestream_viewer_seconds_total{" in everything and "[5m])" in everything
    assert exprs["Top streams"].startswith("topk(10,")
    assert "livestream_live{" in exprs["Live streams"] and "== 1" in exprs["Live streams"]
    for what in ("likes", "gifts", "messages"):
        assert f"rate(livestream_{what}_total" in exprs[f"{what.title()} per minute"]
        assert exprs[f"{what.title()} per minute"].endswith("* 60")


#: series of the whole process or cluster, without provider/source labels
PROCESS_WIDE = {
    "livestream_exporter_build_info",
    "livestream_exporter_config_last_reload_successful",
    "livestream_exporter_config_last_reload_success_timestamp_seconds",
    "livestream_exporter_cluster_members",
    "livestream_exporter_cluster_redis_up",
    "livestream_exporter_cluster_replica_info",
    *STANDARD_PROCESS_METRICS,
}


def test_every_panel_query_filters_by_its_variables() -> None:
    for name, d in COMMITTED.items():
        wanted = [v["name"] for v in d["templating"]["list"][1:]]
        for title, expr in gen.iter_queries(d):
            if gen.metric_names(expr) <= PROCESS_WIDE:
                continue  # no provider/source labels
            for var in wanted:
                assert f'{var}=~"${var}"' in expr, f"{name} {title}: not filtered by ${var}"


def test_substitute() -> None:
    expr = 'rate(x{provider=~"$provider", stream=~"${stream}"}[$__rate_interval])'
    assert gen.substitute(expr) == 'rate(x{provider=~".*", stream=~".*"}[1m])'
    assert (
        gen.substitute(expr, {"provider": ["cloudflare", "tencent"], "stream": ["live.example.com/a"]})
        == 'rate(x{provider=~"(cloudflare|tencent)", stream=~"live\\\\.example\\\\.com/a"}[1m])'
    )
    assert gen.substitute(expr, {"provider": "fermion", "__rate_interval": "30s"}).endswith('".*"}[30s])')
    assert gen.substitute("[[stream]]", {"stream": "a"}) == "a"
    for d in COMMITTED.values():
        for _, e in gen.iter_queries(d) + gen.iter_variable_queries(d):
            assert "$" not in gen.substitute(e)


def test_metric_names() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, provider) (rate(a_bucket{code!~"2.."}[$__rate_interval])))'
        " / on (provider) group_left (name) b_info * 1e3 and c or vector(0)"
    )
    assert gen.metric_names(expr) == {"a_bucket", "b_info", "c"}
    assert gen.metric_names('label_values(up{job=~"$job"}, instance)') == {"up"}


def test_iter_queries_returns_every_target() -> None:
    for d in COMMITTED.values():
        n = sum(len(p["targets"]) for p in _panels(d))
        queries = gen.iter_queries(d)
        assert len(queries) == n
        assert all(isinstance(t, str) and isinstance(e, str) and e for t, e in queries)


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query, with variables substituted, as a recording rule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is missing: make tools installs it")
        pytest.skip("promtool is not installed")
    rules = [
        {"record": f"dashboard:query:{i}", "expr": gen.substitute(expr, {"provider": ["a.b", "c"]})}
        for i, (_, expr) in enumerate(q for d in COMMITTED.values() for q in gen.iter_queries(d))
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_provisioning_examples() -> None:
    base = gen.DASHBOARD_DIR.parent / "provisioning"
    dashboards = yaml.safe_load((base / "dashboards.yml").read_text())
    assert dashboards["apiVersion"] == 1 and dashboards["providers"][0]["type"] == "file"
    datasources = yaml.safe_load((base / "datasources.yml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"


# -- Grafana's own schema ----------------------------------------------------------------------

#: Keys Grafana's import and query-variable editor write that the Dashboard type of @grafana/schema
#: does not declare: the export envelope (`__inputs`, `__elements`, `__requires`, read by the
#: import dialog, never part of the saved model) and a query variable's `definition` (the text
#: the variables list shows). Dropped before the check so that the check covers everything else.
_ENVELOPE = ("__inputs", "__elements", "__requires")
_VARIABLE_EXTRAS = ("definition",)

#: JSON cannot name a TypeScript enum member, only its value; Plain<T> accepts an enum's string
#: values where the schema has the enum (FieldColorModeId, ThresholdsMode, MappingType, ...)
#: and is T everywhere else, excess-property checks included.
_PLAIN = (
    "type Plain<T> = T extends string ? (string extends T ? T : `${T}`)\n"
    "  : T extends number | boolean | null | undefined ? T\n"
    "  : T extends ReadonlyArray<infer U> ? Array<Plain<U>>\n"
    "  : T extends object ? { [K in keyof T]: Plain<T[K]> }\n"
    "  : T;\n"
)


def _schema_input(dashboard: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in dashboard.items() if k not in _ENVELOPE}
    d["templating"] = {
        "list": [
            {k: v for k, v in var.items() if k not in _VARIABLE_EXTRAS} for var in d["templating"]["list"]
        ]
    }
    return d


def test_field_overrides_are_matcher_and_properties() -> None:
    """Every field override is one {matcher, properties} object; the tables' stream column links."""
    for name, d in {**BUILT, **COMMITTED}.items():
        for p in _panels(d):
            for o in p["fieldConfig"]["overrides"]:
                assert isinstance(o, dict) and set(o) == {"matcher", "properties"}, (name, p["title"], o)
            if p["title"] in {"Live streams", "Targets"}:
                links = [o for o in p["fieldConfig"]["overrides"] if o["matcher"]["options"] == "stream"]
                assert [prop["id"] for prop in links[0]["properties"]] == ["links"], (name, p["title"])


def test_dashboards_match_grafana_schema(tmp_path: Path) -> None:
    """Each committed dashboard type-checks as @grafana/schema's Dashboard (one strict tsc run)."""
    node = need("node", "Debian package nodejs")
    schema = need_node_module("@grafana/schema")
    tsc = need_node_module("typescript") / "bin" / "tsc"
    files = []
    for name, d in COMMITTED.items():
        ts = tmp_path / name.replace(".json", ".ts")
        ts.write_text(
            "import type { Dashboard } from '@grafana/schema';\n"
            + _PLAIN
            + f"export const dashboard: Plain<Dashboard> = {json.dumps(_schema_input(d), indent=1)};\n"
        )
        files.append(ts.name)
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "module": "esnext",
            "moduleResolution": "bundler",
            "target": "es2022",
            "types": [],
            "paths": {"@grafana/schema": [str(schema)]},
        },
        "files": files,
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    r = subprocess.run(
        [node, str(tsc), "--strict", "--noEmit", "-p", str(tmp_path / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


# -- several exporter replicas -----------------------------------------------------------------

#: every replica reports these of each whole source: summing them over replicas multiplies them
SOURCE_TOTALS = (
    "livestream_exporter_targets",
    "livestream_exporter_rate_limit_requests_per_second",
    "livestream_exporter_poll_interval_seconds",
)


def test_source_totals_are_taken_once_across_replicas() -> None:
    """Every query of a source total reads it through max by (provider, source)."""
    for name, d in COMMITTED.items():
        for title, expr in gen.iter_queries(d):
            for metric in SOURCE_TOTALS:
                for m in re.finditer(rf"\b{metric}\{{", expr):
                    assert expr[: m.start()].endswith("max by (provider, source) ("), (name, title, expr)


def test_per_stream_gauges_are_taken_once_across_replicas() -> None:
    """A stream's gauges are read through a max (per stream, or the largest of a source), never
    per series or summed: a stream that moved to another replica has two series for a while."""
    gauges = {m for m, d in CATALOG.items() if d.type == "gauge" and not d.app_level} | {
        "livestream_target_up",
        "livestream_target_last_success_timestamp_seconds",
        "livestream_target_poll_duration_seconds",
    }
    for name, d in COMMITTED.items():
        for title, expr in gen.iter_queries(d):
            for metric in gauges:
                for m in re.finditer(rf"\b{metric}\{{", expr):
                    assert re.search(r"max by \([^()]*\) \($", expr[: m.start()]), (name, title, expr)


def test_cluster_row_is_collapsed_and_last() -> None:
    d = COMMITTED["livestream-exporter.json"]
    row = d["panels"][-1]
    assert row["type"] == "row" and row["title"] == "Cluster" and row["collapsed"] is True
    names = {m for p in row["panels"] for t in p["targets"] for m in gen.metric_names(t["expr"])}
    assert names >= CLUSTER_METRICS
    outside = {m for p in d["panels"][:-1] for t in p.get("targets", []) for m in gen.metric_names(t["expr"])}
    assert not outside & CLUSTER_METRICS
