"""Alerting and recording rules: deploy/prometheus/*.yml.

`promtool check rules` and `promtool test rules` (the unit tests in deploy/prometheus/tests/)
must pass; the rest checks, without promtool, what the rule files promise their readers:
every alert has a severity, a summary, a description and a runbook section in docs/alerts.md,
every recording rule is named level:metric:operation, the tunables live in one group, and
every alert has unit tests that fire it and that must not fire it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.settings import ALERT_NAMES
from grafana.settings import load as load_settings
from tests.conftest import promtool

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "deploy" / "prometheus"
RECORDING = RULES_DIR / "livestream.rules.yml"
ALERTING = RULES_DIR / "livestream.alerts.yml"
UNIT_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "alerts.md"

ALERTS = set(ALERT_NAMES)
TUNING_GROUP = "livestream-tuning"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    return doc


def rules(path: Path) -> list[dict[str, Any]]:
    return [r for g in load(path)["groups"] for r in g["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in rules(ALERTING) if "alert" in r}


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = promtool()  # fails under CI=true when missing
    if tool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    return subprocess.run([tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


# -- promtool --------------------------------------------------------------------------------


@pytest.mark.prometheus
def test_promtool_check_rules() -> None:
    r = run_promtool("check", "rules", str(RECORDING), str(ALERTING))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.prometheus
@pytest.mark.parametrize("unit", UNIT_TESTS, ids=[p.stem for p in UNIT_TESTS])
def test_promtool_unit_tests(unit: Path) -> None:
    r = run_promtool("test", "rules", str(unit))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout, r.stdout + r.stderr


# -- what the files promise --------------------------------------------------------------------


def test_every_alert_is_there_with_severity_and_annotations() -> None:
    found = alerts()
    assert set(found) == ALERTS
    anchors = runbook_anchors()
    for name, rule in found.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        ann = rule["annotations"]
        assert ann["summary"].strip() and ann["description"].strip(), name
        assert "{{ $labels." in ann["summary"] + ann["description"], f"{name}: no templated labels"
        url = ann["runbook_url"]
        assert url.endswith(f"docs/alerts.md#{name.lower()}"), url
        assert name.lower() in anchors, f"docs/alerts.md has no section {name}"


def test_viewer_drop_has_for_and_keep_firing_for() -> None:
    rule = alerts()["LivestreamViewerDrop"]
    assert rule["for"] and rule["keep_firing_for"]


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the headings of docs/alerts.md."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def test_runbook_has_every_part_for_every_alert_and_tuning() -> None:
    text = RUNBOOK.read_text()
    assert "tuning" in runbook_anchors()
    for name in ALERTS:
        section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("Meaning", "Impact", "Diagnosis", "Mitigation"):
            assert f"**{part}.**" in section, f"{name}: no {part}"


def test_recording_rules_are_named_level_metric_operation() -> None:
    for rule in rules(RECORDING):
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_rules_use_only_recorded_series_that_exist() -> None:
    recorded = {r["record"] for r in rules(RECORDING)}
    for rule in rules(RECORDING) + rules(ALERTING):
        for used in re.findall(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b", rule["expr"]):
            assert used in recorded, f"{rule.get('alert') or rule.get('record')} uses undefined {used}"


def test_tunables_live_in_one_group() -> None:
    """Thresholds are recorded constants in livestream-tuning; the alerts have no literal
    fractions or audience sizes of their own."""
    groups = {g["name"]: g for g in load(RECORDING)["groups"]}
    tuning = {r["record"] for r in groups[TUNING_GROUP]["rules"]}
    assert {
        "global:livestream_viewer_drop_fraction:threshold",
        "global:livestream_viewer_drop_min_baseline:threshold",
        "global:livestream_data_stale_intervals:threshold",
        "global:livestream_data_stale_min_seconds:threshold",
        "instance:livestream_exporter_up:value",
    } <= tuning
    drop = alerts()["LivestreamViewerDrop"]["expr"]
    assert "global:livestream_viewer_drop_fraction:threshold" in drop
    assert "global:livestream_viewer_drop_min_baseline:threshold" in drop
    for rule in rules(ALERTING):
        code = "\n".join(line.split("#", 1)[0] for line in rule["expr"].splitlines())
        literals = set(re.findall(r"(?<![\w.:])\d+(?:\.\d+)?(?![\w.:])", code))
        # only the comparisons with 0/1 and the per-minute factor; thresholds are recorded
        assert literals <= {"0", "1", "60"}, f"{rule['alert']}: literal {literals} in the expression"
        assert "job=" not in code, f"{rule['alert']}: the job selector belongs in {TUNING_GROUP}"


def test_every_alert_has_unit_tests_that_fire_and_that_must_not() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for unit in UNIT_TESTS:
        doc = load(unit)
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
                for exp in check.get("exp_alerts") or []:
                    # a firing case checks labels and every annotation
                    assert "severity" in exp["exp_labels"], unit
                    assert set(exp["exp_annotations"]) == {"summary", "description", "runbook_url"}, unit
    assert fires == ALERTS, f"no firing test for {ALERTS - fires}"
    assert quiet == ALERTS, f"no must-not-fire test for {ALERTS - quiet}"


def test_unit_tests_load_the_rule_files() -> None:
    for unit in UNIT_TESTS:
        for f in load(unit)["rule_files"]:
            assert (unit.parent / f).resolve() in {RECORDING, ALERTING}, (unit, f)


#: raw series a rule may read per replica on purpose: whether that replica reaches Redis
PER_REPLICA = {"livestream_exporter_cluster_redis_up"}
_RAW = re.compile(r"(?<![\w:])livestream_[a-z_]+(?![\w:])")


def test_raw_series_are_read_without_the_replica_labels() -> None:
    """Every rule reads the exporter's raw series through `max|min|sum without (<replica_labels>)`
    (with rate() inside for counters): a target that moves to another replica changes them, and
    a stream's baseline, rate windows and `for` must not start over (docs/alerts.md#several-replicas).
    """
    labels = re.escape(", ".join(load_settings().replica_labels))
    wrapped = re.compile(rf"(?:max|min|sum) without \({labels}\) \((?:rate\()?$")
    for rule in rules(RECORDING) + rules(ALERTING):
        code = "\n".join(line.split("#", 1)[0] for line in rule["expr"].splitlines())
        for m in _RAW.finditer(code):
            if m.group(0) in PER_REPLICA:
                continue
            name = rule.get("alert") or rule.get("record")
            assert wrapped.search(code[: m.start()]), f"{name} reads {m.group(0)} per replica"


def test_stream_and_source_alerts_carry_no_replica_label() -> None:
    """The unit tests' expected labels of every alert but the per-target ones have no instance."""
    per_target = {"LivestreamExporterDown", "LivestreamExporterClusterDegraded"}
    replica_labels = set(load_settings().replica_labels)
    for unit in UNIT_TESTS:
        for case in load(unit)["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["alertname"] in per_target:
                    continue
                for exp in check.get("exp_alerts") or []:
                    assert not replica_labels & set(exp["exp_labels"]), (unit.name, check["alertname"])
