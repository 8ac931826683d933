"""A real Prometheus and Alertmanager on loopback, for end-to-end tests of rules and dashboards.

Both come from Debian's packages (`prometheus`, `prometheus-alertmanager`); `make test`
installs them.  Under CI=true a missing binary fails the test instead of skipping it.

Production rule files use production durations (`for: 5m`); `scale_rules` rewrites every
duration in `expr`, `for` and `keep_firing_for` by a factor so the same rules run in
seconds against an exporter polling every second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.model.durations import format_duration, parse_duration

_DURATION = re.compile(r"(?<![\w.])((?:\d+(?:ms|y|w|d|h|m|s))+)(?![\w])")


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        msg = f"{binary} is missing: make test installs Debian's prometheus and prometheus-alertmanager"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scale(text: str, factor: float) -> str:
    """Divide every Prometheus duration in `text` by `factor` (5m / 60 -> 5s), never below 1ms."""

    def sub(m: re.Match[str]) -> str:
        seconds = parse_duration(m.group(1)) / factor
        return format_duration(max(seconds, 0.001))

    return _DURATION.sub(sub, text)


def scale_rules(src: Path, dst: Path, factor: float) -> None:
    doc = yaml.safe_load(src.read_text())
    for group in doc.get("groups", []):
        if "interval" in group:
            group["interval"] = scale(str(group["interval"]), factor)
        for rule in group.get("rules", []):
            for key in ("expr", "for", "keep_firing_for"):
                if key in rule:
                    rule[key] = scale(str(rule[key]), factor)
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))


def http_json(url: str, data: dict[str, str] | None = None) -> Any:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=10) as r:
        return json.loads(r.read())


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {within}s:\n{log.read_text()[-3000:]}")


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    workdir: Path

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        doc = http_json(f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode(params)}")
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
        doc = http_json(f"{self.prometheus}/api/v1/query_range?{urllib.parse.urlencode(params)}")
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        doc = http_json(f"{self.prometheus}/api/v1/alerts")
        alerts: list[dict[str, Any]] = doc["data"]["alerts"]
        return alerts


@contextmanager
def prometheus_stack(
    workdir: Path,
    *,
    exporter: str,
    webhook: str,
    rule_files: list[Path],
    factor: float = 60.0,
    interval: str = "1s",
) -> Iterator[Stack]:
    """Start Alertmanager (routing everything to `webhook`) and Prometheus scraping `exporter`."""
    prom_bin, am_bin = need("prometheus"), need("prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    scaled = []
    for i, f in enumerate(rule_files):
        dst = workdir / f"rules-{i}-{f.name}"
        scale_rules(f, dst, factor)
        scaled.append(str(dst))
    am_port, prom_port = free_port(), free_port()
    (workdir / "alertmanager.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "test",
                    "group_by": ["alertname", "provider", "source", "stream"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "test", "webhook_configs": [{"url": webhook, "send_resolved": True}]}],
            }
        )
    )
    (workdir / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval},
                "rule_files": scaled,
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [
                    {"job_name": "livestream-exporter", "static_configs": [{"targets": [exporter]}]}
                ],
            }
        )
    )
    am_log, prom_log = workdir / "alertmanager.log", workdir / "prometheus.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        am = subprocess.Popen(
            [
                am_bin,
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=am_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(am)
        prom = subprocess.Popen(
            [
                prom_bin,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--rules.alert.resend-delay=1s",
                "--rules.alert.for-grace-period=1s",
            ],
            stdout=prom_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(prom)
        wait_http(f"http://127.0.0.1:{am_port}/-/ready", am, am_log)
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", prom, prom_log)
        yield Stack(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", workdir)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
