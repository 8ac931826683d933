"""At most one log line per kind of event per interval, with a count of what was held back.

A flood of bad connections must not become a flood of log lines: one such attack once
wrote 229 MB of logs in a minute.  The first event of a kind is logged at once; the
rest within `every` seconds are only counted, and the next line says how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.model.clock import SYSTEM_CLOCK, Clock

#: how often one kind of event is logged at most
LOG_EVERY_SECONDS = 60.0


@dataclass
class LogThrottle:
    every: float = LOG_EVERY_SECONDS
    clock: Clock = SYSTEM_CLOCK
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def admit(self, kind: str) -> int | None:
        """None when this event of `kind` is held back; else how many were held back before it."""
        now = self.clock.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._held.pop(kind, 0)
