"""The landing page: version, links, and every source and target with its health."""

from __future__ import annotations

import html
import platform
from datetime import UTC, datetime

from exporter import __version__
from exporter.model.durations import format_duration
from exporter.web.view import ExporterView


def _ts(value: float | None) -> str:
    if value is None:
        return "never"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _age(now: float, then: float | None) -> str:
    """How old the target's data is: '12s', '3m5s' (the time since its last successful poll)."""
    if then is None:
        return "-"
    return format_duration(max(0.0, round(now - then)))


def landing_page(exporter: ExporterView, path: str) -> str:
    """The landing page's HTML (plain, no external assets)."""
    e = html.escape
    now = exporter.clock.time()
    rows = []
    for s in exporter.store.sources.values():
        interval = s.stats.interval
        for t in sorted(s.targets.values(), key=lambda t: t.target.stream):
            origin = str(t.target.origin)
            rows.append(
                "<tr>"
                f"<td>{e(s.name)}</td><td>{e(s.provider)}</td><td>{e(t.target.stream)}</td><td>{origin}</td>"
                f"<td class={t.health}>{t.health}</td><td>{_ts(t.last_success)}</td>"
                f"<td>{_age(now, t.last_success)}</td>"
                f"<td>{e(t.error or '')}</td><td>{format_duration(interval)}</td>"
                "</tr>"
            )
        if not s.targets:
            rows.append(
                f"<tr><td>{e(s.name)}</td><td>{e(s.provider)}</td><td colspan=7>no targets yet</td></tr>"
            )
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>livestream-exporter</title>
<style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}
.up{{color:#080}} .down{{color:#c00}} .gone,.pending{{color:#888}}
</style></head>
<body><h1>livestream-exporter</h1>
<p>Version {e(__version__)} (Python {e(platform.python_version())})
&middot; configuration {e(exporter.config_file)}</p>
<ul><li><a href="{e(path.lstrip("/"))}">Metrics</a></li><li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li></ul>
<h2>Targets</h2>
<table><tr><th>source</th><th>provider</th><th>stream</th><th>origin</th><th>health</th>
<th>last success</th><th>data age</th><th>last error</th><th>interval</th></tr>
{"".join(rows)}
</table></body></html>
"""
    return body
