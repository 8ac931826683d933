"""Polling: one runner per source, driven by one APScheduler job per source.

Each job awaits a whole cycle (discovery, app-level poll, then every batch of targets
spread evenly over the interval), and `max_instances=1` means a slow cycle is never
overlapped by the next.  Sources are independent jobs with their own HTTP session and
budget, so one slow or failing vendor never delays another.

The runner owns what every provider shares: success/failure bookkeeping, one log line
per failure, back-off on throttling and 5xx, series removal for gone streams, and the
effective interval the budget allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.clock import Clock
from exporter.config import Config, SourceBase
from exporter.errors import ParseError, PollError, ThrottledError
from exporter.http import HttpClient
from exporter.providers import get_provider
from exporter.providers.base import Outcome, Target
from exporter.ratelimit import SourceLimiter
from exporter.state import SourceState, SourceStats, Store

#: a cycle this much longer than its interval has overrun: the vendor answers too slowly
OVERRUN = 1.1


class SourceRunner:
    def __init__(
        self,
        *,
        config: Config,
        source: SourceBase,
        store: Store,
        state: SourceState,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.name = source.name
        self.source = source
        self.store = store
        self.state = state
        self.clock = clock
        self.log = log.bind(provider=source.provider, source=source.name)
        assert state.stats is not None
        self.stats = state.stats
        self.configured_interval = config.interval_of(source)
        self.stale_after = config.global_.stale_after
        self.limiter = SourceLimiter(config.windows_of(source), clock, previous=state.limiter)
        state.limiter = self.limiter
        self.http = HttpClient(
            limiter=self.limiter, stats=self.stats, store=store, clock=clock, timeout=config.global_.timeout
        )
        self.provider = get_provider(source.provider)(
            source, base_url=config.base_url_of(source), http=self.http, clock=clock, log=self.log
        )
        self.configured = self.provider.configured_targets()
        # what the previous runner of this source discovered, so a reload loses no series
        self.discovered: list[Target] = list(state.discovered)
        self.provider.discovery_requests = state.discovery_requests
        self._source_errors: dict[str, str] = {}
        self.interval = self.configured_interval
        #: called after a cycle whose plan changed the interval, with the delay until the next cycle
        self.on_interval_change: Callable[[SourceRunner, float], None] | None = None
        self._reschedule_pending = False
        self._overran = False
        self._tasks: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._plan()
        store.set_targets(self.name, self.targets())

    # -- planning -------------------------------------------------------------------------
    def targets(self) -> list[Target]:
        """Configured targets, then discovered ones that are neither configured nor share a label."""
        keys = {t.key for t in self.configured}
        labels = {t.stream for t in self.configured}
        return self.configured + [t for t in self.discovered if t.key not in keys and t.stream not in labels]

    def batches(self) -> list[list[Target]]:
        size = max(1, self.provider.batch_size())
        targets = self.targets()
        return [targets[i : i + size] for i in range(0, len(targets), size)]

    def requests_per_cycle(self) -> dict[str, int]:
        return self.provider.requests_per_cycle(len(self.batches()))

    def _plan(self) -> None:
        """Effective interval: the configured one, lengthened until a cycle fits every window
        and, when the vendor answers too slowly for that, to what the last cycle really took.

        A change takes effect for the next cycle (`_reschedule_pending`): rescheduling in the
        middle of one would only make APScheduler skip a run.
        """
        planned = max(self.configured_interval, self.limiter.interval_for(self.requests_per_cycle()))
        slow = self.state.last_cycle_seconds
        interval = slow if slow > planned * OVERRUN else planned
        changed = abs(interval - self.interval) > 1e-3 * self.interval
        if changed:
            self.log.info(
                "poll interval changed",
                interval_seconds=round(interval, 3),
                configured_seconds=self.configured_interval,
            )
            self._reschedule_pending = True
        self.interval = interval
        self.state.stale_after = max(self.stale_after, 2 * interval)
        self.stats.interval = interval
        self.stats.budget_rps = self.limiter.requests_per_second
        self.stats.targets = len(self.targets())
        self.store.bump()

    # -- one cycle ----------------------------------------------------------------------
    async def job(self) -> None:
        """What APScheduler runs; ends quietly when the runner is being stopped."""
        if self._stopping:
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.run_cycle()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            self._tasks.discard(task)

    async def run_cycle(self) -> None:
        """One cycle: every request of the source gets its own slot, evenly spread.

        Discovery takes the first slots (its pages), then the app-level poll, then one slot
        per batch, so that a cycle planned to fit the budget never needs the limiter to wait.
        """
        start = self.clock.monotonic()
        discovering = self.source.discovery_enabled()
        if discovering:
            await self._discover()
        else:
            self._plan()  # a provider's batch size may have changed (Fermion's fallback)
        batches = self.batches()
        lead = (self.provider.discovery_requests if discovering else 0) + int(self.provider.has_app_metrics)
        spacing = self.interval / max(1, lead + len(batches))
        due = start + (self.provider.discovery_requests * spacing if discovering else 0.0)
        if self.provider.has_app_metrics:
            due = await self._in_slot(due, spacing, self._poll_app())
        for batch in batches:
            due = await self._in_slot(due, spacing, self.poll_batch(batch))
        self.store.mark_attempted(self.name)
        self._finish_cycle(start)  # re-plans first: an overrun also lengthens stale_after
        self.store.expire(self.clock.monotonic())

    def _finish_cycle(self, start: float) -> None:
        """Measure the cycle; one that overran its interval lengthens the next plan."""
        elapsed = self.clock.monotonic() - start
        overran = elapsed > self.interval * OVERRUN
        if overran != self._overran:
            if overran:
                self.log.warning(
                    "poll cycle overran its interval: the vendor answers too slowly for this many targets",
                    cycle_seconds=round(elapsed, 3),
                    interval_seconds=round(self.interval, 3),
                )
            else:
                self.log.info("poll cycles fit their interval again", cycle_seconds=round(elapsed, 3))
            self._overran = overran
        self.state.last_cycle_seconds = elapsed
        self._plan()
        if self._reschedule_pending and self.on_interval_change is not None:
            self._reschedule_pending = False
            self.on_interval_change(self, max(0.0, start + self.interval - self.clock.monotonic()))

    async def _in_slot(self, due: float, spacing: float, poll: Coroutine[Any, Any, None]) -> float:
        """Run `poll` at `due`; return when the next slot is due.

        A slot that is late because requests were slow catches up (within the budget);
        after a back-off pause the rest of the cycle counts from the pause's end instead,
        so it keeps its spacing rather than going out in a burst.
        """
        delay = due - self.clock.monotonic()
        if delay > 0:
            try:
                await self.clock.sleep(delay)
            except BaseException:
                poll.close()
                raise
        await poll
        return max(due + spacing, self.limiter.paused_until)

    def _unexpected(self, e: Exception, what: str) -> PollError:
        """A provider bug costs the request it happened in, never the source."""
        self.log.error("provider failed unexpectedly", during=what, exc_type=type(e).__name__)
        return PollError(f"internal error in the {self.source.provider} provider ({type(e).__name__})")

    def _source_failure(self, what: str, e: PollError) -> None:
        """One warning when a source-level request starts failing (or fails differently)."""
        repeated = self._source_errors.get(what) == e.kind
        self._source_errors[what] = e.kind
        log = self.log.debug if repeated else self.log.warning
        log(f"{what} failed", error=e.kind, reason=e.message)

    async def _discover(self) -> None:
        try:
            found = await self.provider.discover()
        except Exception as exc:
            e = exc if isinstance(exc, PollError) else self._unexpected(exc, "discovery")
            self._after_errors([e])
            self._source_failure("discovery", e)
            self.store.mark_attempted(self.name)
            return
        if self._source_errors.pop("discovery", None) is not None:
            self.log.info("discovery recovered")
        before = {t.key for t in self.discovered}
        after = {t.key for t in found}
        if before != after:
            self.log.info(
                "discovered targets changed",
                added=len(after - before),
                removed=len(before - after),
                total=len(after),
            )
        self.discovered = self.state.discovered = list(found)
        self.state.discovery_requests = self.provider.discovery_requests
        self.limiter.succeeded()
        self.store.set_targets(self.name, self.targets())
        self.store.mark_attempted(self.name)
        self._plan()

    async def _poll_app(self) -> None:
        try:
            samples = await self.provider.poll_app()
        except Exception as exc:
            e = exc if isinstance(exc, PollError) else self._unexpected(exc, "app-level poll")
            self._after_errors([e])
            self._source_failure("app-level poll", e)
            self.store.mark_attempted(self.name)
            return
        if self._source_errors.pop("app-level poll", None) is not None:
            self.log.info("app-level poll recovered")
        self.limiter.succeeded()
        self.store.record_app(self.name, samples, mono=self.clock.monotonic())
        self.store.mark_attempted(self.name)

    async def poll_batch(self, batch: Sequence[Target]) -> None:
        t0 = self.clock.monotonic()
        waited0 = self.http.wait_seconds
        outcomes: dict[str, Outcome]
        try:
            outcomes = dict(await self.provider.poll(batch))
        except PollError as e:
            outcomes = {t.key: e for t in batch}
        except Exception as e:  # a provider bug must cost its targets, not the source
            self.log.error("provider failed unexpectedly", exc_type=type(e).__name__)
            err = PollError(f"internal error in the {self.source.provider} provider ({type(e).__name__})")
            outcomes = {t.key: err for t in batch}
        # the poll's own time: waiting for the budget is not the vendor's slowness
        duration = self.clock.monotonic() - t0 - (self.http.wait_seconds - waited0)
        errors: list[PollError] = []
        gone: list[str] = []
        for t in batch:
            outcome = outcomes.get(t.key) or ParseError("the answer did not include this target")
            if isinstance(outcome, PollError):
                errors.append(outcome)
                self._failed(t, outcome, duration)
                if outcome.kind == "gone" and t.discovered:
                    gone.append(t.key)
            else:
                prev = self.state.targets.get(t.key)
                if prev is not None and prev.attempted and not prev.up:
                    self.log.info("poll recovered", stream=t.stream)
                self.store.record_success(
                    self.name,
                    t.key,
                    outcome,
                    now=self.clock.time(),
                    mono=self.clock.monotonic(),
                    duration=duration,
                )
        self.store.mark_attempted(self.name)
        if errors:
            self._after_errors(errors)
        else:
            self.limiter.succeeded()
        if gone:
            self.discovered = self.state.discovered = [t for t in self.discovered if t.key not in gone]
            self.store.set_targets(self.name, self.targets())
            self._plan()

    def _failed(self, target: Target, error: PollError, duration: float) -> None:
        prev = self.state.targets.get(target.key)
        repeated = prev is not None and prev.error == error.kind
        self.store.record_failure(self.name, target.key, error, duration=duration)
        log = self.log.debug if repeated else self.log.warning
        log("poll failed", stream=target.stream, error=error.kind, reason=error.message)

    def _after_errors(self, errors: Sequence[PollError]) -> None:
        """Back off once per distinct error that asks for it, honouring Retry-After."""
        distinct = {id(e): e for e in errors}.values()
        for e in distinct:
            if isinstance(e, ThrottledError):
                self.stats.throttled += 1
            if e.backoff:
                pause = self.limiter.backoff(e.retry_after if isinstance(e, ThrottledError) else None)
                self.log.debug("backing off", seconds=round(pause, 3), error=e.kind)
        self.store.bump()

    # -- lifecycle ----------------------------------------------------------------------
    async def stop(self, grace: float = 3.0) -> None:
        """Cancel in-flight polls, wait for them, close the HTTP session."""
        self._stopping = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        await self.provider.close()
        await self.http.close()


def new_state(source: SourceBase, stale_after: float, previous: SourceState | None) -> SourceState:
    """A source's state, carried over from the previous configuration when it is the same source."""
    if previous is not None and previous.provider == source.provider:
        previous.stale_after = stale_after
        return previous
    return SourceState(
        name=source.name,
        provider=source.provider,
        stale_after=stale_after,
        stats=SourceStats(provider=source.provider),
    )


