"""The incremental exposition (exporter.store.{lines,rows,deflate,expiry,exposition}) against
prometheus_client's own rendering of the same store, and the gzip member it assembles.

The store renders each target's lines when a poll lands and a scrape only rebuilds the
blocks that changed; these tests check that whatever sequence of updates, removals, gone
targets and expiries came before, a scrape equals a rendering from scratch
(`StoreCollector` + prometheus_client's `generate_latest`): the same families with the
same HELP/TYPE lines and the same sample lines, in both formats, plain and gzipped.
Expiry, now a heap of deadlines, is checked against the old scan of every target.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import math
import random
import re
import shutil
import struct
import zlib
from asyncio.subprocess import PIPE
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from exporter.engine.stats import SourceStats
from exporter.model.catalog import CATALOG
from exporter.model.clock import FakeClock
from exporter.model.errors import GoneError, PollError, UpstreamError
from exporter.model.samples import Sample, Target
from exporter.store import deflate, exposition
from exporter.store.deflate import crc32_combine_libz, crc32_combine_py
from exporter.store.exposition import MetricsCache, ReloadStatus, StoreCollector
from exporter.store.lines import ROW_FAMILIES, SELF_FAMILIES, go_float, render_metrics
from exporter.store.store import Store
from exporter.web.app import create_app
from tests.conftest import promtool

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
COMBINES = [pytest.param(crc32_combine_py, id="python")]
if crc32_combine_libz is not None:
    COMBINES.append(pytest.param(crc32_combine_libz, id="libz"))


# -- crc32_combine and the gzip member ----------------------------------------------------------


@pytest.mark.parametrize("combine", COMBINES)
@pytest.mark.parametrize(
    ("len1", "len2"), [(0, 0), (0, 7), (7, 0), (1, 1), (1000, 1), (3, 1 << 20), (1 << 20, (5 << 20) + 3)]
)
def test_crc32_combine_is_the_crc_of_the_concatenation(combine: Any, len1: int, len2: int) -> None:
    rng = random.Random(len1 * 31 + len2)
    a, b = rng.randbytes(len1), rng.randbytes(len2)
    assert combine(zlib.crc32(a), zlib.crc32(b), len2) == zlib.crc32(a + b)


@pytest.mark.parametrize("combine", COMBINES)
def test_crc32_combine_over_16_mib_of_zeros(combine: Any) -> None:
    a, zeros = b"livestream", bytes(16 << 20)
    assert combine(zlib.crc32(a), zlib.crc32(zeros), len(zeros)) == zlib.crc32(a + zeros)


@pytest.mark.skipif(crc32_combine_libz is None, reason="libz cannot be loaded here")
@pytest.mark.parametrize("len2", [(1 << 31) - 1, 1 << 31, 1 << 32, (1 << 32) + 1, (1 << 40) + 12345])
def test_crc32_combine_python_agrees_with_libz_on_huge_lengths(len2: int) -> None:
    assert crc32_combine_libz is not None
    for crc1, crc2 in [(0, 0), (0xDEADBEEF, 0x12345678), (0xFFFFFFFF, 1)]:
        assert crc32_combine_py(crc1, crc2, len2) == crc32_combine_libz(crc1, crc2, len2)


def _member(pieces: Sequence[bytes], level: int = 1) -> bytes:
    segs = [deflate.deflate(p, level) for p in pieces]
    whole = deflate.concat(segs)
    return deflate.GZIP_HEADER + whole.data + deflate.trailer(whole.crc, whole.size)


@settings(max_examples=40, deadline=None)
@given(pieces=st.lists(st.binary(max_size=3000), max_size=8), level=st.sampled_from([1, 6, 9]))
def test_segments_make_one_gzip_member(pieces: list[bytes], level: int) -> None:
    """Independently compressed pieces, concatenated, are one valid gzip member."""
    body = _member(pieces, level)
    assert gzip.decompress(body) == b"".join(pieces)
    d = zlib.decompressobj(16 + 15)
    assert d.decompress(body) == b"".join(pieces)
    assert d.eof and d.unused_data == b"", "more than one gzip member"
    assert struct.unpack("<I", body[-4:])[0] == len(b"".join(pieces))


# -- values and lines -----------------------------------------------------------------------------


@settings(max_examples=300)
@given(value=st.floats() | st.integers(-(10**20), 10**20).map(float))
def test_go_float_is_prometheus_clients_float_to_go_string(value: float) -> None:
    assert go_float(value) == floatToGoString(value)


@pytest.mark.parametrize(
    "value", [0.0, -0.0, 1.0, 1e6, 1234567.0, 12345678.9, 1e16, 1e-7, 1.7e9, math.inf, -math.inf]
)
def test_go_float_examples(value: float) -> None:
    assert go_float(value) == floatToGoString(value)


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def _odd_families() -> list[Metric]:
    weird = 'a"b\\c\nd é 日本'
    g = GaugeMetricFamily("odd_gauge", 'Help with \\ and \n and "quotes".', labels=["x", "a"])
    g.add_metric([weird, ""], 1.5)
    g.add_metric(["plain", "z"], -2.0)
    c = CounterMetricFamily("odd_events", "Events.", labels=["k"], created=1.7e9)
    c.add_metric(["v"], 3.0, created=1.7e9)
    ex = CounterMetricFamily("odd_exemplar", "With an exemplar.", labels=["k"])
    ex.add_metric(["v"], 4.0)
    s = ex.samples[0]
    ex.samples[0] = s._replace(exemplar=Exemplar({"trace_id": "abc"}, 1.0, 1.7e9))
    ts = GaugeMetricFamily("odd_timestamped", "With a timestamp.")
    ts.add_metric([], 5.0, timestamp=1.7e9)
    info = InfoMetricFamily("odd_build", "Info.", value={"version": "1"})
    unit = GaugeMetricFamily("odd_size_bytes", "With a unit.", unit="bytes")
    unit.add_metric([], 6.0)
    return [g, c, ex, ts, info, unit]


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_render_metrics_is_prometheus_clients_rendering(openmetrics: bool) -> None:
    """Any collector's families (the process metrics here) render byte for byte as
    prometheus_client renders them, including those it has to fall back for."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    fixed = list(registry.collect()) + _odd_families()
    want = (om_latest if openmetrics else text_latest)(_Fixed(fixed))
    got = render_metrics(fixed, openmetrics) + (b"# EOF\n" if openmetrics else b"")
    assert got == want


