"""One runner per source: cycles of requests that leave at planned moments.

A cycle is discovery, the app-level poll, then every batch of targets, each in its own
evenly spaced slot of the effective interval.  Requests leave at their slots without
waiting for earlier answers, up to `max_in_flight` at once, and a target is never polled
twice at once, so an older answer can never overwrite a newer one.  The effective
interval is planned from the budget and the measured answer times, both ways: it
lengthens when the vendor's windows or slow answers demand it and returns to the
configured interval as soon as they allow.

The runner owns what every provider shares: success and failure bookkeeping, one log line
per failure, back-off on throttling and 5xx, series removal for gone streams.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

import structlog
from pydantic import BaseModel, ValidationError

from exporter.config.loader import Config
from exporter.config.schema import SourceBase
from exporter.engine.cluster import Cluster, owner
from exporter.engine.http import HttpClient
from exporter.engine.limiter import SourceLimiter
from exporter.engine.sharedlimiter import SharedLimiter, split
from exporter.engine.sink import PollSink
from exporter.engine.stats import SourceStats
from exporter.engine.targetlists import TargetLists
from exporter.model.clock import Clock
from exporter.model.errors import GoneError, InternalError, ParseError, PollError, ThrottledError
from exporter.model.samples import Origin, Outcome, Sample, Target
from exporter.model.windows import Window
from exporter.providers.base import provider_class

R = TypeVar("R")

#: answers remembered for planning; the plan uses a high percentile of them
ANSWERS_KEPT = 50
ANSWER_PERCENTILE = 0.9
#: bounds of the default `max_in_flight`
MIN_IN_FLIGHT = 2
MAX_IN_FLIGHT = 64
#: a slot sent this much later than planned (beyond a tenth of the spacing) is behind the plan
BEHIND_SECONDS = 0.05
#: a cycle this much longer than its interval did not keep its plan
OVERRUN = 1.1


def default_in_flight(limiter: SourceLimiter, timeout: float) -> int:
    """Enough requests in flight to keep to the budget even if every answer took the whole
    timeout: the budget's rate times the timeout, within sensible bounds."""
    return max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, math.ceil(limiter.requests_per_second * timeout)))


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
    #: the latest answer times (seconds), for planning
    answers: deque[float] = field(default_factory=lambda: deque(maxlen=ANSWERS_KEPT))

    @classmethod
    def carried(cls, source: SourceBase, previous: SourceMemory | None) -> SourceMemory:
        """The previous memory of a source of the same provider, else a fresh one."""
        if previous is not None and previous.provider == source.provider:
            return previous
        return cls(provider=source.provider, stats=SourceStats(provider=source.provider))


