"""The monitoring mixin: rule files and dashboards generated from one settings file.

The committed files must be exactly what the default settings make (else an edit of a
generated file would be lost at the next regeneration), and a setting a user overrides must
really reach the rules Prometheus evaluates, not only the text of a comment.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import mixin
from grafana.rules import ALERTING_FILE, RECORDING_FILE, RULES_DIR
from grafana.settings import DEFAULT_CONFIG, Duration, SettingsError, load
from tests.tooling import need


def _rules(path: Path) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return {r.get("alert") or r["record"]: r for g in doc["groups"] for r in g["rules"]}


def _override(tmp_path: Path, settings: dict[str, Any]) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_regenerating_changes_nothing() -> None:
    assert mixin.main(["--check"]) == 0, "run: python -m grafana.mixin"


def test_check_and_write_into_a_directory(tmp_path: Path) -> None:
    assert mixin.main(["--check", "--out", str(tmp_path)]) == 1
    assert mixin.main(["--out", str(tmp_path)]) == 0
    assert mixin.main(["--check", "--out", str(tmp_path)]) == 0
    for name in (RECORDING_FILE, ALERTING_FILE):
        assert (tmp_path / "prometheus" / name).read_text() == (RULES_DIR / name).read_text()
    assert len(list((tmp_path / "dashboards").glob("*.json"))) == 3
    (tmp_path / "prometheus" / ALERTING_FILE).write_text("edited by hand\n")
    assert mixin.main(["--check", "--out", str(tmp_path)]) == 1


def test_overridden_settings_reach_the_rules_and_dashboards(tmp_path: Path) -> None:
    config = _override(
        tmp_path,
        {
            "exporter_job_selector": 'job="streaming-metrics", env="prod"',
            "viewer_drop": {"fraction": 0.3, "baseline_from": "1h"},
            "runbook_base_url": "https://wiki.example/runbooks/livestream",
            "alerts": {"LivestreamExporterDown": {"severity": "warning", "for": "90s"}},
            "dashboards": {"tags": ["video"]},
            "replica_labels": ["instance", "pod", "container"],
        },
    )
    out = tmp_path / "out"
    assert mixin.main(["--config", str(config), "--out", str(out)]) == 0
    recording = _rules(out / "prometheus" / RECORDING_FILE)
    alerting = _rules(out / "prometheus" / ALERTING_FILE)
    assert (
        recording["instance:livestream_exporter_up:value"]["expr"]
        == 'up{job="streaming-metrics", env="prod"}'
    )
    text = (out / "prometheus" / RECORDING_FILE).read_text() + (
        out / "prometheus" / ALERTING_FILE
    ).read_text()
    assert ".*livestream.*" not in text
    assert recording["global:livestream_viewer_drop_fraction:threshold"]["expr"] == "vector(0.3)"
    assert recording["global:livestream_viewer_drop_min_baseline:threshold"]["expr"] == "vector(20)"
    baseline = recording["stream:livestream_audience:baseline"]["expr"]
    assert baseline == "avg_over_time(stream:livestream_audience:current[50m] offset 10m)"
    assert "1 hour to 10 minutes ago" in alerting["LivestreamViewerDrop"]["annotations"]["description"]
    down = alerting["LivestreamExporterDown"]
    assert down["labels"] == {"severity": "warning"} and down["for"] == "1m30s"
    assert "at least 90 seconds" in down["annotations"]["description"]
    assert (
        down["annotations"]["runbook_url"]
        == "https://wiki.example/runbooks/livestream#livestreamexporterdown"
    )
    assert recording["stream:livestream_concurrent_viewers:max"]["expr"] == (
        "max without (instance, pod, container) (livestream_concurrent_viewers)"
    )
    assert "without (instance, pod)" not in text.replace("without (instance, pod, container)", "")
    overview = json.loads((out / "dashboards" / "livestream-overview.json").read_text())
    assert overview["tags"] == ["video"] and overview["links"][0]["tags"] == ["video"]


@pytest.mark.prometheus
def test_overridden_job_selector_fires_the_exporter_down_alert(tmp_path: Path) -> None:
    """promtool evaluates the generated rules: the alert watches the configured job, not the default."""
    promtool = need("promtool", "Debian package prometheus")
    config = _override(tmp_path, {"exporter_job_selector": 'job="streaming-metrics"'})
    out = tmp_path / "out"
    assert mixin.main(["--config", str(config), "--out", str(out)]) == 0
    unit = {
        "rule_files": [str(out / "prometheus" / RECORDING_FILE), str(out / "prometheus" / ALERTING_FILE)],
        "evaluation_interval": "1m",
        "group_eval_order": ["livestream-tuning", "livestream-recording", "livestream-exporter"],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'up{job="streaming-metrics",instance="exp:9733"}', "values": "0x10"},
                    {"series": 'up{job="livestream-exporter",instance="old:9733"}', "values": "1x10"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "LivestreamExporterDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "streaming-metrics",
                                    "instance": "exp:9733",
                                },
                                "exp_annotations": {
                                    "summary": "Prometheus cannot scrape livestream-exporter exp:9733",
                                    "description": "Scrapes of exp:9733 (job streaming-metrics) have failed"
                                    " for at least 5 minutes. Without the exporter no livestream alert can"
                                    " fire.",
                                    "runbook_url": load().runbook_url("LivestreamExporterDown"),
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "unit.yml"
    path.write_text(yaml.safe_dump(unit))
    r = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"viewer_drop": {"fractoin": 0.4}}, "viewer_drop: unknown setting(s) fractoin"),
        ({"viewer_drop": {"fraction": 2}}, "viewer_drop.fraction: must be a number from 0 to 1"),
        ({"alerts": {"LivestreamTargetDown": {"for": "5 minutes"}}}, "alerts.LivestreamTargetDown.for:"),
        ({"alerts": {"LivestreamErrored": {"severity": "page"}}}, "alerts.LivestreamErrored.severity:"),
        ({"alerts": {"LivestreamTypo": {"severity": "warning", "for": "1m"}}}, "alerts: unknown setting(s)"),
        ({"exporter_job_selector": "{job='x'}"}, "exporter_job_selector: label matchers without braces"),
        ({"viewer_drop": {"baseline_to": "2m"}}, "viewer_drop.baseline_to: must be longer than"),
        ({"replica_labels": []}, "replica_labels: must be a non-empty list of distinct label names"),
        ({"replica_labels": "instance"}, "replica_labels: must be a non-empty list"),
        ({"replica_labels": ["instance", "pod-name"]}, "replica_labels: must be a non-empty list"),
        ({"replica_labels": ["instance", "stream"]}, "replica_labels: stream identifies a target"),
        ({"alerts": {"LivestreamExporterClusterDegraded": {"severity": "info"}}}, "ClusterDegraded.severity"),
    ],
)
def test_bad_settings_are_errors_naming_the_key(tmp_path: Path, settings: dict[str, Any], error: str) -> None:
    config = _override(tmp_path, settings)
    with pytest.raises(SettingsError, match=rf"^{config}.*{re.escape(error)}"):
        load(config)
    assert mixin.main(["--check", "--config", str(config)]) == 2


def test_defaults_come_from_the_settings_file() -> None:
    s = load()
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert s.exporter_job_selector == doc["exporter_job_selector"]
    assert s.viewer_drop_fraction == doc["viewer_drop"]["fraction"]
    assert s.alerts["LivestreamViewerDrop"].keep_firing_for == Duration.parse("10m")
    assert s.replica_labels == tuple(doc["replica_labels"]) == ("instance", "pod")


def test_durations() -> None:
    assert str(Duration.parse("90s")) == "1m30s" and Duration.parse("90s").words() == "90 seconds"
    assert str(Duration.parse("60m")) == "1h" and Duration.parse("1h").words() == "1 hour"
    assert Duration.parse("1h30m").words() == "90 minutes"
    for bad in ("", "5", "0m", "1d", "5 m"):
        with pytest.raises(ValueError, match="duration"):
            Duration.parse(bad)
