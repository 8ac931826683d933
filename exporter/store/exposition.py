"""The exposition of the store on /metrics: cached bytes joined, only what changed rebuilt.

How a scrape works (`MetricsCache.scrape`):

1. `Store.expire` drops what went stale (a heap of deadlines: nothing to do while none is due).
2. `RowTable.refresh` rebuilds the blocks that polls changed since the last scrape: every
   target's lines were rendered once when its poll landed (`exporter.store.lines`), and a
   block is the joined lines of 256 targets in one family (`exporter.store.rows`).
3. The body is the parts in order: per family with samples its `# HELP`/`# TYPE` header
   (per format) and its lines in chunks of 8 blocks; then, rendered afresh on every scrape
   because they are small and change often, the exporter's self-metrics and the process
   metrics (`process_*`, `python_*`); OpenMetrics ends with `# EOF`.  A family without
   samples is left out.  The parts are not joined: the web handler writes them one by one.
4. gzip: every (family, block) is compressed once per change into an independent deflate
   segment (`exporter.store.deflate`), headers once for good; the response is one gzip
   member made of those segments plus the fresh tail's, its CRC combined from theirs.

The web handler calls `scrape_async`, which compresses a lot of changes in a worker thread
rather than on the event loop, and the app runs `keep_warm`, which compresses changes soon
after they land, so that a gzip scrape usually finds everything compressed already.

`StoreCollector` renders the same families from scratch with prometheus_client; the tests
check the incremental exposition against it.

In process, e.g. for a benchmark (`Target.of(spec)` takes any object with `key()` and
`stream_label()`; `Sample.of(name, value, **extra_labels)` a catalog metric):

    store = Store()
    store.keep_sources([("fermion-main", "fermion", SourceStats(provider="fermion"))])
    store.set_targets("fermion-main", targets)
    for t in targets:  # and again for those whose values change, before each scrape
        store.record_success("fermion-main", t.key, samples, now=time.time(),
                             mono=time.monotonic(), duration=0.1)
    cache = MetricsCache(store, ReloadStatus(), SystemClock())
    body = cache.scrape(openmetrics=False, gzip=True)  # Body: .parts, .size, .join()
    body = await cache.scrape_async(False, gzip=True)  # as the web handler does

Example exposition (one cloudflare target and its source):

    # HELP livestream_live Whether the stream is live (1) or not (0).
    # TYPE livestream_live gauge
    livestream_live{provider="cloudflare",source="cf-main",stream="3fd7..."} 1.0
    # HELP livestream_target_up Whether the last poll of the target succeeded.
    # TYPE livestream_target_up gauge
    livestream_target_up{provider="cloudflare",source="cf-main",stream="3fd7..."} 1.0
    # HELP livestream_exporter_api_requests_total Requests sent to the vendor API, by endpoint and HTTP code.
    # TYPE livestream_exporter_api_requests_total counter
    livestream_exporter_api_requests_total{code="200",endpoint="analytics_overall",...} 42.0
"""

from __future__ import annotations

import asyncio
import functools
import platform
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.model.catalog import CATALOG, SOURCE_LABELS, STREAM_LABELS, MetricDef
from exporter.model.clock import Clock
from exporter.store.deflate import GZIP_HEADER, Segment, crc32_combine, deflate, trailer
from exporter.store.lines import (
    API_REQUEST_DURATION,
    API_REQUESTS,
    BUDGET,
    BUILD_INFO,
    CLUSTER_LEADER,
    CLUSTER_MEMBERS,
    CLUSTER_OWNED,
    CLUSTER_REDIS_UP,
    CLUSTER_REPLICA,
    CYCLE_DURATION,
    HEALTH_FAMILIES,
    IN_FLIGHT,
    POLL_INTERVAL,
    RATE_LIMIT_WAITS,
    RELOAD_OK,
    RELOAD_TIMESTAMP,
    ROW_FAMILIES,
    SKIPPED_POINTS,
    TARGET_SOURCE_LAST_SUCCESS,
    TARGET_SOURCE_TARGETS,
    TARGET_SOURCE_UP,
    TARGETS,
    THROTTLED,
    FamilyDef,
    render_metrics,
    self_metrics,
)
from exporter.store.rows import GzipJob, GzipResult, compress
from exporter.store.store import Store