# -- a reference: the store as it was, scanning every target to expire values --------------------


@dataclass(frozen=True)
class RefTarget:
    target: Target[Any]
    samples: tuple[Sample, ...] = ()
    up: bool = False
    attempted: bool = False
    last_success: float | None = None
    last_success_mono: float | None = None
    poll_duration: float | None = None
    gone: bool = False


@dataclass
class RefSource:
    provider: str
    stale_after: float = 300.0
    targets: dict[str, RefTarget] = field(default_factory=dict)
    app_samples: tuple[Sample, ...] = ()
    app_last_success_mono: float | None = None


class ReferenceStore:
    """The store before the incremental exposition, for its state only."""

    def __init__(self) -> None:
        self.sources: dict[str, RefSource] = {}

    def keep_sources(self, sources: Sequence[tuple[str, str]]) -> None:
        new: dict[str, RefSource] = {}
        for name, provider in sources:
            prev = self.sources.get(name)
            new[name] = prev if prev is not None and prev.provider == provider else RefSource(provider)
        self.sources = new

    def set_stale_after(self, source: str, seconds: float) -> None:
        if source in self.sources:
            self.sources[source].stale_after = seconds

    def set_targets(self, source: str, targets: Sequence[Target[Any]]) -> None:
        s = self.sources[source]
        s.targets = {
            t.key: replace(s.targets[t.key], target=t) if t.key in s.targets else RefTarget(target=t)
            for t in targets
        }

    def record_success(
        self, source: str, key: str, samples: Sequence[Sample], now: float, mono: float
    ) -> None:
        s = self.sources[source]
        if key in s.targets:
            s.targets[key] = replace(
                s.targets[key],
                samples=tuple(samples),
                up=True,
                attempted=True,
                last_success=now,
                last_success_mono=mono,
                poll_duration=DURATION,
                gone=False,
            )

    def record_failure(self, source: str, key: str, error: PollError) -> None:
        s = self.sources[source]
        if key in s.targets:
            prev = s.targets[key]
            gone = isinstance(error, GoneError)
            s.targets[key] = replace(
                prev,
                samples=() if gone else prev.samples,
                up=False,
                attempted=True,
                poll_duration=DURATION,
                gone=gone,
            )

    def record_app(self, source: str, samples: Sequence[Sample], mono: float) -> None:
        s = self.sources[source]
        s.app_samples, s.app_last_success_mono = tuple(samples), mono

    def expire(self, mono: float) -> None:
        for s in self.sources.values():
            for key, t in list(s.targets.items()):
                if (
                    t.samples
                    and t.last_success_mono is not None
                    and mono - t.last_success_mono > s.stale_after
                ):
                    s.targets[key] = replace(t, samples=())
            if (
                s.app_samples
                and s.app_last_success_mono is not None
                and mono - s.app_last_success_mono > s.stale_after
            ):
                s.app_samples = ()


