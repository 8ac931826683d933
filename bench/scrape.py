"""Scrape latency and server CPU per scrape: ours against a naive prometheus_client exporter
and against the floor (the same bytes served statically), side by side in one run.

    python -m bench.scrape                     # 10k and 120k series, values changing
    python -m bench.scrape --series 10000      # one size
    python -m bench.scrape --lag               # also: event-loop lag under 4 scrapers at 10k targets

Each server runs in its own process; a client in this process scrapes it one request at a
time (as Prometheus does), plain and with `Accept-Encoding: gzip` (the body is not
decompressed: that is the scraper's cost, not the server's).  Server CPU comes from
/proc/<pid>/stat, less what the server spends meanwhile without scrapes (changing values).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from bench.common import machine, median, percentile

SERIES_PER_TARGET = 13
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: how long one measurement may take (the naive exporter needs seconds a scrape at 120k series)
MAX_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str


@contextlib.asynccontextmanager
async def server(kind: str, targets: int, changes: int) -> AsyncIterator[Server]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once per benchmark, before measuring
        [
            sys.executable,
            "-m",
            "bench.servers",
            kind,
            "--targets",
            str(targets),
            "--port",
            str(port),
            "--changes",
            str(changes),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        assert line.strip() == "ready", f"{kind} did not start"
        yield Server(proc, f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(10)


async def scrape_run(url: str, pid: int, scrapes: int, gzip: bool) -> dict[str, float]:
    headers = {"Accept-Encoding": "gzip"} if gzip else {"Accept-Encoding": "identity"}
    times: list[float] = []
    size = 0
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for _ in range(3):  # warm up: first renders, connections
            async with session.get(url + "/metrics", headers=headers) as r:
                await r.read()
        # the server's CPU without scrapes, over the same time, to take out of the measure
        idle0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(1.0)
        idle_rate = (cpu_seconds(pid) - idle0) / (time.monotonic() - t0)
        cpu0, w0 = cpu_seconds(pid), time.monotonic()
        for _ in range(scrapes):
            if times and time.monotonic() - w0 > MAX_SECONDS:
                break  # a slow server: enough scrapes for its median
            start = time.perf_counter()
            async with session.get(url + "/metrics", headers=headers) as r:
                body = await r.read()
            times.append(time.perf_counter() - start)
            size = len(body)
            await asyncio.sleep(0.02)  # scrapes come apart, as from Prometheus
        wall = time.monotonic() - w0
        cpu = cpu_seconds(pid) - cpu0 - idle_rate * wall
    scrapes = len(times)
    return {
        "scrapes": scrapes,
        "p50": median(times) * 1000,
        "p99": percentile(times, 0.99) * 1000,
        "cpu": max(0.0, cpu / scrapes) * 1000,
        "bytes": size,
    }


async def compare(series: int, scrapes: int, changes_per_second: int) -> None:
    targets = series // SERIES_PER_TARGET
    series = targets * SERIES_PER_TARGET
    print(f"\n### {series:,} series ({targets:,} targets), {changes_per_second} targets changing a second\n")
    print("| server | encoding | scrapes | p50 ms | p99 ms | server CPU ms/scrape | body bytes |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("static", "ours", "naive"):
        async with server(kind, targets, 0 if kind == "static" else changes_per_second) as s:
            for gz in (False, True):
                r = await scrape_run(s.url, s.proc.pid, scrapes, gz)
                print(
                    f"| {kind} | {'gzip' if gz else 'plain'} | {r['scrapes']:.0f} | {r['p50']:.2f} | "
                    f"{r['p99']:.2f} | {r['cpu']:.2f} | {r['bytes']:,} |",
                    flush=True,
                )


async def scrape_until(
    session: aiohttp.ClientSession, url: str, end: float, gzip: bool, times: list[float]
) -> None:
    """Scrape `url` back to back until `end`, noting each scrape's time."""
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    while time.monotonic() < end:
        t = time.perf_counter()
        async with session.get(url + "/metrics", headers=headers) as r:
            await r.read()
        times.append(time.perf_counter() - t)


async def lag(targets: int, seconds: float, changes_per_second: int) -> None:
    print(f"\n### event-loop lag while 4 scrapers pull /metrics continuously, {targets:,} targets\n")
    print("| server | scrapes | scrape p99 ms | loop lag p50 ms | loop lag p99 ms | loop lag max ms |")
    print("|---|---|---|---|---|---|")
    for kind in ("static", "ours"):
        async with server(kind, targets, 0 if kind == "static" else changes_per_second) as s:
            times: list[float] = []
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                await session.post(s.url + "/lag")
                end = time.monotonic() + seconds
                await asyncio.gather(
                    *(scrape_until(session, s.url, end, i % 2 == 0, times) for i in range(4))
                )
                async with session.get(s.url + "/lag") as r:
                    lags = await r.json()
            print(
                f"| {kind} | {len(times)} | {percentile(times, 0.99) * 1000:.2f} | {lags['p50_ms']:.2f} | "
                f"{lags['p99_ms']:.2f} | {lags['max_ms']:.2f} |",
                flush=True,
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, action="append", help="series to hold (repeatable)")
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--changes", type=int, default=100, help="targets whose values change per second")
    parser.add_argument("--lag", action="store_true", help="measure the event-loop lag too")
    a = parser.parse_args()
    print(f"machine: {machine()}")
    for series in a.series or [10_000, 120_000]:
        await compare(series, a.scrapes, a.changes)
    if a.lag:
        await lag(10_000, 20.0, a.changes)


if __name__ == "__main__":
    asyncio.run(main())
