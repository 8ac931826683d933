"""Render the overview dashboard's main panels to a PNG, from a real Prometheus.

Used for the README's picture: the end-to-end test runs the exporter against the
simulator with a real Prometheus, and (with LIVESTREAM_E2E_PLOT=path) calls this with
the same panel queries the dashboard JSON holds.  Needs matplotlib (`pip install '.[docs]'`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from grafana.generate import iter_queries, load_dashboards, substitute

PANELS = ("Audience by provider", "Top streams", "Likes per minute", "Messages per minute")


class RangeQuerier(Protocol):
    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]: ...


def _label(metric: dict[str, str]) -> str:
    return "/".join(metric[k] for k in ("provider", "stream") if k in metric) or "all"


def render_overview(prom: RangeQuerier, out: Path, *, minutes: float = 2.0) -> None:
    # matplotlib is the optional `.[docs]` extra: imported only when a picture is asked for
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    overview = load_dashboards()["livestream-overview.json"]
    queries: dict[str, list[str]] = {}
    for title, expr in iter_queries(overview):
        queries.setdefault(title, []).append(expr)
    end = time.time()
    start = end - minutes * 60
    fig, axes = plt.subplots(2, 2, figsize=(13, 7.5), constrained_layout=True)
    for ax, title in zip(axes.flat, PANELS, strict=True):
        for n, expr in enumerate(queries[title]):
            for series in prom.query_range(substitute(expr, {"__rate_interval": "30s"}), start, end, 2.0):
                xs = [float(t) - end for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                label = _label(series["metric"]) + (" (from watch time)" if n else "")
                ax.plot(xs, ys, label=label, linestyle="--" if n else "-")
        ax.set_title(title)
        ax.set_xlabel("seconds ago")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("livestream-exporter overview: --demo simulator scraped by a real Prometheus")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