DURATION = 0.25
#: targets the random runs start with values for
POLLED = (("s1", "k0"), ("s1", "k1"), ("s1", "k5"), ("s2", "k3"), ("s2", "k8"))


def assert_same_state(store: Store, ref: ReferenceStore) -> None:
    assert list(store.sources) == list(ref.sources)
    for name, r in ref.sources.items():
        s = store.sources[name]
        assert (s.provider, s.stale_after, s.app_samples) == (r.provider, r.stale_after, r.app_samples), name
        assert list(s.targets) == list(r.targets), name
        for key, rt in r.targets.items():
            t = s.targets[key]
            got = (t.target, t.samples, t.up, t.attempted, t.last_success, t.last_success_mono, t.gone)
            want = (
                rt.target,
                rt.samples,
                rt.up,
                rt.attempted,
                rt.last_success,
                rt.last_success_mono,
                rt.gone,
            )
            assert got == want, (name, key)


# -- random stores ----------------------------------------------------------------------------------

SOURCES = ("s1", "s2", "s3")
KEYS = tuple(f"k{i}" for i in range(9))
#: label values that need escaping or are not ASCII, and anything else hypothesis likes
LABEL_TEXT = st.sampled_from(['"', "\\", "\n", 'a"b\\c\nd', "é", "日本語", "", "\\n", "x y"]) | st.text(
    max_size=6
)
STREAM_METRICS = sorted(n for n, m in CATALOG.items() if not m.app_level)
APP_METRICS = sorted(n for n, m in CATALOG.items() if m.app_level)
VALUES = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(0, 10**7).map(float)
    | st.sampled_from([0.0, 1.0, 1.7e9, 1234567.0])
)


@dataclass(frozen=True)
class Spec:
    k: str
    label: str

    def key(self) -> str:
        return self.k

    def stream_label(self) -> str:
        return self.label


@st.composite
def a_sample(draw: st.DrawFn, names: Sequence[str]) -> Sample:
    name = draw(st.sampled_from(names))
    labels = {label: draw(LABEL_TEXT) for label in CATALOG[name].extra_labels}
    value = draw(VALUES)
    if CATALOG[name].type == "counter":  # OpenMetrics parsers refuse negative counters
        value = abs(value)
    return Sample.of(name, value, **labels)


def samples_of(names: Sequence[str]) -> st.SearchStrategy[list[Sample]]:
    return st.lists(a_sample(names), max_size=5, unique_by=lambda s: (s.name, s.labels))


@st.composite
def stats_of(draw: st.DrawFn, provider: str) -> SourceStats:
    st_ = SourceStats(provider=provider)
    for _ in range(draw(st.integers(0, 3))):
        endpoint = draw(st.sampled_from(["stream", "list", 'we"ird\\']))
        st_.request_done(endpoint, draw(st.sampled_from(["200", "429", "timeout"])), draw(st.floats(0, 20)))
    st_.throttled = draw(st.integers(0, 5))
    st_.budget_rps = draw(st.floats(0, 100))
    st_.interval = draw(st.floats(0.1, 1000))
    st_.targets = draw(st.integers(0, 9))
    for attr in ("in_flight", "cycle_seconds"):  # fields the engine adds
        if hasattr(st_, attr):
            setattr(st_, attr, draw(st.integers(0, 4)))
    return st_


