"""Replicas sharing one vendor budget through a real Redis, polling the simulator as processes.

The vendor's window is counted by the simulator on arrival; three replicas that did not
share it would send three times what it allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis

from exporter.simulator.limits import max_in_window
from tests.clusterrig import (
    RedisProxy,
    RedisServer,
    Replicas,
    SimulatorProcess,
    cluster_config,
    owners,
    run_simulator,
)

pytestmark = pytest.mark.timeout(180)

STREAMS = 30
#: the vendor's window: 20 requests per 2 s; 30 targets every second would need 30/s
REQUESTS, PER = 20, 2.0
TTL = 3.0
METRIC = "livestream_concurrent_viewers"


@dataclass
class World:
    sim: SimulatorProcess
    redis: RedisServer
    replicas: Replicas
    streams: list[str]
    viewers: dict[str, int]
    proxy: RedisProxy | None = None

    async def refused(self) -> int:
        return len(await self.refused_at())

    async def refused_at(self) -> list[float]:
        return [float(r["time"]) for r in await self.sim.requests("fermion") if r["throttled"]]

    async def sim_now(self) -> float:
        """About now on the clock of the request records: the latest arrival."""
        return max(float(r["time"]) for r in await self.sim.requests("fermion"))

    async def busiest_window(self) -> int:
        return max_in_window([float(r["time"]) for r in await self.sim.requests("fermion")], PER)

    async def each_once(self, within: float) -> float:
        """Seconds until every stream is on exactly one replica with its exact value."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        last: object = None
        while loop.time() - start < within:
            scraped = await self.replicas.scrape()
            where = owners(scraped, METRIC)
            values = {
                labels["stream"]: v
                for samples in scraped.values()
                for name, labels, v in samples
                if name == METRIC and "stream" in labels
            }
            once = sorted(where) == sorted(self.streams) and all(len(r) == 1 for r in where.values())
            if once and values == {s: float(n) for s, n in self.viewers.items()}:
                return loop.time() - start
            last = {s: r for s, r in where.items() if len(r) != 1} or len(where)
            await asyncio.sleep(0.2)
        raise AssertionError(f"targets not each on one replica within {within}s: {last}")


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    replicas: int = 3,
    count: int = STREAMS,
    *,
    outage_grace: str = "10m",
    password_in_url: bool = False,
    proxied_first: bool = False,
    slow_network: bool = False,
) -> AsyncIterator[World]:
    """Redis, the simulator, and `replicas` replicas; with `proxied_first`, the first one
    reaches Redis through a proxy (`World.proxy`) that can cut it off alone."""
    redis = RedisServer(tmp_path)
    redis.start()
    proxy = RedisProxy(redis) if proxied_first else None
    if proxy is not None:
        await proxy.start()
    try:
        async with run_simulator() as sim, contextlib.AsyncExitStack() as stack:
            await sim.control(action="limits", vendor="fermion", endpoint="*", windows=[[REQUESTS, PER]])
            if slow_network:
                # answers late, with jitter, counted at a random moment of their way, in pieces
                await sim.control(action="latency", vendor="fermion", mean=0.3, jitter=0.2)
                await sim.control(action="pieces", vendor="fermion", size=64, gap=0.005, jitter=0.005)
            streams = (await sim.control(action="add_streams", vendor="fermion", count=count))["streams"]
            viewers = {s: 100 + i for i, s in enumerate(streams)}
            for s, n in viewers.items():
                await sim.control(action="set_viewers", vendor="fermion", stream=s, value=n)
            config = cluster_config(
                tmp_path / "config.yaml", sim_root=sim.root, redis=redis, streams=streams,
                requests=REQUESTS, per=f"{PER:g}s", ttl=f"{TTL:g}s", outage_grace=outage_grace,
                password_in_url=password_in_url,
            )  # fmt: skip
            rs = Replicas(tmp_path, config, stack)
            for i in range(replicas):
                via = ("--cluster.redis-url", proxy.url) if proxy is not None and i == 0 else ()
                await rs.start(f"r{i}", *via)
            yield World(sim, redis, rs, streams, viewers, proxy)
    finally:
        redis.stop()


async def test_three_replicas_share_the_budget_and_export_each_target_once(tmp_path: Path) -> None:
    async with world(tmp_path, slow_network=True) as w:
        await w.each_once(within=20)
        await asyncio.sleep(6)
        await w.each_once(within=5)
        members = {
            name: [v for metric, _, v in samples if metric == "livestream_exporter_cluster_members"]
            for name, samples in (await w.replicas.scrape()).items()
        }
        assert all(m == [3.0] for m in members.values()), members
        # the landing page says who polls what
        _, page = await next(iter(w.replicas.running.values())).get("/")
        assert 'id="cluster"' in page and "this replica" in page
        for p in w.replicas.running.values():
            assert RedisServer.PASSWORD not in p.stderr
        assert await w.refused() == 0
        assert await w.busiest_window() <= REQUESTS


