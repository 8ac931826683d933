"""The simulator's core: the vendor base class and registry, and the state every vendor shares.

The core names no vendor. A vendor is one module of this package that defines a subclass of
`VendorSim` and registers it with `@register`; the package imports every one of its modules,
so the vendors are known as soon as `exporter.simulator` is imported. Vendors are always
taken in the order of their names.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeVar

from aiohttp import web

from .common import Reply, html_page
from .curves import Session, SimStream
from .limits import (
    RequestLog,
    RequestRecord,
    SlidingWindowLimiter,
    Verdict,
    Window,
    max_in_window,
    retry_after_header,
)
from .network import CUT, NO_PIECES, RESET, Latency, Network, Pieces, Sleep
from .scenarios import (
    CREATE_BEFORE_START,
    END_AFTER,
    ENDED_BEFORE,
    ENDED_DURATION,
    SCENARIO_BASE,
    SCENARIOS,
    START_AFTER,
    TITLES,
)

# Fault kinds accepted by Simulator.inject.
FAULT_KINDS: Final = (
    "5xx",  # HTTP 5xx (default 503)
    "429",  # HTTP 429 with Retry-After
    "html",  # an HTML error page (default status 502; 200 possible)
    "truncated",  # the normal answer cut in the middle, status 200
    "slow",  # the normal answer after Simulator.slow_seconds
    "timeout",  # no answer until the client gives up (at most Simulator.hang_seconds)
    "auth",  # refuse the credentials as the vendor does
    "throttle200",  # the vendor's throttling answered with HTTP 200 and its own error code
    "error200",  # a vendor failure answered with HTTP 200 and its own error code
    CUT,  # the normal answer's full Content-Length promised, the connection closed after half the body
    RESET,  # the normal answer's first half, then the connection reset (TCP RST)
)

# The types of a vendor's declarations (see VendorSim).
Limits = Mapping[str, Sequence[Window]]  # endpoint (or "*" for every endpoint) -> windows
Catalog = Mapping[str, str]  # stream key -> scenario
Settings = Mapping[str, object]  # name -> value

# Vendors with discovery list this many demo streams as explicit targets; discovery finds the rest.
EXPLICIT_WITH_DISCOVERY: Final = 2

# The exporter configuration's global section of the demo.
DEMO_GLOBAL: Final[dict[str, str]] = {"interval": "15s", "timeout": "5s", "stale_after": "5m"}

# The most streams one `Simulator.add_streams` call creates.
MAX_ADDED_STREAMS: Final = 1_000_000

# A view of a vendor's streams: keep(stream, now) says whether the stream is in it.
Keep = Callable[[SimStream, float], bool]


@dataclass
class Fault:
    kind: str
    remaining: int
    stream: str | None = None
    code: int | None = None


class VendorSim:
    """One fake vendor: its API, its error style, its quirks, credentials and demo streams.

    A subclass sets the class attributes, adds its routes in `add_routes`, and keeps the
    state of its credentials and quirks, which `reset` brings back to the demo state. One
    instance serves one Simulator (`self.sim`).
    """

    name: ClassVar[str]  # the provider name, and the key of the simulator's per-vendor state
    prefix: ClassVar[str]  # URL path prefix: the exporter's base_url is http://HOST:PORT + prefix
    limits: ClassVar[Limits] = {}  # the documented rate limits
    scale: ClassVar[float] = 1.0  # multiplies the scenarios' base viewers
    # The demo catalog: stream key -> scenario (see scenarios.py). A key equals the exporter's
    # default `stream` label of the vendor's targets.
    scenarios: ClassVar[Catalog] = {}
    # Quirks: name -> demo value. Names are unique across vendors; `set_quirk` keeps the state.
    quirks: ClassVar[Settings] = {}
    # Changes to the demo source that end its first poll cycle within about a second while
    # staying within this vendor's limits over a short run.
    quick_first_cycle: ClassVar[Settings] = {}
    # The typical network of the vendor's API, which `--demo` turns on (Simulator.use_demo_network):
    # answer time (mean, jitter) in seconds, and the answers of `list_endpoints` in pieces of
    # (bytes, gap seconds, gap jitter seconds).
    demo_latency: ClassVar[tuple[float, float]] = (0.0, 0.0)
    # `--demo` shows failure too: a vendor with `demo_troubles` (one that discovers its
    # streams, asked one stream per request) gets a stream that keeps failing with HTTP 503
    # and one that goes away after DEMO_VANISH_AFTER seconds.
    demo_troubles: ClassVar[bool] = False
    demo_pieces: ClassVar[tuple[int, float, float]] = (1400, 0.004, 0.003)
    list_endpoints: ClassVar[frozenset[str]] = frozenset()  # endpoints whose answers are lists

    # Error style: (vendor error code, message) of the plain answers below.
    over_limit_error: ClassVar[tuple[str, str]] = ("RateLimited", "Too many requests, slow down")
    auth_error: ClassVar[tuple[str, str]] = ("Unauthorized", "Unauthorized")
    throttle_error: ClassVar[tuple[str, str]] = ("Throttled", "Too many requests")
    failure_error: ClassVar[tuple[str, str]] = ("InternalError", "Something went wrong")

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Back to the demo state: each quirk at its demo value. Subclasses reset their
        credentials too."""
        for name, value in self.quirks.items():
            self.set_quirk(name, value)

    def set_quirk(self, name: str, value: object) -> None:
        """Validate and keep one of this vendor's quirks; ValueError on a bad value."""
        raise ValueError(f"{self.name} has no quirk {name!r}")

    def find(self, key: str) -> SimStream | None:
        return self.sim.find(self.name, key)

    def visible(self) -> Sequence[SimStream]:
        return self.sim.visible(self.name)

    def view(self, name: Hashable, keep: Keep) -> Sequence[SimStream]:
        return self.sim.view(self.name, name, keep)

    @classmethod
    def stream_key(cls, n: int) -> str:
        """The key of the n-th stream `Simulator.add_streams` creates (n = 1, 2, ...), in the
        vendor's own shape; different n, different keys."""
        return f"stream-{n:06d}"

    # ------------------------------------------------------------------ demo

    def stream_attrs(self, key: str, scenario: str, index: int) -> dict[str, str]:
        """Attributes of a stream (its display name; more for vendors that need them).
        `index` is the stream's position in the vendor's catalog."""
        return {"name": f"{TITLES.get(scenario, 'Stream')} ({key})"}

    def adjust_demo_stream(self, stream: SimStream, scenario: str) -> None:
        """Change a new demo stream where this vendor differs from the scenario's timing: a
        stream that exists before it goes live, one destroyed some time after it ends, ..."""

    @classmethod
    def demo_keys(cls, *, discover: bool = False) -> list[str]:
        """The catalog's keys; with discovery only the first few, which discovery completes."""
        keys = list(cls.scenarios)
        return keys[:EXPLICIT_WITH_DISCOVERY] if discover else keys

    @classmethod
    def demo_fields(cls) -> dict[str, Any]:
        """The demo source's fields beyond name, provider and base_url (credentials, targets)."""
        raise NotImplementedError

    @classmethod
    def demo_source(cls, root_url: str) -> dict[str, Any]:
        """The exporter configuration's source that polls this vendor at `root_url`."""
        base = {
            "name": f"demo-{cls.name}",
            "provider": cls.name,
            "base_url": root_url.rstrip("/") + cls.prefix,
        }
        return {**base, **cls.demo_fields()}

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ error style

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"code": code, "message": message}

    def error(self, status: int, code: str, message: str) -> Reply:
        return Reply(status=status, body=self.error_body(status, code, message), error=code)

    def over_limit(self, retry_after: float) -> Reply:
        reply = self.error(429, *self.over_limit_error)
        reply.headers["Retry-After"] = retry_after_header(retry_after)
        return reply

    def auth_refusal(self, code: int | None) -> Reply:
        return self.error(401, *self.auth_error)

    def throttle200(self, code: int | None) -> Reply:
        return self.error(200, *self.throttle_error)

    def error200(self, code: int | None) -> Reply:
        return self.error(200, *self.failure_error)

    def decorate(self, reply: Reply, verdict: Verdict | None) -> Reply:
        """Headers every answer of this vendor carries (e.g. rate-limit headers)."""
        return reply

    def fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "5xx":
            status = fault.code or 503
            return self.error(status, "InternalError", "Service temporarily unavailable")
        if fault.kind == "429":
            reply = self.over_limit(self.sim.retry_after_seconds)
            reply.status = 429
            return reply
        if fault.kind == "html":
            status = fault.code or 502
            return Reply(status=status, raw=html_page(status), content_type="text/html", error="html")
        if fault.kind == "auth":
            return self.auth_refusal(fault.code)
        if fault.kind == "throttle200":
            return self.throttle200(fault.code)
        return self.error200(fault.code)


