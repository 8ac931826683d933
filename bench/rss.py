"""Resident memory of the exporter holding 1k, 10k and 100k targets, after both encodings
of /metrics have been served once (their caches filled).

    python -m bench.rss [--targets 1000 --targets 10000 ...]

The server is `bench.servers ours` (the exporter's store, exposition and web app) holding
Fermion-like sessions, 13 series each; the same process with no target at all is the base.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from bench.common import machine
from bench.scrape import SERIES_PER_TARGET, server


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def measure(targets: int) -> float:
    async with server("ours", targets, 0) as s:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for encoding in ("identity", "gzip"):
                for accept in ("text/plain", "application/openmetrics-text"):
                    headers = {"Accept-Encoding": encoding, "Accept": accept}
                    async with session.get(s.url + "/metrics", headers=headers) as r:
                        await r.read()
        return rss_mib(s.proc.pid)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, action="append")
    a = parser.parse_args()
    print(f"machine: {machine()}\n")
    print("| targets | series | RSS MiB | MiB per 1k targets above the base |")
    print("|---|---|---|---|")
    base = await measure(0)
    print(f"| 0 | 0 | {base:.0f} | |", flush=True)
    for targets in a.targets or [1_000, 10_000, 100_000]:
        rss = await measure(targets)
        per_1k = (rss - base) / targets * 1000
        print(f"| {targets:,} | {targets * SERIES_PER_TARGET:,} | {rss:.0f} | {per_1k:.1f} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