async def test_a_killed_replica_loses_its_targets_to_the_others_within_ttl_and_an_interval(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        await w.each_once(within=20)
        scraped = await w.replicas.scrape()
        interval = max(
            v for s in scraped.values() for m, _, v in s if m == "livestream_exporter_poll_interval_seconds"
        )
        victim_streams = [s for s, r in owners(scraped, METRIC).items() if r == ["r0"]]
        assert victim_streams, "r0 owned nothing"
        w.replicas.kill("r0")
        took = await w.each_once(within=TTL + 3 * interval + 10)
        # r0 may only be cut off from Redis: its part of the budget stays reserved, so the
        # others poll its targets at their longer interval (a second on top: the answers,
        # and the scrapes of this test)
        scraped = await w.replicas.scrape()
        interval = max(
            v for s in scraped.values() for m, _, v in s if m == "livestream_exporter_poll_interval_seconds"
        )
        assert took <= TTL + interval + 1, (took, interval)
        assert await w.refused() == 0
        assert await w.busiest_window() <= REQUESTS


async def test_redis_outage_keeps_every_window_and_the_cluster_reforms(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.each_once(within=20)
        w.redis.stop()
        await asyncio.sleep(TTL + 4)
        scraped = await w.replicas.scrape()
        up = {
            n: [v for m, _, v in s if m == "livestream_exporter_cluster_redis_up"] for n, s in scraped.items()
        }
        assert all(u == [0.0] for u in up.values()), up
        # each keeps exactly the targets it owned, and keeps them fresh
        await w.each_once(within=5)
        for p in w.replicas.running.values():
            assert p.stderr.count("Redis unreachable") == 1, p.stderr[-2000:]
        w.redis.start()
        restarted_ms = _redis_now_ms(w.redis)
        # the outage's requests are written back into the (empty) restarted Redis, where the
        # newest requests soon push them out of the windows' memory: look at once
        replayed = 0
        for _ in range(40):
            replayed = max(replayed, _requests_before(w.redis, restarted_ms))
            await asyncio.sleep(0.05)
        assert replayed > 0
        # the members known before stay for one TTL while they register again: wait past it
        await asyncio.sleep(TTL + TTL / 3 + 1)
        scraped = await w.replicas.scrape()
        for name, samples in scraped.items():
            assert ("livestream_exporter_cluster_redis_up", 1.0) in [(m, v) for m, _, v in samples], name
            assert ("livestream_exporter_cluster_members", 3.0) in [(m, v) for m, _, v in samples], name
        await w.each_once(within=10)
        await asyncio.sleep(4)
        for p in w.replicas.running.values():
            # back for good at once: no flapping on the connections Redis closed when it stopped
            assert p.stderr.count("Redis unreachable") == 1, p.stderr[-2000:]
        assert await w.refused() == 0
        assert await w.busiest_window() <= REQUESTS


async def test_a_429_answered_to_one_replica_pauses_every_replica(tmp_path: Path) -> None:
    pause = 4.0
    async with world(tmp_path, password_in_url=True) as w:
        await w.each_once(within=20)
        await w.sim.control(action="configure", retry_after_seconds=pause)
        await w.sim.control(action="inject", vendor="fermion", kind="429")
        await asyncio.sleep(pause + 3)
        records = await w.sim.requests("fermion")
        throttled = [float(r["time"]) for r in records if r["fault"] == "429"]
        assert len(throttled) == 1
        t = throttled[0]
        # requests already on their way may still arrive just after; then nobody sends until the pause ends
        during = [float(r["time"]) for r in records if t + 0.5 <= float(r["time"]) < t + pause - 0.2]
        assert during == [], f"{len(during)} requests during the pause"
        after = [float(r["time"]) for r in records if float(r["time"]) >= t + pause]
        assert after, "polling did not resume"
        for p in w.replicas.running.values():
            assert RedisServer.PASSWORD not in p.stderr


async def test_a_replica_that_owns_no_target_is_ready(tmp_path: Path) -> None:
    async with world(tmp_path, count=1) as w:
        await w.each_once(within=20)
        for name, p in w.replicas.running.items():
            status, _ = await p.get("/-/ready")
            assert status == 200, name


async def test_a_replica_cut_off_from_redis_stops_after_the_outage_grace_within_every_window(
    tmp_path: Path,
) -> None:
    grace = 6.0
    async with world(tmp_path, outage_grace=f"{grace:g}s", proxied_first=True) as w:
        assert w.proxy is not None
        await w.each_once(within=20)
        cut = await w.sim_now()
        await w.proxy.cut()  # only r0 loses Redis; r1 and r2 still reach it
        await asyncio.sleep(grace + TTL + 2)
        # r0 has stopped; the others poll everything, with r0's part of the budget back
        await w.each_once(within=10)
        assert "stops polling until it reaches Redis again" in w.replicas.running["r0"].stderr
        restored = await w.sim_now()
        await w.proxy.start()
        await asyncio.sleep(TTL + 3)
        await w.each_once(within=10)
        refused = [t - cut for t in await w.refused_at()]
        assert refused == [], f"refused {refused} s after the cut; restored at {restored - cut:.2f} s"
        assert await w.busiest_window() <= REQUESTS


def _redis_client(redis: RedisServer) -> Redis:
    return Redis.from_url(redis.url, password=RedisServer.PASSWORD, decode_responses=True)


def _redis_now_ms(redis: RedisServer) -> int:
    seconds, micros = _redis_client(redis).time()
    return int(seconds) * 1000 + int(micros) // 1000


def _requests_before(redis: RedisServer, ms: int) -> int:
    """Completed requests Redis' windows hold from before `ms`."""
    return int(_redis_client(redis).zcount("livestream-exporter:{fm}:budget:default:done", "-inf", ms))