# ---------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[VendorSim]] = {}
#: the demo's vanishing stream goes after this long; its failing one fails this often
DEMO_VANISH_AFTER = 90.0
DEMO_FAILURES = 10**9

#: requests `--demo` remembers (about 300 bytes each): the newest ones, for /_sim/requests
DEMO_LOG_RECORDS = 100_000

V = TypeVar("V", bound=type[VendorSim])
S = TypeVar("S", bound=VendorSim)


def register(cls: V) -> V:
    """Class decorator of a vendor module: makes the vendor part of every Simulator."""
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"two vendors are named {cls.name!r}")
    unknown = sorted(set(cls.scenarios.values()) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"{cls.name}: unknown scenarios {unknown}; one of {', '.join(SCENARIOS)}")
    for other in _REGISTRY.values():
        shared = sorted(set(cls.quirks) & set(other.quirks)) if other is not cls else []
        if shared:
            raise ValueError(f"{cls.name} and {other.name} both declare the quirks {shared}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a vendor (for tests that register their own)."""
    _REGISTRY.pop(name, None)


def vendor_classes() -> list[type[VendorSim]]:
    """The registered vendors, in the order of their names."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def demo_config(root_url: str) -> dict[str, Any]:
    """A configuration dict (as loaded from YAML) polling the simulator at `root_url`."""
    return {"global": dict(DEMO_GLOBAL), "sources": [cls.demo_source(root_url) for cls in vendor_classes()]}


# ---------------------------------------------------------------------- simulator


@dataclass
class _Views:
    """Cached selections of one vendor's existing streams. They hold while `version` (bumped by
    every change made through the simulator) is unchanged, and from `since` until `until`: the
    next time one of the streams is created, removed, goes live or stops, by its own timings."""

    version: int = 0
    built: int = -1
    since: float = math.inf
    until: float = -math.inf
    cached: dict[Hashable, tuple[SimStream, ...]] = field(default_factory=dict)


class Simulator:
    """All state of the fake vendor APIs.

    `clock` returns wall seconds (default time.time); `monotonic` is used for the request
    log and rate limits (default time.monotonic with the default clock, else `clock`), so a
    test that passes a fake clock moves both at once. `sleep` is every wait of the simulator
    (latency, pieces, the "slow" and "timeout" faults; default asyncio.sleep): a test on a
    fake clock passes its sleep too. `seed` seeds the generator of latencies and gaps.
    Per-vendor state is keyed by the vendor's name; `vendor(name)` is the vendor itself, with
    its credentials and quirks; `network[name]` its latency and pieces (none by default).
    """

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        *,
        monotonic: Callable[[], float] | None = None,
        sleep: Sleep | None = None,
        seed: int | None = None,
        slow_seconds: float = 3.0,
        hang_seconds: float = 120.0,
        retry_after_seconds: float = 2.0,
    ) -> None:
        self.clock: Callable[[], float] = clock or time.time
        if monotonic is None:
            monotonic = time.monotonic if clock is None else clock
        self.monotonic: Callable[[], float] = monotonic
        self.sleep: Sleep = sleep or asyncio.sleep
        self.random = random.Random(seed)
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self.retry_after_seconds = retry_after_seconds
        self.log = RequestLog()
        self.limiter = SlidingWindowLimiter()
        self.closing = False
        self.generation = 0
        self.request_counter = 0
        self.stream_visits = 0  # streams looked at by scans (views, their expiry), for cost checks
        self.t0 = 0.0
        self.streams: dict[str, dict[str, SimStream]] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.limits: dict[str, dict[str, list[Window]]] = {}
        self._views: dict[str, _Views] = {}
        self._serial: dict[str, int] = {}
        self.vendors: dict[str, VendorSim] = {cls.name: cls(self) for cls in vendor_classes()}
        self.network: dict[str, Network] = {name: Network() for name in self.vendors}
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def now(self) -> float:
        return self.clock()

    def reset(self) -> None:
        """Back to the initial demo state; time starts again now. The network (latency,
        pieces) is configuration and stays as it is."""
        self.generation += 1
        self.t0 = self.clock()
        self.log.clear()
        self.limiter.clear()
        self.faults = {name: [] for name in self.vendors}
        self.limits = {
            name: {endpoint: list(windows) for endpoint, windows in vendor.limits.items()}
            for name, vendor in self.vendors.items()
        }
        self.streams = {name: {} for name in self.vendors}
        self._views = {name: _Views() for name in self.vendors}
        self._serial = {name: 0 for name in self.vendors}
        for name, vendor in self.vendors.items():
            vendor.reset()
            for index, (key, scenario) in enumerate(vendor.scenarios.items()):
                self.streams[name][key] = self._new_stream(vendor, key, scenario, index, self.t0)

    def _new_stream(self, vendor: VendorSim, key: str, scenario: str, index: int, t0: float) -> SimStream:
        """A stream of `scenario` whose timings count from `t0`."""
        stream = SimStream(
            vendor=vendor.name,
            key=key,
            scenario=scenario,
            base=SCENARIO_BASE[scenario] * vendor.scale,
            created_at=t0,
            attrs=vendor.stream_attrs(key, scenario, index),
            integrated_until=t0,
        )
        start, end = t0, None
        if scenario == "starts":
            start = t0 + START_AFTER
        elif scenario == "ends":
            end = t0 + END_AFTER
        elif scenario == "ended":
            end = t0 - ENDED_BEFORE
            start = end - ENDED_DURATION
            # created and integrated from before its session, so its counters hold the session
            stream.created_at = stream.integrated_until = start - CREATE_BEFORE_START
        stream.sessions.append(Session(id=stream.session_id(0), start=start, end=end))
        vendor.adjust_demo_stream(stream, scenario)
        return stream

    # ------------------------------------------------------------------ vendors and streams

    def vendor(self, name: str) -> VendorSim:
        try:
            return self.vendors[name]
        except KeyError:
            raise ValueError(f"unknown vendor {name!r}; one of {', '.join(self.vendors)}") from None

    def vendor_of(self, cls: type[S]) -> S:
        """The vendor of that class, typed as such (for its own state: credentials, quirks)."""
        vendor = self.vendor(cls.name)
        if not isinstance(vendor, cls):
            raise TypeError(f"vendor {cls.name!r} is a {type(vendor).__name__}, not a {cls.__name__}")
        return vendor

    def stream(self, vendor: str, key: str) -> SimStream:
        try:
            return self.streams[self.vendor(vendor).name][key]
        except KeyError:
            raise KeyError(f"{vendor} has no stream {key!r}") from None

    def find(self, vendor: str, key: str) -> SimStream | None:
        """The stream if it exists now (created and not removed)."""
        stream = self.streams[vendor].get(key)
        if stream is None or not stream.exists(self.now()):
            return None
        return stream

    def visible(self, vendor: str) -> Sequence[SimStream]:
        """The vendor's streams that exist now, in the order of its catalog."""
        return self.view(vendor)

    def view(self, vendor: str, name: Hashable = None, keep: Keep | None = None) -> Sequence[SimStream]:
        """The vendor's existing streams that `keep` accepts, in the order of its catalog,
        cached under `name` (every existing stream when both are None).

        `keep` may look at a stream's existence, sessions and attributes, not at its viewers:
        a view is kept until a stream is created, removed, goes live or stops (by its timings
        or through the simulator; call `changed` after changing a stream by hand), so a list
        answer costs its page, not a scan of every stream.
        """
        if (keep is None) != (name is None):
            raise ValueError("a view has both a name and a keep, or neither")
        now = self.now()
        views = self._views[vendor]
        if views.built != views.version or not views.since <= now < views.until:
            views.cached.clear()
            views.built, views.since, views.until = views.version, now, self._next_change(vendor, now)
        found = views.cached.get(name)
        if found is None:
            every = views.cached.get(None)
            if every is None:
                streams = self.streams[vendor]
                self.stream_visits += len(streams)
                every = views.cached[None] = tuple(s for s in streams.values() if s.exists(now))
            if keep is None:
                return every
            self.stream_visits += len(every)
            found = views.cached[name] = tuple(s for s in every if keep(s, now))
        return found

    def _next_change(self, vendor: str, now: float) -> float:
        """The next time after `now` one of the vendor's streams is created, removed, goes live or stops."""
        streams = self.streams[vendor]
        self.stream_visits += len(streams)
        following = math.inf
        for stream in streams.values():
            for t in stream.change_times():
                if now < t < following:
                    following = t
        return following

    def changed(self, vendor: str) -> None:
        """The vendor's streams changed (created, removed, started or ended): views are rebuilt."""
        self._views[self.vendor(vendor).name].version += 1

    def add_streams(self, vendor: str, count: int, scenario: str = "steady") -> list[str]:
        """Create `count` streams of `scenario` (its timings counted from now) with keys of the
        vendor's own shape (`VendorSim.stream_key`, skipping keys it already has); their keys."""
        owner = self.vendor(vendor)
        if scenario not in SCENARIO_BASE:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIO_BASE)}")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_ADDED_STREAMS:
            raise ValueError(f"count must be an integer in 0..{MAX_ADDED_STREAMS}")
        streams = self.streams[owner.name]
        now = self.now()
        keys: list[str] = []
        attempts = count + len(streams) + 1  # a key repeats at most once per existing stream
        while len(keys) < count:
            attempts -= 1
            if attempts < 0:
                raise ValueError(f"{owner.name}: stream_key gives the same keys again and again")
            self._serial[owner.name] += 1
            key = owner.stream_key(self._serial[owner.name])
            if key in streams:
                continue
            streams[key] = self._new_stream(owner, key, scenario, len(streams), now)
            keys.append(key)
        self.changed(owner.name)
        return keys

    def viewers(self, vendor: str, key: str) -> int:
        return self.stream(vendor, key).viewers(self.now())

    def set_limits(self, vendor: str, endpoint: str, windows: Sequence[Window]) -> None:
        """Replace the rate limit of one of `vendor`'s endpoint groups ("*": the others)."""
        limits = self.limits[self.vendor(vendor).name]
        if endpoint not in limits:
            raise KeyError(
                f"{vendor} has no rate-limited endpoint group {endpoint!r} (has: {', '.join(limits)})"
            )
        limits[endpoint] = list(windows)
        self.limiter.clear()

    def set_viewers(self, vendor: str, stream_key: str, value: float) -> None:
        """Replace the stream's curve by a fixed value (until changed again)."""
        self.stream(vendor, stream_key).set_viewers(self.now(), value)

    def drop(self, vendor: str, stream_key: str, factor: float = 1.0 / 3.0) -> None:
        """Multiply the stream's viewers by `factor` from now on."""
        self.stream(vendor, stream_key).drop(self.now(), factor)

    def end_stream(self, vendor: str, key: str) -> None:
        self.stream(vendor, key).end(self.now())
        self.changed(vendor)

    def start_stream(self, vendor: str, key: str, viewers: float | None = None) -> None:
        """Start (or restart) a stream now; an unknown key creates a new stream."""
        now = self.now()
        owner = self.vendor(vendor)
        streams = self.streams[owner.name]
        stream = streams.get(key)
        if stream is None:
            stream = SimStream(
                vendor=owner.name,
                key=key,
                scenario="steady",
                base=float(viewers if viewers is not None else SCENARIO_BASE["steady"]),
                created_at=now,
                attrs=owner.stream_attrs(key, "steady", len(streams)),
                integrated_until=now,
            )
            streams[key] = stream
        stream.start(now, viewers)
        self.changed(owner.name)

    def remove_stream(self, vendor: str, key: str) -> None:
        """The vendor forgets the stream: it answers as it does for a stream it never had."""
        self.stream(vendor, key).remove(self.now())
        self.changed(vendor)

    # ------------------------------------------------------------------ network

    def _names(self, vendor: str | None) -> list[str]:
        return list(self.vendors) if vendor is None else [self.vendor(vendor).name]

    def set_latency(
        self, vendor: str | None, mean: float, jitter: float = 0.0, *, arrival: float | None = None
    ) -> None:
        """Answer time of the vendor's requests (of every vendor when None): uniform in
        [mean - jitter, mean + jitter] seconds, clamped at 0. A request arrives (is logged,
        counted by the rate limits, answered from the state of that moment) at `arrival` (a
        fraction) of it, or at a fraction drawn per request when None; its answer leaves at
        the end of it. 0, 0: none."""
        latency = Latency(mean, jitter, arrival)
        for name in self._names(vendor):
            self.network[name].latency = latency

    def set_pieces(
        self,
        vendor: str | None,
        size: int,
        gap: float = 0.0,
        *,
        jitter: float = 0.0,
        chunked: bool = False,
        endpoints: Iterable[str] | None = None,
    ) -> None:
        """Send the vendor's answers (of `endpoints` only, when given; of every vendor when
        `vendor` is None) `size` bytes at a time (0: whole) with `gap` seconds, jittered by
        `jitter`, between pieces; `chunked` for chunked transfer encoding instead of a
        Content-Length."""
        pieces = Pieces.of(size, gap, jitter=jitter, chunked=chunked, endpoints=endpoints)
        for name in self._names(vendor):
            self.network[name].pieces = pieces

    def use_demo_network(self, vendor: str | None = None) -> None:
        """The vendor's typical network (every vendor's when None), as the demo has it: its
        `demo_latency`, and the answers of its `list_endpoints` in `demo_pieces`."""
        for name in self._names(vendor):
            owner = self.vendors[name]
            mean, jitter = owner.demo_latency
            size, gap, gap_jitter = owner.demo_pieces
            pieces = NO_PIECES
            if owner.list_endpoints:
                pieces = Pieces.of(size, gap, jitter=gap_jitter, endpoints=owner.list_endpoints)
            self.network[name] = Network(latency=Latency(mean, jitter), pieces=pieces)

    def clear_network(self, vendor: str | None = None) -> None:
        """No latency and answers whole, at once (the default)."""
        for name in self._names(vendor):
            self.network[name] = Network()

    def seed(self, value: int | None) -> None:
        """Seed the generator of latencies, arrivals and gaps."""
        self.random.seed(value)

    # ------------------------------------------------------------------ quirks

    def set_quirk(self, name: str, value: object) -> None:
        """Set a quirk of whichever vendor declares it."""
        for vendor in self.vendors.values():
            if name in vendor.quirks:
                vendor.set_quirk(name, value)
                return
        known = [quirk for vendor in self.vendors.values() for quirk in vendor.quirks]
        raise ValueError(f"unknown quirk {name!r}; one of {', '.join(known)}")

    # ------------------------------------------------------------------ faults

    def inject(
        self, vendor: str, kind: str, count: int = 1, stream: str | None = None, code: int | None = None
    ) -> None:
        """Make the next `count` requests (of `stream`, if given) fail as `kind` says.

        `code` overrides the HTTP status (5xx, html) or the vendor error code of the
        vendors that answer failures with one (auth, throttle200, error200).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(kind=kind, remaining=count, stream=stream, code=code)
        self.faults[self.vendor(vendor).name].append(fault)

    def clear_faults(self, vendor: str | None = None) -> None:
        for name in [vendor] if vendor else list(self.faults):
            self.faults[self.vendor(name).name] = []

    def take_fault(self, vendor: str, streams: Sequence[str]) -> Fault | None:
        pending = self.faults[vendor]
        for fault in pending:
            if fault.stream is None or fault.stream in streams:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    pending.remove(fault)
                return Fault(kind=fault.kind, remaining=0, stream=fault.stream, code=fault.code)
        return None

    # ------------------------------------------------------------------ limits and log

    def check_rate(self, vendor: str, endpoint: str, credential: str | None) -> Verdict:
        by_endpoint = self.limits.get(vendor, {})
        windows = by_endpoint.get(endpoint, by_endpoint.get("*", []))
        bucket = endpoint if endpoint in by_endpoint else "*"
        return self.limiter.check((vendor, bucket, credential or ""), windows, self.monotonic())

    def record(
        self,
        vendor: str,
        endpoint: str,
        credential: str | None,
        streams: Sequence[str],
        *,
        received: float | None = None,
        latency: float = 0.0,
    ) -> RequestRecord:
        """Log a request arriving now, received at `received` (now when None)."""
        self.request_counter += 1
        now = self.monotonic()
        return self.log.add(
            RequestRecord(
                vendor=vendor,
                endpoint=endpoint,
                credential=credential,
                time=now,
                wall=self.clock(),
                streams=tuple(streams),
                received=now if received is None else received,
                latency=latency,
            )
        )

    def max_in_window(
        self,
        vendor: str,
        window_seconds: float,
        endpoint: str | None = None,
        credential: str | None = None,
    ) -> int:
        """The most requests (answered or refused) the vendor saw in any window of that length."""
        records = self.log.select(self.vendor(vendor).name, endpoint, credential)
        return max_in_window((r.time for r in records), window_seconds)

    def request_log(self, vendor: str | None = None) -> list[dict[str, object]]:
        return [r.as_dict() for r in self.log.select(vendor)]


def demo_simulator(*, seed: int | None = None) -> Simulator:
    """The simulator of `--demo`: every vendor with its typical network (`use_demo_network`),
    and the troubles of the vendors with `demo_troubles`."""
    sim = Simulator(seed=seed)
    sim.use_demo_network()
    sim.log = RequestLog(keep=DEMO_LOG_RECORDS)
    add_demo_troubles(sim)
    return sim


def add_demo_troubles(sim: Simulator) -> dict[str, tuple[str, str]]:
    """In each vendor with `demo_troubles`, a stream that keeps failing and one that goes
    away after DEMO_VANISH_AFTER seconds: vendor -> (failing key, vanishing key)."""
    out = {}
    for name, owner in sim.vendors.items():
        if owner.demo_troubles:
            failing, vanishing = sim.add_streams(name, 2)
            sim.inject(name, "5xx", count=DEMO_FAILURES, stream=failing)
            sim.stream(name, vanishing).removed_at = sim.now() + DEMO_VANISH_AFTER
            sim.changed(name)
            out[name] = (failing, vanishing)
    return out


def str_list(value: object) -> list[str]:
    """A quirk value naming streams: one key or a list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set):
        return [str(v) for v in value]
    raise ValueError("expected a stream key or a list of them")
