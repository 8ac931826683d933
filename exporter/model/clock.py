"""Time as a dependency.

Everything that waits or timestamps takes a `Clock`, so tests move time instead of
sleeping: a day of polling within a budget runs in a second of real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds for measuring intervals; never jumps."""

    def time(self) -> float:
        """Wall-clock Unix seconds, for timestamps shown to users."""

    async def sleep(self, seconds: float) -> None:
        """Wait; a fake clock advances instead."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()

#: loop iterations without any other work before a fake clock jumps to its next timer
_IDLE_SPINS = 8


class FakeClock:
    """A clock for tests: time moves only when told to, or when everything waits on it.

    `sleep` registers a timer.  With `autojump` (the default) a helper task watches the
    event loop and, once no callback has been ready for a few iterations (every task is
    waiting on this clock, or on nothing), moves time to the earliest timer and wakes its
    sleepers, in deadline order.  Work on loopback sockets keeps the loop busy, so real
    HTTP between a fake vendor and the exporter completes before time moves; threads
    and subprocesses are not seen, so tests on this clock avoid them.  `advance()` moves
    time by hand; `autojump = False` holds time still (e.g. to look at a poll in flight).
    """

    def __init__(self, start: float = 1_700_000_000.0, *, autojump: bool = True) -> None:
        self._mono = 1000.0
        self._offset = start - self._mono
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._autojump = autojump
        self._jumper: asyncio.Task[None] | None = None
        #: every duration anyone slept, in order
        self.slept: list[float] = []

    @property
    def autojump(self) -> bool:
        return self._autojump

    @autojump.setter
    def autojump(self, on: bool) -> None:
        self._autojump = on
        if on and self._timers:
            self._start_jumper()

    def _start_jumper(self) -> None:
        if self._jumper is None or self._jumper.done():
            self._jumper = asyncio.get_running_loop().create_task(self._jump_when_idle())

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._mono + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._mono += max(0.0, seconds)
        self._wake(self._mono)

    def _wake(self, until: float) -> None:
        while self._timers and self._timers[0][0] <= until:
            _, _, fut = heapq.heappop(self._timers)
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (self._mono + seconds, next(self._seq), fut))
        if self._autojump:
            self._start_jumper()
        await fut

    async def _jump_when_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle = 0
        while self._timers and self._autojump:
            await asyncio.sleep(0)
            # asyncio keeps the callbacks ready to run in `_ready`; only this helper's own
            # wake-up is missing from it while it runs
            busy = len(loop._ready)  # type: ignore[attr-defined]
            self._drop_cancelled()
            idle = 0 if busy else idle + 1
            if idle >= _IDLE_SPINS and self._timers and self._autojump:
                deadline = self._timers[0][0]
                self._mono = max(self._mono, deadline)
                self._wake(self._mono)
                idle = 0

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)


class Overtime(Exception):
    """The clock said the time was up before the work ended (the work was cancelled)."""


async def within(clock: Clock, seconds: float, work: Awaitable[T]) -> T:
    """`work`'s result, or Overtime once `clock` has let `seconds` pass: time limits on the
    injectable clock, so tests of slow answers run in simulated time."""
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise Overtime
    return task.result()
