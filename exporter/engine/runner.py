"""One runner per source: a cycle of requests spread over the effective interval.

A cycle is discovery, the app-level poll, then every batch of targets, each in its own
evenly spaced slot.  The runner owns what every provider shares: success and failure
bookkeeping, one log line per failure, back-off on throttling and 5xx, series removal
for gone streams, and the effective interval the budget allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from exporter.config.loader import Config
from exporter.config.schema import SourceBase
from exporter.engine.http import HttpClient
from exporter.engine.limiter import SourceLimiter
from exporter.engine.sink import PollSink
from exporter.engine.stats import SourceStats
from exporter.model.clock import Clock
from exporter.model.errors import GoneError, InternalError, ParseError, PollError, ThrottledError
from exporter.model.samples import Outcome, Sample, Target
from exporter.providers.base import provider_class

R = TypeVar("R")

#: a cycle this much longer than its interval has overrun: the vendor answers too slowly
OVERRUN = 1.1


@dataclass
class SourceMemory:
    """What a source keeps when its runner is replaced (its configuration changed)."""

    provider: str
    stats: SourceStats
    #: kept so that a reload never resets a vendor's window
    limiter: SourceLimiter | None = None
    #: the last discovery's targets and page count, so a reload loses no series
    discovered: list[Target[Any]] = field(default_factory=list)
    discovery_requests: int = 1
    #: how long the last complete cycle really took (monotonic seconds)
    last_cycle_seconds: float = 0.0

    @classmethod
    def carried(cls, source: SourceBase, previous: SourceMemory | None) -> SourceMemory:
        """The previous memory of a source of the same provider, else a fresh one."""
        if previous is not None and previous.provider == source.provider:
            return previous
        return cls(provider=source.provider, stats=SourceStats(provider=source.provider))


class SourceRunner:
    """Polls one source; reports to `sink`, keeps what must survive a reload in `memory`."""

    def __init__(
        self,
        *,
        config: Config,
        source: SourceBase,
        sink: PollSink,
        memory: SourceMemory,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.name = source.name
        self.source = source
        self.sink = sink
        self.memory = memory
        self.clock = clock
        self.log = log.bind(provider=source.provider, source=source.name)
        self.stats = memory.stats
        self.configured_interval = config.interval_of(source)
        self.stale_after = config.global_.stale_after
        self.limiter = SourceLimiter(config.windows_of(source), clock, previous=memory.limiter)
        memory.limiter = self.limiter
        self.http = HttpClient(
            limiter=self.limiter, observer=self, clock=clock, timeout=config.global_.timeout
        )
        self.provider = provider_class(source.provider)(
            source, base_url=config.base_url_of(source), http=self.http, clock=clock, log=self.log
        )
        self.configured = self.provider.configured_targets()
        self.discovered: list[Target[Any]] = list(memory.discovered)
        self.provider.discovery_requests = memory.discovery_requests
        self._source_errors: dict[str, str] = {}
        #: the kind of each target's last failure, to log a repeated failure at debug level only
        self._last_error: dict[str, str] = {}
        #: provider bugs already logged with their traceback (during, exception type)
        self._bugs: set[tuple[str, str]] = set()
        self.interval = self.configured_interval
        self._overran = False
        self._plan(quiet=True)
        sink.set_targets(self.name, self.targets())

    # -- what the HTTP client reports (RequestObserver) -----------------------------------
    def request_done(self, endpoint: str, code: str, duration: float) -> None:
        self.stats.request_done(endpoint, code, duration)
        self.sink.changed()

    def limiter_waited(self) -> None:
        self.stats.limiter_waits += 1
        self.sink.changed()

    def points_skipped(self, points: int) -> None:
        self.stats.skipped_points += points
        self.log.debug("skipped malformed data points", points=points)
        self.sink.changed()

    # -- planning -------------------------------------------------------------------------
    def targets(self) -> list[Target[Any]]:
        """Configured targets, then discovered ones that are neither configured nor share a label."""
        keys = {t.key for t in self.configured}
        labels = {t.stream for t in self.configured}
        return self.configured + [t for t in self.discovered if t.key not in keys and t.stream not in labels]

    def batches(self) -> list[list[Target[Any]]]:
        size = max(1, self.provider.batch_size())
        targets = self.targets()
        return [targets[i : i + size] for i in range(0, len(targets), size)]

    def requests_per_cycle(self) -> dict[str, int]:
        return self.provider.requests_per_cycle(len(self.batches()))

    def _plan(self, *, quiet: bool = False) -> None:
        """Effective interval: the configured one, lengthened until a cycle fits every window
        and, when the vendor answers too slowly for that, to what the last cycle really took.

        A change takes effect when the next cycle is due.
        """
        planned = max(self.configured_interval, self.limiter.interval_for(self.requests_per_cycle()))
        slow = self.memory.last_cycle_seconds
        interval = slow if slow > planned * OVERRUN else planned
        changed = abs(interval - self.interval) > 1e-3 * self.interval
        if changed and not quiet:
            self.log.info(
                "poll interval changed",
                interval_seconds=round(interval, 3),
                configured_seconds=self.configured_interval,
            )
        self.interval = interval
        self.sink.set_stale_after(self.name, max(self.stale_after, 2 * interval))
        self.stats.interval = interval
        self.stats.budget_rps = self.limiter.requests_per_second
        self.stats.targets = len(self.targets())
        self.sink.changed()

    # -- one cycle ----------------------------------------------------------------------
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
        app = self.provider.app_metrics()
        lead = (self.provider.discovery_requests if discovering else 0) + int(app)
        spacing = self.interval / max(1, lead + len(batches))
        due = start + (self.provider.discovery_requests * spacing if discovering else 0.0)
        if app:
            due = await self._in_slot(due, spacing, self._poll_app())
        for batch in batches:
            due = await self._in_slot(due, spacing, self.poll_batch(batch))
        self.sink.mark_attempted(self.name)
        self._finish_cycle(start)  # re-plans first: an overrun also lengthens stale_after
        self.sink.expire(self.clock.monotonic())

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
        self.memory.last_cycle_seconds = elapsed
        self._plan()

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

    def _unexpected(self, e: Exception, during: str) -> PollError:
        """A provider bug costs the request it happened in, never the source.

        Logged once per kind of bug with its traceback (the log redacts secrets), then at
        debug level.
        """
        bug = (during, type(e).__name__)
        if bug in self._bugs:
            self.log.debug("provider failed unexpectedly", during=during, exc_type=type(e).__name__)
        else:
            self._bugs.add(bug)
            self.log.error("provider failed unexpectedly", during=during, exc_info=e)
        return InternalError(f"internal error in the {self.source.provider} provider ({type(e).__name__})")

    async def _source_level(self, what: str, call: Awaitable[R]) -> R | None:
        """A source-level request (discovery, the app-level poll): its result, or None when it
        failed, with one warning when it starts failing (or fails differently) and one line
        when it recovers.  Either way the source has attempted its first poll."""
        try:
            result = await call
        except Exception as exc:
            self.sink.mark_attempted(self.name)
            e = exc if isinstance(exc, PollError) else self._unexpected(exc, what)
            self._after_errors([e])
            repeated = self._source_errors.get(what) == e.kind
            self._source_errors[what] = e.kind
            log = self.log.debug if repeated else self.log.warning
            log(f"{what} failed", error=str(e.kind), reason=e.message)
            return None
        self.sink.mark_attempted(self.name)
        if self._source_errors.pop(what, None) is not None:
            self.log.info(f"{what} recovered")
        self.limiter.succeeded()
        return result

    async def _discover(self) -> None:
        found = await self._source_level("discovery", self.provider.discover())
        if found is None:
            return
        before = {t.key for t in self.discovered}
        after = {t.key for t in found}
        if before != after:
            self.log.info(
                "discovered targets changed",
                added=len(after - before),
                removed=len(before - after),
                total=len(after),
            )
        self.discovered = self.memory.discovered = list(found)
        self.memory.discovery_requests = self.provider.discovery_requests
        self.sink.set_targets(self.name, self.targets())
        self._plan()

    async def _app_samples(self) -> list[Sample]:
        samples = list(await self.provider.poll_app())
        _check_level(samples, app=True)
        return samples

    async def _poll_app(self) -> None:
        samples = await self._source_level("app-level poll", self._app_samples())
        if samples is not None:
            self.sink.record_app(self.name, samples, mono=self.clock.monotonic())

    async def _outcomes(self, batch: Sequence[Target[Any]]) -> dict[str, Outcome]:
        """The provider's outcome per target; a provider bug fails the batch's targets only."""
        try:
            outcomes = dict(await self.provider.poll(batch))
            for outcome in outcomes.values():
                if not isinstance(outcome, PollError):
                    _check_level(outcome, app=False)
        except PollError as e:
            return {t.key: e for t in batch}
        except Exception as e:
            err = self._unexpected(e, "poll")
            return {t.key: err for t in batch}
        return outcomes

    async def poll_batch(self, batch: Sequence[Target[Any]]) -> None:
        t0 = self.clock.monotonic()
        waited0 = self.http.wait_seconds
        outcomes = await self._outcomes(batch)
        # the poll's own time: waiting for the budget is not the vendor's slowness
        duration = self.clock.monotonic() - t0 - (self.http.wait_seconds - waited0)
        errors: list[PollError] = []
        gone: list[str] = []
        for t in batch:
            outcome = outcomes.get(t.key) or ParseError("the answer did not include this target")
            if isinstance(outcome, PollError):
                errors.append(outcome)
                self._failed(t, outcome, duration)
                if isinstance(outcome, GoneError) and t.discovered:
                    gone.append(t.key)
            else:
                if self._last_error.pop(t.key, None) is not None:
                    self.log.info("poll recovered", stream=t.stream)
                self.sink.record_success(
                    self.name,
                    t.key,
                    outcome,
                    now=self.clock.time(),
                    mono=self.clock.monotonic(),
                    duration=duration,
                )
        self.sink.mark_attempted(self.name)
        if errors:
            self._after_errors(errors)
        else:
            self.limiter.succeeded()
        if gone:
            self.discovered = self.memory.discovered = [t for t in self.discovered if t.key not in gone]
            self.sink.set_targets(self.name, self.targets())
            self._plan()

    def _failed(self, target: Target[Any], error: PollError, duration: float) -> None:
        repeated = self._last_error.get(target.key) == error.kind
        self._last_error[target.key] = error.kind
        self.sink.record_failure(self.name, target.key, error, duration=duration)
        log = self.log.debug if repeated else self.log.warning
        log("poll failed", stream=target.stream, error=str(error.kind), reason=error.message)

    def _after_errors(self, errors: Sequence[PollError]) -> None:
        """Back off once per distinct error that asks for it, honouring Retry-After."""
        distinct = {id(e): e for e in errors}.values()
        for e in distinct:
            if isinstance(e, ThrottledError):
                self.stats.throttled += 1
            if e.backoff:
                pause = self.limiter.backoff(e.retry_after if isinstance(e, ThrottledError) else None)
                self.log.debug("backing off", seconds=round(pause, 3), error=str(e.kind))
        self.sink.changed()

    # -- lifecycle ----------------------------------------------------------------------
    async def stop(self) -> None:
        """Close the provider and the HTTP session (the scheduler has cancelled the cycle)."""
        await self.provider.close()
        await self.http.close()


def _check_level(samples: Sequence[Sample], *, app: bool) -> None:
    """Stream samples from `poll`, app-level ones from `poll_app`: anything else is a provider bug."""
    for sample in samples:
        if sample.app_level != app:
            level = "app-level" if sample.app_level else "per-stream"
            raise ValueError(f"{sample.name} is a {level} metric, returned by the wrong call")