OPS = st.one_of(
    st.tuples(
        st.just("keep"),
        st.lists(
            st.tuples(st.sampled_from(SOURCES), st.sampled_from(["p1", "p2"])),
            max_size=3,
            unique_by=lambda x: x[0],
        ),
        st.data(),
    ),
    st.tuples(
        st.just("targets"),
        st.sampled_from(SOURCES),
        st.lists(st.tuples(st.sampled_from(KEYS), LABEL_TEXT), max_size=7, unique_by=lambda x: x[0]),
    ),
    st.tuples(
        st.just("success"), st.sampled_from(SOURCES), st.sampled_from(KEYS), samples_of(STREAM_METRICS)
    ),
    st.tuples(
        st.just("success"), st.sampled_from(SOURCES), st.sampled_from(KEYS), samples_of(STREAM_METRICS)
    ),
    st.tuples(st.just("failure"), st.sampled_from(SOURCES), st.sampled_from(KEYS), st.booleans()),
    st.tuples(st.just("app"), st.sampled_from(SOURCES), samples_of(APP_METRICS)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 5.0, 10.0, 10.000001, 30.0])),
    st.tuples(st.just("stale"), st.sampled_from(SOURCES), st.sampled_from([5.0, 10.0, 20.0, 300.0])),
    st.tuples(st.just("expire")),
    st.tuples(st.just("scrape"), st.booleans(), st.booleans()),
)


def apply(op: tuple[Any, ...], store: Store, ref: ReferenceStore, clock: FakeClock) -> None:
    kind = op[0]
    mono, now = clock.monotonic(), clock.time()
    if kind == "keep":
        _, wanted, data = op
        store.keep_sources([(name, provider, data.draw(stats_of(provider))) for name, provider in wanted])
        ref.keep_sources(wanted)
    elif kind == "stale":
        store.set_stale_after(op[1], op[2])
        ref.set_stale_after(op[1], op[2])
    elif kind == "advance":
        clock.advance(op[1])
    elif kind == "expire":
        store.expire(mono)
        ref.expire(mono)
    elif op[1] not in store.sources:
        return
    elif kind == "targets":
        _, source, pairs = op
        # a stream label is unique within a source, as the runner makes sure
        targets = [Target.of(Spec(key, f"{source}/{key}/{label}")) for key, label in pairs]
        store.set_targets(source, targets)
        ref.set_targets(source, targets)
    elif kind == "success":
        _, source, key, samples = op
        store.record_success(source, key, samples, now=now, mono=mono, duration=DURATION)
        ref.record_success(source, key, samples, now, mono)
    elif kind == "failure":
        _, source, key, gone = op
        error = GoneError("gone") if gone else UpstreamError("failed")
        store.record_failure(source, key, error, duration=DURATION)
        ref.record_failure(source, key, error)
    elif kind == "app":
        _, source, samples = op
        store.record_app(source, samples, mono=mono)
        ref.record_app(source, samples, mono)


# -- comparing expositions --------------------------------------------------------------------------


def split(text: str) -> list[tuple[str, list[str], list[str]]]:
    """The families in order: (name, header lines, sample lines); `# EOF` dropped."""
    out: list[tuple[str, list[str], list[str]]] = []
    for line in text.split("\n"):
        if line in ("", "# EOF"):
            continue
        if line.startswith("# HELP "):
            out.append((line.split(" ")[2], [line], []))
        elif line.startswith("# "):
            out[-1][1].append(line)
        else:
            out[-1][2].append(line)
    return out


def reference_body(store: Store, reload: ReloadStatus, openmetrics: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, reload_status=reload))
    return (om_latest if openmetrics else text_latest)(registry)


