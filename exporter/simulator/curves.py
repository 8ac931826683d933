"""Streams whose viewers move deterministically with time, with cumulative counters."""

from __future__ import annotations

import bisect
import math
import uuid
from dataclasses import dataclass, field

from .scenarios import DROP_AFTER

_INTEGRATION_STEP = 5.0
_MAX_STEPS = 5000


def curve_value(scenario: str, base: float, since_start: float) -> float:
    """Viewers of a scenario `since_start` seconds after the stream went live."""
    s = max(0.0, since_start)
    if scenario == "rising":
        return base * (1.0 + s / 600.0)
    if scenario == "falling":
        return base * math.pow(0.5, s / 900.0)
    wave = 1.0 + 0.1 * math.sin(2.0 * math.pi * s / 300.0)
    if scenario == "drop":
        return base * wave if s < DROP_AFTER else base * wave / 3.0
    return base * wave  # steady, ends, starts


@dataclass
class Session:
    """One live period of a stream; `end` None while it lasts."""

    id: str
    start: float
    end: float | None = None

    def covers(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True)
class Phase:
    """Overrides in force from `since` on: a fixed value, or the curve times a factor."""

    since: float
    override: float | None = None
    factor: float = 1.0


@dataclass
class SimStream:
    """A stream of one vendor. All times are simulator clock seconds (wall time)."""

    vendor: str
    key: str
    scenario: str
    base: float
    created_at: float
    sessions: list[Session] = field(default_factory=list)
    removed_at: float | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=lambda: [Phase(since=-math.inf)])
    viewer_seconds: float = 0.0
    live_seconds: float = 0.0
    peak: float = 0.0
    integrated_until: float = 0.0

    # ------------------------------------------------------------------ queries

    def exists(self, now: float) -> bool:
        return self.created_at <= now and (self.removed_at is None or now < self.removed_at)

    def session_at(self, t: float) -> Session | None:
        for session in reversed(self.sessions):
            if session.covers(t):
                return session
        return None

    def latest_session(self, now: float) -> Session | None:
        """The newest session that has started by `now` (it may have ended)."""
        for session in reversed(self.sessions):
            if session.start <= now:
                return session
        return None

    def is_live(self, now: float) -> bool:
        return self.session_at(now) is not None

    def change_times(self) -> list[float]:
        """When the stream is created or removed, and when each of its sessions starts or stops:
        the only moments its existence, liveness or latest session change by themselves."""
        times = [self.created_at]
        if self.removed_at is not None:
            times.append(self.removed_at)
        for session in self.sessions:
            times.append(session.start)
            if session.end is not None:
                times.append(session.end)
        return times

    def _phase_at(self, t: float) -> Phase:
        if len(self.phases) == 1:
            return self.phases[0]
        index = bisect.bisect_right([p.since for p in self.phases], t) - 1
        return self.phases[max(index, 0)]

    def viewers_at(self, t: float) -> float:
        session = self.session_at(t)
        if session is None:
            return 0.0
        phase = self._phase_at(t)
        if phase.override is not None:
            return max(0.0, phase.override)
        return max(0.0, curve_value(self.scenario, self.base, t - session.start) * phase.factor)

    def viewers(self, now: float) -> int:
        return round(self.viewers_at(now))

    # ------------------------------------------------------------------ counters

    def advance(self, now: float) -> None:
        """Integrate viewers and live time up to `now` (never backwards)."""
        t = self.integrated_until
        if now <= t:
            return
        step = max(_INTEGRATION_STEP, (now - t) / _MAX_STEPS)
        while t < now:
            dt = min(step, now - t)
            mid = t + dt / 2.0
            value = self.viewers_at(mid)
            self.viewer_seconds += value * dt
            if self.session_at(mid) is not None:
                self.live_seconds += dt
            self.peak = max(self.peak, value)
            t += dt
        self.peak = max(self.peak, self.viewers_at(now))
        self.integrated_until = now

    def peak_viewers(self, now: float) -> int:
        self.advance(now)
        return round(max(self.peak, self.viewers_at(now)))

    # ------------------------------------------------------------------ changes

    def _set_phase(self, phase: Phase) -> None:
        if self.phases and self.phases[-1].since >= phase.since:
            self.phases = [p for p in self.phases if p.since < phase.since] or [Phase(since=-math.inf)]
        self.phases.append(phase)

    def set_viewers(self, now: float, value: float) -> None:
        self.advance(now)
        self._set_phase(Phase(since=now, override=float(value)))

    def drop(self, now: float, factor: float) -> None:
        self.advance(now)
        current = self._phase_at(now)
        if current.override is not None:
            self._set_phase(Phase(since=now, override=current.override * factor))
        else:
            self._set_phase(Phase(since=now, factor=current.factor * factor))

    def end(self, now: float) -> None:
        self.advance(now)
        for session in self.sessions:
            if session.end is None or session.end > now:
                session.end = now if session.start <= now else session.start

    def start(self, now: float, viewers: float | None) -> None:
        self.advance(now)
        if self.removed_at is not None and self.removed_at <= now:
            self.removed_at = None
        self.created_at = min(self.created_at, now)
        if not self.is_live(now):
            # Drop sessions scheduled for later; this one starts now.
            self.sessions = [s for s in self.sessions if s.start <= now]
            self.sessions.append(Session(id=self.session_id(len(self.sessions)), start=now))
        if viewers is not None:
            self._set_phase(Phase(since=now, override=float(viewers)))

    def remove(self, now: float) -> None:
        self.end(now)
        self.removed_at = now

    def session_id(self, index: int) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"livestream-sim/{self.vendor}/{self.key}/{index}"))