@dataclass
class Cycle:
    """One cycle's bookkeeping: its start, its plan, and its requests still in flight."""

    start: float
    interval: float
    pending: int = 0
    dispatched: bool = False
    late: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)


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
        cluster: Cluster | None = None,
    ) -> None:
        """With `cluster`, the runner polls only the targets this replica owns, discovers
        and polls app-level only while it holds the source's lease, and spends the budget
        shared by every replica."""
        self.name = source.name
        self.cluster = cluster
        self.source = source
        self.sink = sink
        self.memory = memory
        self.clock = clock
        self.log = log.bind(provider=source.provider, source=source.name)
        self.stats = memory.stats
        self.configured_interval = config.interval_of(source)
        self.stale_after = config.global_.stale_after
        timeout = config.global_.timeout
        self.limiter: SourceLimiter = (
            SharedLimiter(
                config.windows_of(source),
                clock,
                cluster=cluster,
                source=source.name,
                timeout=timeout,
                previous=memory.limiter,
            )
            if cluster is not None
            else SourceLimiter(config.windows_of(source), clock, previous=memory.limiter)
        )
        memory.limiter = self.limiter
        self.max_in_flight = source.max_in_flight or default_in_flight(self.limiter, timeout)
        self.http = HttpClient(limiter=self.limiter, observer=self, clock=clock, timeout=timeout)
        self.provider = provider_class(source.provider)(
            source, base_url=config.base_url_of(source), http=self.http, clock=clock, log=self.log
        )
        self.configured = self.provider.configured_targets()
        self.external = (
            TargetLists(
                source,
                clock=clock,
                log=self.log,
                stats=self.stats.target_lists,
                on_change=self._external_changed,
                taken=self._labels_besides,
            )
            if source.external_targets()
            else None
        )
        if self.external is None:
            self.stats.target_lists.clear()
        self.discovered: list[Target[Any]] = list(memory.discovered)
        self.provider.discovery_requests = memory.discovery_requests
        self._discovered_once = bool(memory.discovered)
        self._source_errors: dict[str, str] = {}
        #: the kind of each target's last failure, to log a repeated failure at debug level only
        self._last_error: dict[str, str] = {}
        #: provider bugs already logged with their traceback (during, exception type)
        self._bugs: set[tuple[str, str]] = set()
        self._free = asyncio.Semaphore(self.max_in_flight)
        #: targets whose poll is in flight
        self._polling: set[str] = set()
        #: the cycle dispatching or in flight, and the targets this replica owned at the last look
        self._cycle: Cycle | None = None
        self._owned_keys: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: set by stop(): a dispatch still running sends nothing more
        self._stopped = False
        self._behind = False
        # a source restarted by a reload compares its plan with the one it had: a reload that
        # changes nothing about the plan does not say it changed
        previous = memory.stats.interval
        self.interval = previous or self.configured_interval
        #: the interval the source's leaseholder planned, for every replica to keep
        self._shared_interval: float | None = None
        self._assigned: dict[
            tuple[str, ...], tuple[tuple[tuple[str, ...], tuple[int, ...]], dict[str, list[Target[Any]]]]
        ] = {}
        #: said once: the budget leaves this replica no request in some window
        self._starved = False
        self._plan(quiet=not previous)
        self._set_targets()
        if cluster is not None:
            cluster.on_change(self._ownership_changed)

    # -- what the HTTP client reports (RequestObserver) -----------------------------------
    def request_started(self) -> None:
        self.stats.in_flight += 1
        self.sink.changed()

    def request_done(self, endpoint: str, code: str, duration: float) -> None:
        self.stats.in_flight -= 1
        self.stats.request_done(endpoint, code, duration)
        self.memory.answers.append(duration)
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
        """Configured targets, then those of files and the URL, then discovered ones; a key
        once, and a discovered target never with a label already used."""
        out = list(self.configured)
        keys = {t.key for t in out}
        labels = {t.stream for t in out}
        for t in self.external.targets() if self.external is not None else ():
            if t.key not in keys:
                out.append(t)
                keys.add(t.key)
                labels.add(t.stream)
        return out + [t for t in self.discovered if t.key not in keys and t.stream not in labels]

    def owned(self) -> list[Target[Any]]:
        """The targets this replica polls and exports: all of them without a cluster, none
        while it may not poll (joining, or cut off from Redis too long)."""
        if self.cluster is None:
            return self.targets()
        if not self.cluster.polling:
            return []
        return self.assignment(self.cluster.members).get(self.cluster.replica, [])

    def assignment(self, members: tuple[str, ...]) -> dict[str, list[Target[Any]]]:
        """Every member's targets, by rendezvous hashing (the same on every replica)."""
        targets = self.targets()
        signature = (members, tuple(map(id, targets)))
        cached = self._assigned.get(members)
        if cached is None or cached[0] != signature:
            assigned: dict[str, list[Target[Any]]] = {m: [] for m in members}
            for t in targets:
                assigned[owner(members, self.name, t.key)].append(t)
            # the lists of the live members and of the budget's members, no older ones
            self._assigned = {k: v for k, v in self._assigned.items() if k in self._recent(members)}
            self._assigned[members] = cached = (signature, assigned)
        return cached[1]

    def _recent(self, members: tuple[str, ...]) -> set[tuple[str, ...]]:
        assert self.cluster is not None
        return {self.cluster.members, self.cluster.budget_members} - {members}

    def leads(self) -> bool:
        """Whether this replica sends the source-level requests (discovery, app-level)."""
        return self.cluster is None or self.cluster.leads(self.name)

    def _ownership_changed(self) -> None:
        """Members or leases changed: targets lost are dropped from /metrics at once, targets
        won are polled from the next slot on; app-level values go with the lease."""
        if self._stopped:
            return
        self._plan(quiet=True)
        before = self._owned_keys
        owned = self._set_targets()
        gained = [t for t in owned if t.key not in before and t.key not in self._polling]
        if gained and self._cycle is not None and self._owned_keys:
            # taken over from a replica that left: polled now, within the budget, not a cycle later
            self._track_task(asyncio.get_running_loop().create_task(self._poll_gained(self._cycle, gained)))
        if not self.leads() and self.provider.app_metrics():
            self.sink.record_app(self.name, [], mono=self.clock.monotonic())

    async def _poll_gained(self, cycle: Cycle, gained: list[Target[Any]]) -> None:
        size = max(1, self.provider.batch_size())
        for i in range(0, len(gained), size):
            batch = self._pollable(gained[i : i + size])
            if not batch:
                continue
            if not await self._take_slot():
                return
            self._polling.update(t.key for t in batch)
            self._spawn(cycle, self.poll_batch(batch))

    def _pollable(self, batch: Sequence[Target[Any]]) -> list[Target[Any]]:
        """The targets of `batch` to send now: a target still in flight (from the previous
        cycle) is never polled twice at once, and one that went to another replica
        meanwhile is no longer polled here."""
        return [t for t in batch if t.key not in self._polling and t.key in self._owned_keys]

    async def _take_slot(self) -> bool:
        """Wait for a place among the `max_in_flight` requests; False once the runner stopped
        (a dispatch still running sends nothing more)."""
        await self._free.acquire()
        if self._stopped:
            self._free.release()
            return False
        return True

    def _set_targets(self) -> list[Target[Any]]:
        """Export (and from now on poll) the targets this replica owns."""
        owned = self.owned()
        self.sink.set_targets(self.name, owned)
        self._owned_keys = {t.key for t in owned}
        return owned

    def _track_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _labels_besides(self, origin: str) -> dict[str, str]:
        """Stream label -> key of the configured targets and of every other file or URL."""
        taken = {t.stream: t.key for t in self.configured}
        if self.external is not None:
            for name, state in self.external.origins.items():
                if name != origin:
                    taken.update((t.stream, t.key) for t in state.targets)
        return taken

    def preload_external(self) -> None:
        """Take the target files' lists now (blocking; `--config.check` plans with them)."""
        if self.external is not None:
            self.external.preload()
            self._external_changed()

    def _external_changed(self) -> None:
        """A file or the URL brought a new list: new targets are polled from the next slot
        on, removed ones lose their series at once, and the plan follows the count."""
        self._plan()
        self._set_targets()

    def batches(self) -> list[list[Target[Any]]]:
        """This replica's batches (all of them without a cluster)."""
        size = max(1, self.provider.batch_size())
        targets = self.owned()
        return [targets[i : i + size] for i in range(0, len(targets), size)]

    def requests_per_cycle(self) -> dict[str, int]:
        """What one cycle of the whole source sends, whichever replicas send it."""
        size = max(1, self.provider.batch_size())
        return self.provider.requests_per_cycle(math.ceil(len(self.targets()) / size))

    def member_requests(self, targets: int, leads: bool) -> dict[str, int]:
        """What a replica with `targets` targets sends of a cycle: its batches, and the
        source-level requests if it holds the lease."""
        size = max(1, self.provider.batch_size())
        out = self.provider.requests_per_cycle(math.ceil(targets / size))
        if not leads:
            if self.provider.app_metrics():
                out["default"] -= 1
            if self.source.discovery_enabled():
                bucket = self.provider.discovery_bucket
                out[bucket] = out.get(bucket, 0) - self.provider.discovery_requests
        return out

    def answer_seconds(self) -> float:
        """How long answers take: a high percentile of the latest ones (0 before any)."""
        answers = sorted(self.memory.answers)
        if not answers:
            return 0.0
        return answers[round(ANSWER_PERCENTILE * (len(answers) - 1))]

    def _plan(self, *, quiet: bool = False) -> None:
        """Effective interval: the configured one, lengthened only as far as the budget (each
        request occupying its windows until its answer) and the requests in flight at once
        (`max_in_flight` answers at a time) demand.  It follows both ways, each cycle."""
        answer = self.answer_seconds()
        requests = self.requests_per_cycle()
        budget = self.limiter.interval_for(requests, answer)
        if self.cluster is None:
            concurrency = sum(requests.values()) * answer / self.max_in_flight
            interval = max(self.configured_interval, budget, concurrency)
        else:
            budget, concurrency = self._cluster_plan(budget, answer)
            interval = max(self.configured_interval, budget, concurrency)
            if not self.leads() and self._shared_interval is not None:
                interval = max(self._shared_interval, self.configured_interval)
        if abs(interval - self.interval) > 1e-3 * self.interval and not quiet:
            self.log.info(
                "poll interval changed",
                interval_seconds=round(interval, 3),
                was_seconds=round(self.interval, 3),
                configured_seconds=self.configured_interval,
                answer_seconds=round(answer, 3),
                reason="budget" if budget >= concurrency else "answer times",
            )
        self.interval = interval
        self.sink.set_stale_after(self.name, max(self.stale_after, 2 * interval))
        self.stats.interval = interval
        self.stats.budget_rps = self.limiter.requests_per_second
        self.stats.targets = len(self.targets())
        self.sink.changed()

    def _cluster_plan(self, budget: float, answer: float) -> tuple[float, float]:
        """The intervals the budget and the requests in flight demand when every member
        sends its part of a cycle within its part of every window; this replica's part
        goes to its limiter.  The parts of the budget are computed over the members and the
        replicas that vanished lately (their parts stay reserved), the requests over the
        members that poll: while a vanished replica's part is reserved, the others poll its
        targets at a longer interval."""
        cluster = self.cluster
        assert cluster is not None and isinstance(self.limiter, SharedLimiter)
        leader = cluster.leader(self.name)
        reserved = self.assignment(cluster.budget_members)
        parts = {m: self.member_requests(len(ts), m == leader) for m, ts in reserved.items()}
        polled = self.assignment(cluster.members)
        sends = {m: self.member_requests(len(ts), m == leader) for m, ts in polled.items()}
        mine: dict[str, tuple[Window, ...]] = {}
        concurrency = 0.0
        for name, bucket in self.limiter.buckets.items():
            windows = split(bucket.windows, {m: p.get(name, 0) for m, p in parts.items()})
            mine[name] = windows.get(cluster.replica, ())
            for m, n in sends.items():
                needed = bucket.interval_for(n.get(name, 0), answer, windows.get(m, ()))
                if math.isfinite(needed):
                    budget = max(budget, needed)
                elif m == cluster.replica and not self._starved:
                    self._starved = True
                    self.log.warning(
                        "budget too small to give this replica a request in every window: it polls"
                        " nothing of this source; use fewer replicas or a larger rate_limit",
                        bucket=name,
                        members=len(parts),
                    )
        for n in sends.values():
            concurrency = max(concurrency, sum(n.values()) * answer / self.max_in_flight)
        self.limiter.set_allowed(mine)
        cluster.stats.owned[self.name] = len(self.owned())
        cluster.stats.assigned[self.name] = {m: len(ts) for m, ts in polled.items()}
        return budget, concurrency

    async def _follow(self) -> None:
        """Take the leaseholder's discovered list and plan (a replica without the lease)."""
        assert self.cluster is not None
        shared = await self.cluster.shared(self.name)
        if shared.interval is not None:
            self._shared_interval = shared.interval
        if shared.pages is not None:
            self.provider.discovery_requests = self.memory.discovery_requests = shared.pages
        if shared.discovered is not None and self.source.discovery_enabled():
            targets = self._revive(shared.discovered)
            if {t.key for t in targets} != {t.key for t in self.discovered}:
                self.discovered = self.memory.discovered = targets
                self._targets_changed()

    def _revive(self, shared: list[dict[str, Any]]) -> list[Target[Any]]:
        """Targets from the shared discovered list (what `_share` wrote)."""
        annotation = type(self.source).model_fields["targets"].annotation
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        out: list[Target[Any]] = []
        if not models:
            return out
        for item in shared:
            try:
                spec = models[0].model_validate(item["spec"])
                info = {str(k): str(v) for k, v in item["info"].items()}
                out.append(Target.of(spec, Origin.DISCOVERY, info))
            except (ValidationError, KeyError, TypeError, AttributeError):
                continue
        return out

    async def _share(self) -> None:
        """The leaseholder's discovered list and plan, for the other replicas."""
        assert self.cluster is not None
        discovered = (
            [{"spec": t.spec.model_dump(mode="json"), "info": dict(t.info)} for t in self.discovered]
            if self.source.discovery_enabled() and self._discovered_once
            else None
        )
        await self.cluster.publish(
            self.name, discovered=discovered, pages=self.provider.discovery_requests, interval=self.interval
        )

    # -- one cycle ----------------------------------------------------------------------
    async def run_cycle(self) -> None:
        """One whole cycle: dispatch every slot, then wait for every answer."""
        cycle = await self.dispatch()
        await cycle.finished.wait()

    async def dispatch(self) -> Cycle:
        """Send a cycle's requests, each at its planned moment; return once the last one has
        left (their answers arrive in the background).

        Discovery takes the first slots (its pages, one after another), then the app-level
        poll, then one slot per batch.  A discovery that ends within its slots decides this
        cycle's targets; a slower one, the next cycle's (the first cycle always waits for it).
        After a back-off pause the rest of the cycle counts from the pause's end, so it keeps
        its spacing rather than going out in a burst.
        """
        if self.external is not None:
            self.external.start()
            await self.external.loaded()  # at once after the first time
        if self.cluster is not None:
            await self.cluster.joined()  # how many share the budget is unknown before
            if not self.leads() and self.cluster.redis_up:
                await self._follow()
        self._plan()  # the target list, the batch size or the answer times may have changed
        cycle = self._cycle = Cycle(start=self.clock.monotonic(), interval=self.interval)
        leads = self.leads()
        pages = await self._dispatch_discovery(cycle) if self.source.discovery_enabled() and leads else 0
        if pages is None:
            return cycle
        if self.cluster is not None and leads and self.cluster.redis_up:
            await self._share()
        #: the app-level poll (None), then the batches
        jobs: list[list[Target[Any]] | None] = [None] if self.provider.app_metrics() and leads else []
        jobs.extend(self.batches())
        if self.cluster is not None and not jobs and not pages:
            # a replica that owns none of the source's targets has done its part (readiness)
            self.sink.mark_attempted(self.name)
        spacing = cycle.interval / max(1, pages + len(jobs))
        shift = 0.0
        for i, job in enumerate(jobs):
            due = cycle.start + (pages + i) * spacing + shift
            await self._until(due)
            pause = self.limiter.paused_until - self.clock.monotonic()
            if pause > 0:
                shift += pause
                due += pause
                await self.clock.sleep(pause)
            if self.cluster is not None and not (self.cluster.polling and (job is not None or self.leads())):
                continue  # no longer this replica's to send (cut off from Redis too long, lease lost)
            if job is not None:
                job = self._pollable(job)  # noqa: PLW2901
                if not job:
                    continue
            if not await self._take_slot():
                break
            late = self.clock.monotonic() - due
            if late > max(BEHIND_SECONDS, spacing / 10):
                cycle.late = True
                self._falling_behind(late)
            if job is None:
                self._spawn(cycle, self._poll_app())
            else:
                self._polling.update(t.key for t in job)
                self._spawn(cycle, self.poll_batch(job))
            self._show_running(cycle)
        cycle.dispatched = True
        self._maybe_finish(cycle)
        return cycle

    async def _dispatch_discovery(self, cycle: Cycle) -> int | None:
        """Discovery's slots: its pages, one after another; how many (None: stopped)."""
        pages = self.provider.discovery_requests
        if not await self._take_slot():
            return None
        discovery = self._spawn(cycle, self._discover())
        slots = pages + int(self.provider.app_metrics()) + len(self.batches())
        first_slot = cycle.start + pages * cycle.interval / max(1, slots)
        if not self._discovered_once:
            await discovery
        else:
            await self._until_done(discovery, first_slot)
        if discovery.done():
            self._plan()
            cycle.interval = self.interval
        return pages

    async def _until_done(self, task: asyncio.Task[None], due: float) -> None:
        """Wait for `task`, but not past `due`."""
        delay = due - self.clock.monotonic()
        if delay <= 0 or task.done():
            return
        timer = asyncio.ensure_future(self.clock.sleep(delay))
        try:
            await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()

    async def _until(self, due: float) -> None:
        delay = due - self.clock.monotonic()
        if delay > 0:
            await self.clock.sleep(delay)

    def _spawn(self, cycle: Cycle, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run one slot's work (its in-flight place already taken) as a task of `cycle`."""
        cycle.pending += 1

        async def slot() -> None:
            try:
                await work
            finally:
                self._free.release()
                cycle.pending -= 1
                self._track(cycle)

        task = asyncio.get_running_loop().create_task(slot())
        self._track_task(task)
        return task

    def _track(self, cycle: Cycle) -> None:
        """A slot ended: finish the cycle when all have ended."""
        self._show_running(cycle)
        self._maybe_finish(cycle)

    def _show_running(self, cycle: Cycle) -> None:
        """While a cycle runs past its plan, its running time is the cycle duration shown."""
        running = self.clock.monotonic() - cycle.start
        if running > cycle.interval and not cycle.finished.is_set():
            self.stats.cycle_seconds = running

    def _maybe_finish(self, cycle: Cycle) -> None:
        if not cycle.dispatched or cycle.pending or cycle.finished.is_set():
            return
        cycle.finished.set()
        took = self.clock.monotonic() - cycle.start
        self.stats.cycle_seconds = took
        self.sink.expire(self.clock.monotonic())
        if self._behind and not cycle.late and took <= cycle.interval * OVERRUN:
            self._behind = False
            self.log.info("poll cycles keep their plan again", cycle_seconds=round(took, 3))
        elif not self._behind and took > cycle.interval * OVERRUN:
            self._behind = True
            self.log.warning(
                "poll cycle ran past its plan: the vendor answers too slowly for this interval",
                cycle_seconds=round(took, 3),
                interval_seconds=round(cycle.interval, 3),
            )
        self.sink.changed()

    def _falling_behind(self, late: float) -> None:
        """A slot could not leave on time: `max_in_flight` requests are still waiting for answers."""
        if not self._behind:
            self._behind = True
            self.log.warning(
                "poll cycle falls behind its plan: every request slot is waiting for an answer",
                late_seconds=round(late, 3),
                max_in_flight=self.max_in_flight,
                interval_seconds=round(self.interval, 3),
            )

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
        self._discovered_once = True
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
        self._targets_changed()

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
        """Poll `batch` and record each target's outcome (its keys are marked as polling)."""
        try:
            await self._poll_batch(batch)
        finally:
            self._polling.difference_update(t.key for t in batch)

    async def _poll_batch(self, batch: Sequence[Target[Any]]) -> None:
        t0 = self.clock.monotonic()
        waited0 = self.http.wait_seconds
        outcomes = await self._outcomes(batch)
        # the poll's own time: waiting for the budget is not the vendor's slowness (an
        # approximation while other requests of the source wait at the same time)
        duration = max(0.0, self.clock.monotonic() - t0 - (self.http.wait_seconds - waited0))
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
            self._targets_changed()

    def _targets_changed(self) -> None:
        self._set_targets()
        self.stats.targets = len(self.targets())
        self.sink.changed()

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
        """Cancel every request in flight, wait for them, close the provider and the session.
        A dispatch still running (its caller not cancelled) sends nothing more."""
        self._stopped = True
        if self.cluster is not None:
            self.cluster.off_change(self._ownership_changed)
            self.cluster.stats.owned.pop(self.name, None)
            self.cluster.stats.assigned.pop(self.name, None)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.external is not None:
            await self.external.stop()
        if isinstance(self.limiter, SharedLimiter):
            await self.limiter.close()
        await self.provider.close()
        await self.http.close()


def _check_level(samples: Sequence[Sample], *, app: bool) -> None:
    """Stream samples from `poll`, app-level ones from `poll_app`: anything else is a provider bug."""
    for sample in samples:
        if sample.app_level != app:
            level = "app-level" if sample.app_level else "per-stream"
            raise ValueError(f"{sample.name} is a {level} metric, returned by the wrong call")