def family_names(openmetrics: bool) -> list[str]:
    defs = (*ROW_FAMILIES, *SELF_FAMILIES)
    return [f.base if openmetrics else f.name for f in defs]


def check(cache: MetricsCache, store: Store, reload: ReloadStatus, openmetrics: bool, gz: bool) -> str:
    """Scrape and compare with prometheus_client's rendering of the same store; the body."""
    body = cache.scrape(openmetrics, gzip=gz)
    raw = body.join()
    assert body.size == len(raw)
    if gz:
        raw = gzip.decompress(raw)
        d = zlib.decompressobj(16 + 15)
        assert d.decompress(body.join()) == raw and d.eof and d.unused_data == b""
    text = raw.decode()
    mine = split(text)
    reference = split(reference_body(store, reload, openmetrics).decode())
    want = {name: (header, sorted(lines)) for name, header, lines in reference if lines}
    got = {name: (header, sorted(lines)) for name, header, lines in mine}
    assert got == want
    # in the fixed order, and no family without samples
    order = family_names(openmetrics)
    assert [name for name, _, _ in mine] == [n for n in order if n in got]
    assert all(lines for _, _, lines in mine)
    if openmetrics:
        assert text.endswith("# EOF\n") and text.count("# EOF") == 1
        parsed = {f.name for f in om_parse(text)}
    else:
        assert "# EOF" not in text
        parsed = {f.name for f in text_parse(text)}
    assert parsed == {name.removesuffix("_total") for name in got}
    return text


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(
    ops=st.lists(OPS, max_size=45),
    block_slots=st.integers(1, 3),
    chunk_blocks=st.integers(1, 3),
    data=st.data(),
)
def test_incremental_exposition_equals_a_rendering_from_scratch(
    ops: list[tuple[Any, ...]], block_slots: int, chunk_blocks: int, data: st.DataObject
) -> None:
    """Random updates, removals, gone targets, expiries and scrapes: every scrape equals
    prometheus_client's rendering of the store at that moment, and the store's state equals
    the reference's (expiry by deadlines = expiry by scanning)."""
    clock = FakeClock(autojump=False)
    store = Store(block_slots=block_slots, chunk_blocks=chunk_blocks)
    ref = ReferenceStore()
    reload = ReloadStatus(successful=True, last_success=1.7e9)
    cache = MetricsCache(store, reload, clock, process_metrics=False)
    setup: list[tuple[Any, ...]] = [
        ("keep", [("s1", "p1"), ("s2", "p2")], data),
        ("targets", "s1", [(k, f"x{i}") for i, k in enumerate(KEYS[:6])]),
        ("targets", "s2", [(k, 'y"\\\n') for k in KEYS[3:]]),
        *(("success", source, key, [Sample.of("livestream_live", 1.0)]) for source, key in POLLED),
    ]
    for op in [*setup, *ops]:
        if op[0] == "scrape":
            ref.expire(clock.monotonic())
            check(cache, store, reload, op[1], op[2])
        else:
            apply(op, store, ref, clock)
        assert_same_state(store, ref)
    ref.expire(clock.monotonic())
    for openmetrics in (False, True):
        for gz in (False, True):
            check(cache, store, reload, openmetrics, gz)
    assert_same_state(store, ref)


# -- scrapes that compress in a thread, and the warmer ------------------------------------------------


