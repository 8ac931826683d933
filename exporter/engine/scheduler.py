"""The runners' loops: one task per source, each cycle starting when its plan says.

A cycle starts one effective interval after the previous one started, whether or not the
previous cycle's answers are all in (a target still being polled simply skips its slot),
and a changed plan applies from the next cycle on.  Every wait is on the injectable clock,
so the whole schedule runs on a fake clock in tests.  Sources are independent tasks with
their own HTTP session and budget: one slow or failing vendor never delays another.
"""

from __future__ import annotations

import asyncio

from exporter.engine.runner import SourceRunner
from exporter.model.clock import Clock


class PollScheduler:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.runners: dict[str, SourceRunner] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}

    def add(self, runner: SourceRunner) -> None:
        """Start polling with `runner`, its first cycle right away."""
        self.runners[runner.name] = runner
        self._loops[runner.name] = asyncio.get_running_loop().create_task(
            self._loop(runner), name=f"poll {runner.name}"
        )

    async def _loop(self, runner: SourceRunner) -> None:
        clock = self._clock
        due = clock.monotonic()
        while True:
            wait = due - clock.monotonic()
            if wait > 0:
                await clock.sleep(wait)
            cycle = await runner.dispatch()
            due = cycle.start + runner.interval

    async def remove(self, *names: str) -> None:
        """Stop the runners of `names`: cancel their polls, wait for them, close their sessions."""
        loops = [self._loops.pop(n) for n in names if n in self._loops]
        runners = [self.runners.pop(n) for n in names if n in self.runners]
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await asyncio.gather(*(r.stop() for r in runners))

    async def shutdown(self) -> None:
        await self.remove(*self.runners)
