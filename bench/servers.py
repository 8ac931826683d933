"""The three /metrics servers the scrape benchmarks compare, each run in its own process.

    python -m bench.servers ours   --targets N --port P [--changes K]
    python -m bench.servers naive  --targets N --port P [--changes K]
    python -m bench.servers static --targets N --port P

All hold the same series: N Fermion-like sessions, each with its ten stream families and
three health families (13 series a target).  `--changes K` rewrites the values of K targets
every second (a poll landing), in consecutive runs as polls do.

- ours: the exporter's own store, exposition and web app (aiohttp);
- naive: prometheus_client with labelled Gauges and Counters and its own HTTP server, as a
  straightforward exporter is written;
- static: the floor: the same bytes, rendered once by ours, served by a bare aiohttp handler.

Each prints "ready" on stdout once it serves, and serves /lag: the event-loop lag it saw
(p50, p99, max in ms, from a task that sleeps 5 ms and measures how late it wakes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

import exporter.providers  # noqa: F401 - registers the vendors
from exporter.engine.stats import SourceStats
from exporter.model.clock import SYSTEM_CLOCK
from exporter.model.samples import Sample, Target
from exporter.providers.fermion import FermionTarget
from exporter.store.exposition import ReloadStatus
from exporter.store.store import Store
from exporter.web.app import create_app

SOURCE = "fermion-main"
GAUGES = (
    "livestream_concurrent_viewers",
    "livestream_peak_concurrent_viewers",
    "livestream_unique_viewers",
    "livestream_duration_seconds",
    "livestream_started_timestamp_seconds",
    "livestream_live",
)
COUNTERS = ("livestream_messages_total", "livestream_instructor_messages_total", "livestream_polls_total")


def session_id(i: int) -> str:
    return f"6544a9c1f0c3a2b1d0e{i:05d}"


def samples_of(i: int, round_: int) -> list[Sample]:
    base = float(i % 997 + round_)
    out = [Sample.of(name, base + k) for k, name in enumerate(GAUGES[:4])]
    out.append(Sample.of("livestream_started_timestamp_seconds", 1_700_000_000.0 + i))
    out.append(Sample.of("livestream_live", 1.0))
    out += [Sample.of(name, base * 3 + k) for k, name in enumerate(COUNTERS)]
    out.append(Sample.of("livestream_ended_timestamp_seconds", 1_700_003_600.0 + i))
    return out


def build_store(targets: int, store: Store | None = None) -> Store:
    store = store or Store()
    store.keep_sources([(SOURCE, "fermion", SourceStats(provider="fermion"))])
    store.set_targets(
        SOURCE, [Target.of(FermionTarget(live_event_session_id=session_id(i))) for i in range(targets)]
    )
    now, mono = time.time(), time.monotonic()
    for i in range(targets):
        store.record_success(SOURCE, session_id(i), samples_of(i, 0), now=now, mono=mono, duration=0.2)
    return store


class LagProbe:
    """How late a task that sleeps 5 ms wakes up: the event loop's lag."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            self.lags.append(max(0.0, loop.time() - before - 0.005))

    def report(self) -> dict[str, float]:
        lags = sorted(self.lags) or [0.0]

        def pick(p: float) -> float:
            return lags[min(len(lags) - 1, round(p * (len(lags) - 1)))] * 1000

        return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": lags[-1] * 1000, "samples": len(lags)}


async def serve_ours(targets: int, port: int, changes: int) -> None:
    store = Store()
    view = SimpleNamespace(store=store, clock=SYSTEM_CLOCK, reload_status=ReloadStatus(), config_file="bench")

    async def reload() -> None:
        return None

    view.reload = reload
    app = create_app(view)
    gc.freeze()  # as the exporter does once it has started, before its first polls land
    build_store(targets, store)
    probe = LagProbe()
    await _serve(app, port, probe, _changer(store, targets, changes))


