"""Time as a dependency.

Everything that waits or timestamps takes a `Clock`, so tests move time instead of
sleeping and a 10,000-poll rate-limit proof runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


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


class FakeClock:
    """A clock that only moves when told to, or when someone sleeps on it.

    `sleep` advances time at once (and yields to the loop), which models a single
    waiter exactly and is what the rate-limit and scheduling tests need.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._mono = 1000.0
        self._offset = start - self._mono
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._mono + self._offset

    def advance(self, seconds: float) -> None:
        self._mono += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


SYSTEM_CLOCK = SystemClock()
