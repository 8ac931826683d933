"""Rules and dashboards end to end: the real `prometheus` and `prometheus-alertmanager` binaries
on loopback, scraping the exporter that polls the simulator.

- the simulator drops a stream's viewers: LivestreamViewerDrop reaches an Alertmanager
  webhook receiver run by this test, and resolves when the audience returns;
- a poll failure (with the vendor's count falling behind it) never fires it;
- every panel query of every dashboard, variables substituted, returns data.

The shipped rules run with every duration divided by 60 (`promstack.scale_rules`):
`for: 3m` becomes 3s and the 20-minute baseline 20 s, so the whole story takes about a
minute.  Under CI=true a missing binary fails these tests rather than skipping them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.simulator import DEMO_STREAMS, Simulator
from grafana.generate import iter_queries, load_dashboards, metric_names, substitute
from tests.conftest import sim_sources, wait_for
from tests.promstack import Stack, need, prometheus_stack

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parent.parent
RULES = [ROOT / "deploy/prometheus/livestream.rules.yml", ROOT / "deploy/prometheus/livestream.alerts.yml"]
DROPPED, FAILING = DEMO_STREAMS["gjirafa"][0], DEMO_STREAMS["gjirafa"][1]


class Webhook:
    """Alertmanager's webhook receiver: every notification, in order."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.notifications.append(await request.json())
        return web.Response(text="ok")

    def alerts(self, name: str, status: str) -> list[dict[str, Any]]:
        return [
            a
            for n in self.notifications
            for a in n["alerts"]
            if a["labels"].get("alertname") == name and a["status"] == status
        ]


@pytest.fixture
def binaries() -> None:
    need("prometheus")
    need("prometheus-alertmanager")


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[Webhook, str]]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield hook, f"http://127.0.0.1:{server.port}/hook"
    await server.close()


def e2e_sources(sim: Simulator, root: str) -> list[dict[str, Any]]:
    """Every provider of the demo, polled about every second within the vendors' limits.

    A vendor that publishes no limit (the simulator enforces none for it either) would be held
    to the exporter's cautious default budget, a cycle every few seconds; it gets the settings
    its simulator gives for a quick cycle (`quick_first_cycle`), which no limit can break."""
    return [
        s if sim.vendor(s["provider"]).limits else {**s, **sim.vendor(s["provider"]).quick_first_cycle}
        for s in sim_sources(root, interval="1s")
    ]


@pytest.fixture
async def stack(
    binaries: None,
    simulator: Any,
    webhook: tuple[Webhook, str],
    write_config: Any,
    running: Any,
    tmp_path: Path,
) -> AsyncIterator[tuple[Any, Webhook, Stack]]:
    sim, root = simulator
    hook, url = webhook
    sim.set_viewers("gjirafa", DROPPED, 1000)
    sim.set_viewers("gjirafa", FAILING, 1000)
    exporter, client = await running(write_config(e2e_sources(sim, root), interval="1s", timeout="2s"))
    await wait_for(exporter.store.ready, within=30)
    target = f"127.0.0.1:{client.server.port}"
    cm = prometheus_stack(tmp_path / "prom", exporter=target, webhook=url, rule_files=RULES)
    stack = await asyncio.to_thread(cm.__enter__)
    try:
        yield sim, hook, stack
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


async def query(stack: Stack, expr: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(stack.query, expr)


async def eventually(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.5)


def drop_alerts(hook: Webhook, status: str, stream: str) -> list[dict[str, Any]]:
    return [a for a in hook.alerts("LivestreamViewerDrop", status) if a["labels"].get("stream") == stream]


async def test_viewer_drop_reaches_alertmanager_and_resolves(stack: tuple[Any, Webhook, Stack]) -> None:
    sim, hook, prom = stack
    selector = f'provider="gjirafa",stream="{DROPPED}"'

    async def baseline() -> bool:
        rows = await query(prom, f"stream:livestream_audience:baseline{{{selector}}}")
        return bool(rows) and float(rows[0]["value"][1]) == 1000

    # the baseline is the average of 30 to 10 "minutes" (seconds here) ago
    await eventually(baseline, 60, "a baseline of 1000 viewers")

    sim.set_viewers("gjirafa", DROPPED, 100)
    # the poll failure: the vendor's count falls too, but the exporter cannot see it
    sim.inject("gjirafa", "5xx", count=10**6, stream=FAILING)
    sim.set_viewers("gjirafa", FAILING, 100)

    fired = await eventually(
        lambda: asyncio.sleep(0, drop_alerts(hook, "firing", DROPPED)),
        60,
        "LivestreamViewerDrop at the webhook",
    )
    alert = fired[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["source"] == "demo-gjirafa"
    assert "lost 90%" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook_url"].endswith("#livestreamviewerdrop")

    # the failing target is down, keeps its old value, and does not alert
    up = await query(prom, f'livestream_target_up{{stream="{FAILING}"}}')
    assert up and float(up[0]["value"][1]) == 0
    kept = await query(prom, f'livestream_concurrent_viewers{{stream="{FAILING}"}}')
    assert kept and float(kept[0]["value"][1]) == 1000

    sim.set_viewers("gjirafa", DROPPED, 1000)
    await eventually(
        lambda: asyncio.sleep(0, drop_alerts(hook, "resolved", DROPPED)), 60, "LivestreamViewerDrop resolved"
    )
    assert not drop_alerts(hook, "firing", FAILING)
    pending = [a for a in await asyncio.to_thread(prom.alerts) if a["labels"].get("stream") == FAILING]
    assert all(a["labels"]["alertname"] != "LivestreamViewerDrop" for a in pending)


def substitutions() -> Iterator[dict[str, str]]:
    """Variables for the dashboards: All, and one stream of each provider for the drill-down."""
    yield {}
    for provider, streams in DEMO_STREAMS.items():
        yield {"provider": provider, "stream": streams[0]}


async def test_every_dashboard_panel_returns_data(stack: tuple[Any, Webhook, Stack]) -> None:
    _, _, prom = stack
    dashboards = load_dashboards()
    assert dashboards

    async def has_data(expr: str) -> bool:
        return bool(await query(prom, expr))

    # let rates over a few scrapes exist
    await eventually(
        lambda: has_data("rate(livestream_exporter_api_requests_total[1m]) > 0"), 30, "request rates"
    )
    await asyncio.sleep(5)
    empty = []
    for file, dashboard in dashboards.items():
        for title, expr in iter_queries(dashboard):
            if any(m.startswith("livestream_exporter_cluster_") for m in metric_names(expr)):
                continue  # the Cluster row: this exporter runs alone, without Redis
            if not any([await has_data(substitute(expr, v)) for v in substitutions()]):
                empty.append(f"{file}: {title}: {substitute(expr)}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


@pytest.mark.skipif(
    not os.environ.get("LIVESTREAM_E2E_PLOT"), reason="set LIVESTREAM_E2E_PLOT=path to render"
)
async def test_render_overview_plot(stack: tuple[Any, Webhook, Stack]) -> None:
    """Renders the overview's main panels from this run for the README (on demand only)."""
    from grafana.render import render_overview  # noqa: PLC0415 - needs the optional matplotlib

    sim, _, prom = stack
    await asyncio.sleep(40)
    sim.drop("swiftfederation", DEMO_STREAMS["swiftfederation"][0], 0.3)
    await asyncio.sleep(30)
    await asyncio.to_thread(render_overview, prom, Path(os.environ["LIVESTREAM_E2E_PLOT"]))