def _changer(store: Store, targets: int, changes: int) -> Callable[[], Any] | None:
    if not changes:
        return None

    async def change() -> None:
        nxt, round_ = 0, 1
        while True:
            now, mono = time.time(), time.monotonic()
            step = max(1, changes // 10)  # ten bursts a second, as polls land through the second
            for _ in range(step):
                store.record_success(
                    SOURCE, session_id(nxt), samples_of(nxt, round_), now=now, mono=mono, duration=0.2
                )
                nxt += 1
                if nxt == targets:
                    nxt, round_ = 0, round_ + 1
            await asyncio.sleep(0.1)

    return change


async def _serve(app: web.Application, port: int, probe: LagProbe, changer: Callable[[], Any] | None) -> None:
    async def lag(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(probe.report()), content_type="application/json")

    async def reset_lag(_: web.Request) -> web.Response:
        probe.lags.clear()
        return web.Response(text="ok")

    app.router.add_get("/lag", lag)
    app.router.add_post("/lag", reset_lag)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tasks = [asyncio.ensure_future(probe.run())]
    if changer is not None:
        tasks.append(asyncio.ensure_future(changer()))
    print("ready", flush=True)
    await asyncio.Event().wait()


async def serve_static(targets: int, port: int) -> None:
    store = build_store(targets)
    view = SimpleNamespace(store=store, clock=SYSTEM_CLOCK, reload_status=ReloadStatus(), config_file="bench")
    ours = create_app(view)
    # the bytes ours serves, rendered once through its own handler
    async with TestClient(TestServer(ours)) as client:
        plain = await (await client.get("/metrics")).read()
    gz = gzip.compress(plain, compresslevel=1)

    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=gz, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        return web.Response(body=plain, headers={"Content-Type": "text/plain"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    await _serve(app, port, LagProbe(), None)


def serve_naive(targets: int, port: int, changes: int) -> None:
    registry = CollectorRegistry()
    labels = ("provider", "source", "stream")
    gauges = {
        n: Gauge(n, n, labels, registry=registry) for n in (*GAUGES, "livestream_ended_timestamp_seconds")
    }
    counters = {n: Counter(n.removesuffix("_total"), n, labels, registry=registry) for n in COUNTERS}
    health = {
        n: Gauge(n, n, labels, registry=registry)
        for n in (
            "livestream_target_up",
            "livestream_target_last_success_timestamp_seconds",
            "livestream_target_poll_duration_seconds",
        )
    }

    def write(i: int, round_: int) -> None:
        lv = ("fermion", SOURCE, session_id(i))
        for s in samples_of(i, round_):
            if s.name in gauges:
                gauges[s.name].labels(*lv).set(s.value)
            else:
                counters[s.name].labels(*lv).inc(1)
        health["livestream_target_up"].labels(*lv).set(1)
        health["livestream_target_last_success_timestamp_seconds"].labels(*lv).set(time.time())
        health["livestream_target_poll_duration_seconds"].labels(*lv).set(0.2)

    for i in range(targets):
        write(i, 0)
    start_http_server(port, addr="127.0.0.1", registry=registry)

    def change() -> None:
        nxt, round_ = 0, 1
        while True:
            for _ in range(max(1, changes // 10)):
                write(nxt, round_)
                nxt += 1
                if nxt == targets:
                    nxt, round_ = 0, round_ + 1
            time.sleep(0.1)

    if changes:
        threading.Thread(target=change, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["ours", "naive", "static"])
    parser.add_argument("--targets", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--changes", type=int, default=0, help="targets whose values change per second")
    a = parser.parse_args()
    if a.kind == "naive":
        serve_naive(a.targets, a.port, a.changes)
    elif a.kind == "static":
        asyncio.run(serve_static(a.targets, a.port))
    else:
        asyncio.run(serve_ours(a.targets, a.port, a.changes))


if __name__ == "__main__":
    main()