class ManualExecutor(Executor):
    """Runs what is submitted only when told to, so the store can change meanwhile."""

    def __init__(self) -> None:
        self.pending: list[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.pending.append((fut, fn, args))
        return fut

    def run_all(self) -> None:
        pending, self.pending = self.pending, []
        for fut, fn, args in pending:
            fut.set_result(fn(*args))


def many_targets(store: Store, n: int, source: str = "big", *, seed: int = 1) -> list[Target[Any]]:
    """`n` targets of a Fermion-like source, polled once, some with labels that need escaping."""
    rng = random.Random(seed)
    if source not in store.sources:
        kept = [(s.name, s.provider, s.stats) for s in store.sources.values()]
        store.keep_sources([*kept, (source, "fermion", SourceStats("fermion"))])
    odd = '/é"\\'
    targets = [Target.of(Spec(f"t{i}", f"{source}/t{i}" + (odd if i % 7 == 0 else ""))) for i in range(n)]
    store.set_targets(source, targets)
    for t in targets:
        poll(store, source, t.key, rng)
    return targets


def poll(store: Store, source: str, key: str, rng: random.Random, mono: float = 1000.0) -> None:
    samples = [
        Sample.of("livestream_concurrent_viewers", rng.randint(0, 5000)),
        Sample.of("livestream_messages_total", rng.randint(0, 10**6)),
        Sample.of("livestream_live", 1.0),
        Sample.of("livestream_status", 1.0, status="live"),
    ]
    store.record_success(source, key, samples, now=1.7e9 + rng.random(), mono=mono, duration=rng.random())


def assert_matches_reference(body: bytes, store: Store, reload: ReloadStatus, openmetrics: bool) -> None:
    got = {name: (header, sorted(lines)) for name, header, lines in split(body.decode())}
    reference = split(reference_body(store, reload, openmetrics).decode())
    assert got == {name: (header, sorted(lines)) for name, header, lines in reference if lines}


async def test_changes_while_a_thread_compresses_are_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape that compresses in a worker thread while polls land keeps only what still
    holds of the thread's work, and serves the store as it is when it renders."""
    monkeypatch.setattr(exposition, "THREAD_MIN_BYTES", 0)
    clock = FakeClock(autojump=False)
    store = Store(block_slots=4, chunk_blocks=2)
    reload = ReloadStatus()
    cache = MetricsCache(store, reload, clock, process_metrics=False)
    targets = many_targets(store, 40)
    cache.scrape(False, gzip=True)  # everything compressed once
    rng = random.Random(7)
    for t in targets[:6]:  # blocks 0 and 1 change
        poll(store, "big", t.key, rng)
    pool = ManualExecutor()
    task = asyncio.create_task(cache.scrape_async(False, gzip=True, executor=pool))
    changed = False
    while not task.done():
        await asyncio.sleep(0)
        if pool.pending:
            if not changed:  # meanwhile, block 1 changes again and block 5 for the first time
                for t in (targets[5], targets[21]):
                    poll(store, "big", t.key, rng)
                cache.scrape(False)  # and a plain scrape rebuilds their blocks
                changed = True
            pool.run_all()
    assert changed
    body = gzip.decompress(task.result().join())
    assert_matches_reference(body, store, reload, openmetrics=False)
    assert body == cache.scrape(False).join()


async def test_warm_compresses_ahead_of_the_gzip_scrapes() -> None:
    clock = FakeClock(autojump=False)
    store = Store(block_slots=4)
    reload = ReloadStatus()
    cache = MetricsCache(store, reload, clock, process_metrics=False)
    targets = many_targets(store, 20)
    assert not await cache.warm(), "no gzip scrape yet: nothing to warm for"
    cache.scrape(True, gzip=True)
    poll(store, "big", targets[3].key, random.Random(3))
    assert await cache.warm()
    renders = cache.renders
    body = cache.scrape(True, gzip=True).join()
    assert cache.renders == renders, "the warmer had done it all"
    assert_matches_reference(gzip.decompress(body), store, reload, openmetrics=True)


def test_a_renamed_stream_is_rendered_again() -> None:
    """A target that keeps its key but gets another stream label changes all its lines."""
    clock = FakeClock(autojump=False)
    store = Store(block_slots=2)
    cache = MetricsCache(store, ReloadStatus(), clock, process_metrics=False)
    targets = many_targets(store, 5)
    before = cache.scrape(False, gzip=True)
    assert b'stream="big/t3"' in gzip.decompress(before.join())
    store.set_targets("big", [*targets[:3], Target.of(Spec("t3", "big/renamed")), targets[4]])
    for openmetrics in (False, True):
        for gz in (False, True):
            body = cache.scrape(openmetrics, gzip=gz).join()
            text = gzip.decompress(body) if gz else body
            assert b'stream="big/t3"' not in text and text.count(b'stream="big/renamed"') == 7
            assert_matches_reference(text, store, cache._reload, openmetrics)


def test_a_scrape_with_nothing_changed_rebuilds_nothing() -> None:
    clock = FakeClock(autojump=False)
    store = Store(block_slots=8)
    cache = MetricsCache(store, ReloadStatus(), clock, process_metrics=False)
    targets = many_targets(store, 30)
    for openmetrics in (False, True):
        for gz in (False, True):
            cache.scrape(openmetrics, gzip=gz)
    renders = cache.renders
    for openmetrics in (False, True):
        for gz in (False, True):
            cache.scrape(openmetrics, gzip=gz)
    assert cache.renders == renders
    poll(store, "big", targets[0].key, random.Random(99))
    cache.scrape(False, gzip=True)
    assert cache.renders == renders + 1
    # a poll that changes nothing marks nothing
    store.record_success(
        "big", targets[1].key, store.sources["big"].targets[targets[1].key].samples,
        now=store.sources["big"].targets[targets[1].key].last_success or 0.0,
        mono=1000.0,
        duration=store.sources["big"].targets[targets[1].key].poll_duration or 0.0,
    )  # fmt: skip
    assert not store.rows.dirty


def test_expire_looks_only_at_what_is_due() -> None:
    """Expiry costs nothing while no deadline is due, whatever the number of targets."""
    store = Store()
    many_targets(store, 500)
    checked = 0
    real_due = store._deadlines.due

    def counting(now: float) -> list[Any]:
        nonlocal checked
        rows = real_due(now)
        checked += len(rows)
        return rows

    store._deadlines.due = counting  # type: ignore[method-assign]
    store.set_stale_after("big", 60.0)
    for mono in (1000.0, 1030.0, 1059.0):
        store.expire(mono)
    assert checked == 0
    store.expire(1061.0)
    assert checked == 500
    assert all(not t.samples for t in store.sources["big"].targets.values())


def _values(store: Store, key: str) -> tuple[Sample, ...]:
    return store.sources["big"].targets[key].samples


def test_expiry_follows_later_successes_and_stale_after_changes() -> None:
    store = Store()
    (t,) = many_targets(store, 1)
    rng = random.Random(5)

    store.set_stale_after("big", 10.0)  # shorter than the 300 s the deadline was set for
    store.expire(1010.0)
    assert _values(store, t.key), "exactly stale_after old: not stale yet"
    store.expire(1010.5)
    assert not _values(store, t.key)

    poll(store, "big", t.key, rng, mono=2000.0)
    store.set_stale_after("big", 100.0)  # longer: the deadline in the heap is too early
    store.expire(2011.0)
    assert _values(store, t.key)
    store.expire(2100.5)
    assert not _values(store, t.key)

    store.set_stale_after("big", 10.0)
    poll(store, "big", t.key, rng, mono=3000.0)
    poll(store, "big", t.key, rng, mono=3008.0)  # a later success while the first deadline waits
    store.expire(3010.5)
    assert _values(store, t.key)
    store.expire(3018.5)
    assert not _values(store, t.key)

    # a target removed and listed again starts afresh, whatever its deadline was
    store.set_stale_after("big", 1000.0)
    poll(store, "big", t.key, rng, mono=4000.0)
    store.set_targets("big", [])
    store.set_stale_after("big", 10.0)
    store.set_targets("big", [t])
    poll(store, "big", t.key, rng, mono=4005.0)
    store.expire(4014.0)
    assert _values(store, t.key)
    store.expire(4015.5)
    assert not _values(store, t.key)


def test_app_values_expire_like_targets() -> None:
    store = Store()
    store.keep_sources([("src", "fermion", SourceStats("fermion"))])
    store.record_app("src", [Sample.of("livestream_app_livestreams", 3)], mono=1000.0)
    store.set_stale_after("src", 10.0)
    store.record_app("src", [Sample.of("livestream_app_livestreams", 4)], mono=1005.0)
    store.expire(1012.0)
    assert store.sources["src"].app_samples
    store.expire(1015.5)
    assert store.sources["src"].app_samples == ()


# -- a big exposition over HTTP ---------------------------------------------------------------------


def exporter_part(body: str) -> list[str]:
    return [line for line in body.split("\n") if not re.match(r"(# (HELP|TYPE) )?(process_|python_)", line)]


@pytest.fixture
async def big_server(aiohttp_client: Any) -> tuple[Any, Store]:
    store = Store()
    many_targets(store, 3000)
    store.record_app("big", [Sample.of("livestream_app_livestreams", 3000)], mono=1000.0)
    clock = FakeClock(autojump=False)
    view = SimpleNamespace(store=store, clock=clock, reload_status=ReloadStatus(), config_file="x")
    client = await aiohttp_client(create_app(view))  # type: ignore[arg-type]
    return client, store


async def test_a_big_gzipped_exposition_comes_back_whole(big_server: tuple[Any, Store]) -> None:
    """curl --compressed, aiohttp's client and zlib all get the whole body from one gzip member."""
    client, _ = big_server
    url = str(client.make_url("/metrics"))
    plain = await (await client.get("/metrics", headers={"Accept-Encoding": "identity"})).text()
    assert len(plain) > 1_500_000
    # aiohttp decompresses on its own
    r = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert exporter_part(await r.text()) == exporter_part(plain)
    # the raw body is one member
    async with (
        aiohttp.ClientSession(auto_decompress=False) as s,
        s.get(url, headers={"Accept-Encoding": "gzip"}) as r,
    ):
        raw = await r.read()
        assert int(r.headers["Content-Length"]) == len(raw)
    d = zlib.decompressobj(16 + 15)
    assert exporter_part(d.decompress(raw).decode()) == exporter_part(plain)
    assert d.eof and d.unused_data == b""
    # curl decodes only the first member of a body: it must be all of it
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    proc = await asyncio.create_subprocess_exec(curl, "-s", "--compressed", url, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert exporter_part(out.decode()) == exporter_part(plain)


async def test_a_big_exposition_parses_and_passes_promtool(big_server: tuple[Any, Store]) -> None:
    client, _ = big_server
    plain = await (await client.get("/metrics", headers={"Accept-Encoding": "identity"})).text()
    om = await (await client.get("/metrics", headers={"Accept": OPENMETRICS})).text()
    text_fams = {f.name: len(f.samples) for f in text_parse(plain)}
    om_fams = {f.name: len(f.samples) for f in om_parse(om)}
    assert text_fams["livestream_concurrent_viewers"] == om_fams["livestream_concurrent_viewers"] == 3000
    assert {k: v for k, v in text_fams.items() if not k.startswith(("process_", "python_"))} == {
        k: v for k, v in om_fams.items() if not k.startswith(("process_", "python_"))
    }
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not installed")
    proc = await asyncio.create_subprocess_exec(
        tool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(plain.encode()), 60)
    report = (out + err).decode()
    assert proc.returncode == 0 and report.strip() == "", report


async def test_head_and_openmetrics_gzip(big_server: tuple[Any, Store]) -> None:
    client, _ = big_server
    r = await client.head("/metrics", headers={"Accept-Encoding": "gzip"})
    assert r.status == 200 and await r.read() == b""
    r = await client.get("/metrics", headers={"Accept-Encoding": "gzip", "Accept": OPENMETRICS})
    text = await r.text()
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    assert sum(len(f.samples) for f in om_parse(text) if f.name == "livestream_target_up") == 3000


def test_gzip_without_libz(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where libz cannot be loaded, the pure-Python crc32_combine makes the same member."""
    clock = FakeClock(autojump=False)
    store = Store(block_slots=3)
    cache = MetricsCache(store, ReloadStatus(), clock, process_metrics=False)
    many_targets(store, 20)
    want = cache.scrape(False, gzip=True).join()
    monkeypatch.setattr(deflate, "crc32_combine", crc32_combine_py)
    monkeypatch.setattr(exposition, "crc32_combine", crc32_combine_py)
    store2 = Store(block_slots=3)
    many_targets(store2, 20)
    got = MetricsCache(store2, ReloadStatus(), clock, process_metrics=False).scrape(False, gzip=True).join()
    assert got == want
    assert gzip.decompress(got) == cache.scrape(False).join()