class PollScheduler:
    """APScheduler wrapper: one interval job per runner, rescheduled when its interval changes."""

    def __init__(self) -> None:
        self._sched = AsyncIOScheduler(timezone=UTC)
        self.runners: dict[str, SourceRunner] = {}

    def start(self, runners: Sequence[SourceRunner]) -> None:
        if not self._sched.running:
            self._sched.start()
        now = datetime.now(UTC)
        for r in runners:
            r.on_interval_change = self._reschedule
            self.runners[r.name] = r
            self._sched.add_job(
                r.job,
                IntervalTrigger(seconds=r.interval, timezone=UTC),
                id=r.name,
                name=f"poll {r.name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now + timedelta(milliseconds=10),
            )

    def _reschedule(self, runner: SourceRunner, delay: float) -> None:
        if self.runners.get(runner.name) is runner and self._sched.get_job(runner.name) is not None:
            first = datetime.now(UTC) + timedelta(seconds=delay)
            trigger = IntervalTrigger(seconds=runner.interval, start_date=first, timezone=UTC)
            self._sched.reschedule_job(runner.name, trigger=trigger)

    async def stop_runners(self) -> None:
        runners = list(self.runners.values())
        for r in runners:
            with contextlib.suppress(Exception):
                self._sched.remove_job(r.name)
        self.runners.clear()
        await asyncio.gather(*(r.stop() for r in runners))

    async def shutdown(self) -> None:
        await self.stop_runners()
        if self._sched.running:
            self._sched.shutdown(wait=False)
