"""Polling in the shape of the real world, through the simulator: slow answers with jitter,
answers in pieces, hundreds of targets, and the vendor's limits counted on arrival.

All on the fake clock (the simulator's latency and the exporter's schedule share it), except
the last test, which runs in real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from exporter.engine.scheduler import PollScheduler
from exporter.model.clock import SystemClock
from exporter.simulator import Simulator, add_demo_troubles, create_app
from tests.conftest import sim_sources, wait_for
from tests.pollhelpers import Rig, build_rig, value
from tests.simrig import Rigs, SimWorld


async def run_for(rig: Rig, seconds: float) -> None:
    """The daemon's own loops over `rig`'s runners for `seconds` of fake time."""
    clock = rig.clock
    scheduler = PollScheduler(clock)
    for runner in rig.runners.values():
        scheduler.add(runner)
    end = clock.monotonic() + seconds
    try:
        await wait_for(lambda: clock.monotonic() >= end, within=60.0, interval=0.001)
    finally:
        await scheduler.shutdown()


def refused(sim: Simulator, vendor: str) -> list[dict[str, Any]]:
    return [r for r in sim.request_log(vendor) if r["throttled"]]


async def test_four_hundred_slow_rooms_are_polled_at_the_budget_not_at_the_latency(
    world: SimWorld, rigs: Rigs
) -> None:
    """400 Tencent rooms answering in 200 ms (+-50 ms), every 10 s: 40 requests/s are needed and
    100/s allowed.  Every room is polled every interval, none is older than the interval plus
    2 s, the plan stays 10 s, and the vendor refuses nothing."""
    world.sim.add_streams("tencent", 400)
    world.sim.set_latency("tencent", 0.2, 0.05)
    (source,) = sim_sources(world.root, "tencent", interval="10s")
    rig = rigs.build([source], timeout="5s")
    start = world.clock.monotonic()
    await run_for(rig, 55.0)
    runner = rig.runner
    assert runner.interval == 10.0
    targets = rig.store.sources[source["name"]].targets
    assert len(targets) >= 400
    now = world.clock.monotonic()
    ages = [now - t.last_success_mono for t in targets.values() if t.last_success_mono is not None]
    assert len(ages) == len(targets), "some rooms were never polled"
    assert max(ages) <= 10.0 + 2.0
    stats = [r for r in world.sim.request_log("tencent") if r["endpoint"] == "get_room_stats"]
    in_last_40s = [r for r in stats if r["time"] >= start + 15.0]
    assert len(in_last_40s) / 40.0 == pytest.approx(len(targets) / 10.0, rel=0.05)
    assert refused(world.sim, "tencent") == []
    labels = {"provider": "tencent", "source": source["name"]}
    assert value(rig.scrape(), "livestream_exporter_poll_interval_seconds", **labels) == 10.0


async def test_a_list_of_300_livestreams_in_pieces_is_discovered_whole(world: SimWorld, rigs: Rigs) -> None:
    """Cloudflare's list of 300 livestreams (about 120 kB, three pages) in 4 kB pieces."""
    keys = world.sim.add_streams("cloudflare", 300)
    world.sim.set_pieces("cloudflare", 4096, 0.002)
    (source,) = sim_sources(world.root, "cloudflare")
    rig = rigs.build([source])
    await rig.runner.run_cycle()
    targets = rig.store.sources[source["name"]].targets
    assert set(keys) <= set(targets)
    assert all(targets[k].up for k in keys)


async def test_a_cycle_that_cannot_keep_its_plan_says_so_from_the_first_cycle(
    world: SimWorld, rigs: Rigs, logs: list[str]
) -> None:
    """Answers of 1 s, two requests in flight at most, a slot every 0.1 s: the first cycle falls
    behind at once; the warning and the cycle's running time show it before the cycle ends."""
    world.sim.set_latency("fermion", 1.0)
    (source,) = sim_sources(world.root, "fermion", interval="1s", batch_size=1, max_in_flight=2)
    source["rate_limit"] = [{"requests": 6000, "per": "1m"}]
    rig = rigs.build([source], timeout="5s")
    runner = rig.runner
    dispatching = asyncio.ensure_future(runner.dispatch())
    labels = {"provider": "fermion", "source": source["name"]}
    await wait_for(lambda: any("falls behind its plan" in line for line in logs), interval=0.001)
    assert not dispatching.done(), "the warning came only after the cycle"
    await wait_for(lambda: runner.stats.cycle_seconds > 1.0, interval=0.001)
    samples = rig.scrape()
    assert value(samples, "livestream_exporter_cycle_duration_seconds", **labels) > 1.0
    # mid-cycle: both places taken, or one for the moment between an answer and the next send
    assert value(samples, "livestream_exporter_requests_in_flight", **labels) in (1.0, 2.0)
    cycle = await dispatching
    await cycle.finished.wait()
    assert len([line for line in logs if "falls behind its plan" in line]) == 1


