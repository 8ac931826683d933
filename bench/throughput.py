"""Polling throughput against simulated latencies: requests/s achieved vs the budget, data age.

Each scenario runs the exporter's runners against the simulator on one fake clock (the
simulator's latency and the exporter's schedule share it), so minutes of polling take
seconds; the requests still go over real loopback HTTP.  The simulator counts every request
on its arrival, anywhere between send and answer, and refuses what exceeds a window.

    python -m bench.throughput            # every latency and scenario
    python -m bench.throughput --quick    # one short run each
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from bench.common import Engine, demo_source, machine, percentile, quiet_logs, start_simulator
from exporter.model.clock import FakeClock
from exporter.simulator import Simulator


@dataclass(frozen=True)
class Scenario:
    name: str
    provider: str
    targets: int
    interval: str
    #: the budget's tightest window: (requests, seconds)
    budget: tuple[int, float]
    endpoint: str


SCENARIOS = (
    Scenario(
        "tencent, 2000 rooms at 10s (needs 200/s)", "tencent", 2000, "10s", (100, 1.0), "get_room_stats"
    ),
    Scenario("tencent, 400 rooms at 10s (needs 40/s)", "tencent", 400, "10s", (100, 1.0), "get_room_stats"),
    Scenario(
        "fermion, 150 sessions at 60s (needs 2.5/s)",
        "fermion",
        150,
        "60s",
        (60, 60.0),
        "get-live-event-session-stats",
    ),
    Scenario(
        "fermion, 40 sessions at 60s (needs 0.67/s)",
        "fermion",
        40,
        "60s",
        (60, 60.0),
        "get-live-event-session-stats",
    ),
)

HEADER = (
    "| scenario | latency | achieved req/s | budget req/s | of what is needed or allowed | refused"
    " | effective interval | data age p50 / max |"
)


async def run(scenario: Scenario, latency: float, seconds: float) -> dict[str, float]:
    clock = FakeClock()
    sim = Simulator(clock=clock.time, monotonic=clock.monotonic, sleep=clock.sleep, seed=1)
    keys = sim.add_streams(scenario.provider, scenario.targets)
    sim.set_latency(scenario.provider, latency, latency / 2)
    server = await start_simulator(sim)
    try:
        source = demo_source(server.root, scenario.provider, interval=scenario.interval)
        source.pop("discover", None)
        key = "room_id" if scenario.provider == "tencent" else "live_event_session_id"
        source["targets"] = [{key: k} for k in keys]
        if scenario.provider == "fermion":
            source["batch_size"] = 1
        engine = Engine.of([source], clock)
        start = clock.monotonic()
        await engine.run(seconds)
        runner = next(iter(engine.runners.values()))
        settle = start + min(seconds / 3, 60.0)  # after the first cycles
        log = [r for r in sim.log.select(scenario.provider) if r.endpoint == scenario.endpoint]
        counted = [r for r in log if r.time >= settle]
        refused = sum(1 for r in log if r.throttled)
        now = clock.monotonic()
        targets = engine.store.sources[source["name"]].targets.values()
        ages = [now - t.last_success_mono for t in targets if t.last_success_mono is not None]
        budget_rps = scenario.budget[0] / scenario.budget[1]
        achieved = len(counted) / (now - settle)
        needed = scenario.targets / runner.configured_interval
        return {
            "achieved": achieved,
            "budget": budget_rps,
            "share": achieved / min(budget_rps, needed),
            "refused": refused,
            "interval": runner.interval,
            "configured": runner.configured_interval,
            "age_max": max(ages) if ages else float("inf"),
            "age_p50": percentile(ages, 0.5),
            "polled": len(ages) / scenario.targets,
        }
    finally:
        await server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short run per scenario")
    parser.add_argument("--seconds", type=float, default=240.0, help="simulated seconds per run")
    args = parser.parse_args()
    quiet_logs()
    latencies = (0.2,) if args.quick else (0.05, 0.2, 1.0)
    seconds = 60.0 if args.quick else args.seconds
    print(f"machine: {machine()}")
    print(f"{seconds:g} simulated seconds a run; latency = mean, jitter = mean/2, arrival anywhere between\n")
    print(HEADER)
    print("|---|---|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        for latency in latencies:
            r = await run(scenario, latency, seconds)
            print(
                f"| {scenario.name} | {latency * 1000:g} ms | {r['achieved']:.1f} | {r['budget']:g} | "
                f"{r['share'] * 100:.1f} % | {r['refused']:g} | "
                f"{r['interval']:.2f} s (configured {r['configured']:g}) | "
                f"{r['age_p50']:.1f} / {r['age_max']:.1f} s |",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