def _family(name: str, mdef: MetricDef, labels: tuple[str, ...]) -> Metric:
    if mdef.type == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), mdef.help, labels=labels)
    return GaugeMetricFamily(name, mdef.help, labels=labels)


def _gauge(fdef: FamilyDef, labels: Sequence[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(fdef.base, fdef.help, labels=labels)


def _counter(fdef: FamilyDef, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(fdef.base, fdef.help, labels=labels)


class StoreCollector(Collector):
    """Renders the store from scratch with prometheus_client's families: stream, app, health
    and per-source exporter metrics.

    `/metrics` no longer goes through it (see `MetricsCache`); it is the reference the
    incremental exposition is tested against, and what the tests' rigs scrape.
    """

    def __init__(self, store: Store, *, reload_status: ReloadStatus) -> None:
        self._store = store
        self._reload = reload_status

    def collect(self) -> Iterator[Metric]:
        yield from self._stream_metrics()
        yield from self._health_metrics()
        yield from self._exporter_metrics()

    def _stream_metrics(self) -> Iterator[Metric]:
        families: dict[tuple[str, tuple[str, ...]], Metric] = {}
        for s in self._store.sources.values():
            for t in list(s.targets.values()):
                if t.gone:
                    continue
                for sample in t.samples:
                    extra = tuple(k for k, _ in sample.labels)
                    self._add(
                        families,
                        sample.name,
                        STREAM_LABELS + extra,
                        (s.provider, s.name, t.target.stream, *(v for _, v in sample.labels)),
                        sample.value,
                    )
            for sample in s.app_samples:
                extra = tuple(k for k, _ in sample.labels)
                self._add(
                    families,
                    sample.name,
                    SOURCE_LABELS + extra,
                    (s.provider, s.name, *(v for _, v in sample.labels)),
                    sample.value,
                )
        # one family per name even if extra label sets differ between samples
        merged: dict[str, Metric] = {}
        for (name, _), fam in sorted(families.items()):
            if name in merged:
                merged[name].samples.extend(fam.samples)
            else:
                merged[name] = fam
        yield from merged.values()

    @staticmethod
    def _add(
        families: dict[tuple[str, tuple[str, ...]], Metric],
        name: str,
        labels: tuple[str, ...],
        values: tuple[str, ...],
        value: float,
    ) -> None:
        mdef = CATALOG[name]
        fam = families.get((name, labels))
        if fam is None:
            fam = families[(name, labels)] = _family(name, mdef, labels)
        fam.add_metric(list(values), value)  # type: ignore[attr-defined]

    def _health_metrics(self) -> Iterator[Metric]:
        up, last, dur = (_gauge(f, STREAM_LABELS) for f in HEALTH_FAMILIES)
        for s in self._store.sources.values():
            for t in list(s.targets.values()):
                if t.gone or not t.attempted:
                    continue
                lv = [s.provider, s.name, t.target.stream]
                up.add_metric(lv, 1.0 if t.up else 0.0)
                if t.last_success is not None:
                    last.add_metric(lv, t.last_success)
                if t.poll_duration is not None:
                    dur.add_metric(lv, t.poll_duration)
        yield from (up, last, dur)

    def _exporter_metrics(self) -> Iterator[Metric]:
        src = SOURCE_LABELS
        req = _counter(API_REQUESTS, (*src, "endpoint", "code"))
        hist = HistogramMetricFamily(
            API_REQUEST_DURATION.base, API_REQUEST_DURATION.help, labels=(*src, "endpoint")
        )
        thr, waits, skipped = (_counter(f, src) for f in (THROTTLED, RATE_LIMIT_WAITS, SKIPPED_POINTS))
        budget, interval, targets, cycle, in_flight = (
            _gauge(f, src) for f in (BUDGET, POLL_INTERVAL, TARGETS, CYCLE_DURATION, IN_FLIGHT)
        )
        for s in self._store.sources.values():
            st = s.stats
            lv = [s.provider, s.name]
            for (endpoint, code), n in sorted(st.requests.items()):
                req.add_metric([*lv, endpoint, code], float(n))
            for endpoint, h in sorted(st.durations.items()):
                hist.add_metric([*lv, endpoint], h.cumulative(), h.total)
            thr.add_metric(lv, float(st.throttled))
            waits.add_metric(lv, float(st.limiter_waits))
            skipped.add_metric(lv, float(st.skipped_points))
            budget.add_metric(lv, st.budget_rps)
            interval.add_metric(lv, st.interval)
            targets.add_metric(lv, float(st.targets))
            cycle.add_metric(lv, st.cycle_seconds)
            in_flight.add_metric(lv, float(st.in_flight))
        yield from (req, hist, thr, waits, skipped, budget, interval, targets, cycle, in_flight)
        lists = (*src, "origin")
        ls_up, ls_last, ls_n = (
            _gauge(f, lists) for f in (TARGET_SOURCE_UP, TARGET_SOURCE_LAST_SUCCESS, TARGET_SOURCE_TARGETS)
        )
        for s in self._store.sources.values():
            for origin, tl in sorted(s.stats.target_lists.items()):
                lv = [s.provider, s.name, origin]
                ls_up.add_metric(lv, 1.0 if tl.up else 0.0)
                if tl.last_success is not None:
                    ls_last.add_metric(lv, tl.last_success)
                ls_n.add_metric(lv, float(tl.targets))
        yield from (ls_up, ls_last, ls_n)

        info = _gauge(BUILD_INFO, ("version", "python_version"))
        info.add_metric([__version__, platform.python_version()], 1.0)
        ok, ts = _gauge(RELOAD_OK, ()), _gauge(RELOAD_TIMESTAMP, ())
        ok.add_metric([], 1.0 if self._reload.successful else 0.0)
        ts.add_metric([], self._reload.last_success)
        yield from (info, ok, ts)
        cluster = self._store.cluster
        if cluster is not None:
            members, redis_up = _gauge(CLUSTER_MEMBERS, ()), _gauge(CLUSTER_REDIS_UP, ())
            owned, leader = _gauge(CLUSTER_OWNED, src), _gauge(CLUSTER_LEADER, src)
            replica = _gauge(CLUSTER_REPLICA, ("replica",))
            members.add_metric([], float(len(cluster.members)))
            redis_up.add_metric([], 1.0 if cluster.redis_up else 0.0)
            replica.add_metric([cluster.replica], 1.0)
            for s in self._store.sources.values():
                owned.add_metric([s.provider, s.name], float(cluster.owned.get(s.name, 0)))
                leader.add_metric([s.provider, s.name], 1.0 if s.name in cluster.leading else 0.0)
            yield from (members, owned, leader, redis_up, replica)


@dataclass
class ReloadStatus:
    successful: bool = True
    last_success: float = 0.0


@dataclass(frozen=True)
class Body:
    """A /metrics body: `parts` to send in this order, `size` bytes in all (gzipped or not)."""

    parts: tuple[bytes, ...]
    size: int
    gzip: bool

    def join(self) -> bytes:
        return b"".join(self.parts)


@dataclass(frozen=True)
class _Head:
    """The row families' parts in one format and encoding, as of a version of the rows."""

    version: int
    parts: tuple[bytes, ...]
    size: int  # uncompressed
    crc: int  # of the uncompressed text (gzip only)


@functools.cache
def _header_segment(fdef: FamilyDef, openmetrics: bool, level: int) -> Segment:
    return deflate(fdef.header(openmetrics), level)


def _compress_all(jobs: list[GzipJob], level: int) -> list[GzipResult]:
    return [compress(job, level) for job in jobs]


#: less to compress than this is compressed on the event loop (about 0.5 ms), more in a thread
THREAD_MIN_BYTES = 128 * 1024
#: `keep_warm` compresses changes ahead of the scrapes while gzip scrapes came this recently
WARM_FOR_SECONDS = 600.0
#: the process metrics (CPU, memory, file descriptors) are read at most this often
PROCESS_METRICS_SECONDS = 1.0
#: how often `keep_warm` looks for changes
WARM_PERIOD_SECONDS = 0.05


class MetricsCache:
    """The /metrics body, rebuilt only where polls changed something since the last scrape.

    `scrape` does everything on the calling thread; the web handler uses `scrape_async`,
    which first compresses big changes in a worker thread, and runs `keep_warm`, which
    compresses changes soon after they land, so that gzip scrapes seldom compress at all.
    """

    def __init__(
        self, store: Store, reload_status: ReloadStatus, clock: Clock, *, process_metrics: bool = True
    ) -> None:
        self._store = store
        self._reload = reload_status
        self._clock = clock
        #: the process metrics (`process_*`, `python_*`), unless `process_metrics` is False
        self._process = CollectorRegistry(auto_describe=False)
        if process_metrics:
            ProcessCollector(registry=self._process)
            PlatformCollector(registry=self._process)
            GCCollector(registry=self._process)
        self._heads: dict[tuple[bool, bool], _Head] = {}
        self._process_cache: dict[bool, tuple[float, bytes]] = {}
        self._compressing: asyncio.Future[list[GzipResult]] | None = None
        self._gzip_scrapes = 0
        self._gzip_seen: tuple[int, float] | None = None  # (gzip scrapes, loop time) for keep_warm
        #: scrapes that had to rebuild anything (blocks, chunks, gzip segments); a scrape
        #: while nothing changed rebuilds nothing
        self.renders = 0
        #: passes of `keep_warm` that compressed something ahead of the scrapes
        self.warmed = 0

    def scrape(self, openmetrics: bool, gzip: bool = False) -> Body:
        """The body now, in the text format 0.0.4 or OpenMetrics, gzipped or not."""
        return self._scrape(openmetrics, gzip, prepared=False)

    async def scrape_async(
        self, openmetrics: bool, gzip: bool = False, executor: Executor | None = None
    ) -> Body:
        """`scrape`, but what polls changed is compressed in a worker thread (`executor`, the
        loop's default one if None) when it is much, rather than on the event loop."""
        prepared = False
        if gzip:
            self._store.expire(self._clock.monotonic())
            prepared = await self._compress_changes(executor, THREAD_MIN_BYTES)
        return self._scrape(openmetrics, gzip, prepared=prepared)

    def render(self, openmetrics: bool) -> bytes:
        """The uncompressed body as one bytes object."""
        return self.scrape(openmetrics).join()

    def _scrape(self, openmetrics: bool, gzip: bool, *, prepared: bool) -> Body:
        store = self._store
        builds = store.rows.builds
        store.expire(self._clock.monotonic())
        store.rows.refresh()
        head = self._head(openmetrics, gzip)
        if prepared or store.rows.builds != builds:
            self.renders += 1
        tail = self._tail(openmetrics)
        if not gzip:
            return Body((*head.parts, tail), head.size + len(tail), gzip=False)
        self._gzip_scrapes += 1
        seg = deflate(tail, store.rows.gzip_level)
        crc = crc32_combine(head.crc, seg.crc, seg.size)
        end = seg.data + trailer(crc, head.size + seg.size)
        return Body((*head.parts, end), sum(len(p) for p in head.parts) + len(end), gzip=True)

    def _head(self, openmetrics: bool, gzip: bool) -> _Head:
        """The row families' parts, as of the last refresh of the rows.

        Plain, the parts are each family's header and chunks, sent as they are.  Gzipped,
        the 10-byte gzip header (the first write goes out joined with the HTTP headers) and
        every family's segments joined into one bytes object: one write rather than many
        small ones, each a system call."""
        rows = self._store.rows
        head = self._heads.get((openmetrics, gzip))
        if head is not None and head.version == rows.version:
            return head
        parts: list[bytes] = []
        size = crc = 0
        for f, fdef in enumerate(ROW_FAMILIES):
            if not rows.present(f):
                continue
            if gzip:
                hseg = _header_segment(fdef, openmetrics, rows.gzip_level)
                bseg, _ = rows.gzip_body(f)
                parts += (hseg.data, bseg.data)
                crc = crc32_combine(crc32_combine(crc, hseg.crc, hseg.size), bseg.crc, bseg.size)
                size += hseg.size + bseg.size
            else:
                header = fdef.header(openmetrics)
                chunks = rows.parts(f)
                parts.append(header)
                parts += chunks
                size += len(header) + sum(len(chunk) for chunk in chunks)
        joined = (GZIP_HEADER, b"".join(parts)) if gzip else tuple(parts)
        head = self._heads[(openmetrics, gzip)] = _Head(rows.version, joined, size, crc)
        return head

    def _tail(self, openmetrics: bool) -> bytes:
        """What is rendered on every scrape: the self-metrics, the process metrics, `# EOF`."""
        own = self_metrics(
            ((s.provider, s.name, s.stats) for s in self._store.sources.values()),
            reload_successful=self._reload.successful,
            reload_last_success=self._reload.last_success,
            openmetrics=openmetrics,
            cluster=self._store.cluster,
        )
        return (
            (own + self._process_lines(openmetrics) + b"# EOF\n")
            if openmetrics
            else (own + self._process_lines(openmetrics))
        )

    def _process_lines(self, openmetrics: bool) -> bytes:
        """The process metrics, read afresh at most once a second: scrapes closer together
        than that (several Prometheus servers, a dashboard refreshing) share them."""
        now = self._clock.monotonic()
        cached = self._process_cache.get(openmetrics)
        if cached is None or now - cached[0] >= PROCESS_METRICS_SECONDS:
            cached = self._process_cache[openmetrics] = (
                now,
                render_metrics(self._process.collect(), openmetrics),
            )
        return cached[1]

    # -- compression off the event loop ---------------------------------------------------
    async def _compress_changes(self, executor: Executor | None, thread_min: int) -> bool:
        """Refresh the rows and compress every changed block: in `executor` when there is at
        least `thread_min` bytes to compress, else here.  One compression runs at a time; a
        caller that finds one running waits for it and looks again.  Whether it compressed."""
        rows = self._store.rows
        did = False
        for _ in range(3):  # polls may land meanwhile: a few rounds, the scrape does the rest
            rows.refresh()
            jobs = rows.gzip_jobs()
            if not jobs:
                break
            if self._compressing is not None:
                await asyncio.shield(self._compressing)
                continue
            if sum(job.pending for job in jobs) < thread_min:
                results = _compress_all(jobs, rows.gzip_level)
            else:
                loop = asyncio.get_running_loop()
                self._compressing = fut = loop.run_in_executor(executor, _compress_all, jobs, rows.gzip_level)
                try:
                    results = await asyncio.shield(fut)
                finally:
                    self._compressing = None
            for result in results:
                rows.gzip_install(result)
            did = True
        return did

    async def keep_warm(self, executor: Executor | None = None) -> None:
        """Run while serving: compress what polls changed soon after they land (in
        `executor` when it is much), so that a gzip scrape finds it done.  Only while gzip
        scrapes come (the last within WARM_FOR_SECONDS).

        It sleeps on the event loop's own clock, not the exporter's `Clock`: it only
        prepares what a scrape would otherwise compute itself."""
        while True:
            await asyncio.sleep(WARM_PERIOD_SECONDS)
            await self.warm(executor)

    async def warm(self, executor: Executor | None = None) -> bool:
        """One pass of `keep_warm`: whether it compressed anything."""
        loop = asyncio.get_running_loop()
        if self._gzip_seen is None or self._gzip_seen[0] != self._gzip_scrapes:
            self._gzip_seen = (self._gzip_scrapes, loop.time())
        if self._gzip_scrapes == 0 or loop.time() - self._gzip_seen[1] > WARM_FOR_SECONDS:
            return False
        if not await self._compress_changes(executor, THREAD_MIN_BYTES):
            return False
        for openmetrics, gzip in list(self._heads):  # and join what the scrapers will ask for
            if gzip:
                self._head(openmetrics, gzip)
        self.warmed += 1
        return True