async def test_no_request_is_refused_when_the_vendor_counts_on_arrival_in_real_time(
    aiohttp_server: Any, write_config: Callable[..., Any]
) -> None:
    """Real time, real sockets: 150 Fermion sessions under 20 per 2 s, answers that take 0 to
    300 ms and arrive anywhere in between.  Over 6 s the vendor, counting on arrival, refuses
    nothing and never sees more than 20 in any 2 s."""
    sim = Simulator(seed=7)
    sim.limits["fermion"] = {"*": [(20, 2.0)]}
    sim.set_latency("fermion", 0.15, 0.15)
    keys = sim.add_streams("fermion", 150)
    server = await aiohttp_server(create_app(sim))
    root = str(server.make_url("")).rstrip("/")
    (source,) = sim_sources(root, "fermion", batch_size=1, interval="1s")
    source["targets"] = [{"live_event_session_id": k} for k in keys]
    source["rate_limit"] = [{"requests": 20, "per": "2s"}]
    rig = build_rig(write_config([source], timeout="2s"), SystemClock())
    try:
        await run_for(rig, 6.0)
    finally:
        await rig.close()
    log = sim.request_log("fermion")
    assert len(log) >= 50
    assert refused(sim, "fermion") == []
    assert sim.max_in_window("fermion", 2.0) <= 20


async def test_stop_cancels_and_awaits_every_request_in_flight(world: SimWorld, rigs: Rigs) -> None:
    """Answers take 30 s, eight requests are in flight: stopping the runner cancels them all,
    waits for them, and nothing lands in the store afterwards."""
    world.sim.add_streams("tencent", 40)
    world.sim.set_latency("tencent", 30.0, arrival=0.0)
    (source,) = sim_sources(world.root, "tencent", interval="1s", max_in_flight=8)
    rig = rigs.build([source], timeout="60s")
    runner = rig.runner
    dispatching = asyncio.ensure_future(runner.dispatch())
    await wait_for(lambda: runner.stats.in_flight == 8, interval=0.001)
    tasks = list(runner._tasks)
    assert len(tasks) == 8
    await runner.stop()
    assert all(t.done() for t in tasks), "stop returned with requests still running"
    assert runner._tasks == set()
    landed = {k: t.last_success_mono for k, t in rig.store.sources[source["name"]].targets.items()}
    await asyncio.wait_for(dispatching, 5.0)  # its later slots find the runner stopped
    after = {k: t.last_success_mono for k, t in rig.store.sources[source["name"]].targets.items()}
    assert after == landed
    assert all(v is None for v in after.values())
    assert runner._tasks == set(), "the dispatch sent more after stop"


async def test_the_demo_shows_a_failing_and_a_vanishing_target(world: SimWorld, rigs: Rigs) -> None:
    """What `--demo` adds so that failure handling can be seen: one livestream answers 503
    every time (down, with its error), one goes away after 90 s (its series go with it)."""
    troubles = add_demo_troubles(world.sim)
    failing, vanishing = troubles["cloudflare"]
    (source,) = sim_sources(world.root, "cloudflare", interval="15s")
    rig = rigs.build([source])
    await rig.runner.run_cycle()
    targets = rig.store.sources[source["name"]].targets
    assert targets[failing].up is False and targets[failing].error == "upstream"
    assert targets[vanishing].up
    world.clock.advance(100.0)
    await rig.runner.run_cycle()
    assert vanishing not in rig.store.sources[source["name"]].targets
    assert failing in rig.store.sources[source["name"]].targets
