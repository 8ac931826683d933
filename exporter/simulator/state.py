"""The simulator's state: clock, streams, credentials, quirks, faults, limits and request log."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .constants import (
    CF_STRING_NUMBERS_DEFAULT,
    CREATE_BEFORE_START,
    DEMO_CF_ACCOUNT,
    DEMO_CF_APP,
    DEMO_CF_TOKEN,
    DEMO_FERMION_KEY,
    DEMO_GJIRAFA_KEY,
    DEMO_SCENARIOS,
    DEMO_SFD_KEY_ID,
    DEMO_SFD_SECRET,
    DEMO_TENCENT_APP_ID,
    DEMO_TENCENT_SECRET,
    END_AFTER,
    ENDED_BEFORE,
    ENDED_DURATION,
    FAULT_KINDS,
    SCENARIO_BASE,
    SFD_MALFORMED_DEFAULT,
    START_AFTER,
    TENCENT_DESTROY_AFTER_END,
    VENDORS,
)
from .curves import Session, SimStream
from .ratelimit import RequestLog, RequestRecord, SlidingWindowLimiter, Verdict, Window, max_in_window

# Documented limits: vendor -> endpoint (or "*" for all endpoints) -> windows.
DEFAULT_LIMITS: dict[str, dict[str, list[Window]]] = {
    "gjirafa": {},  # none published
    "swiftfederation": {"*": [(100, 60.0), (1000, 3600.0)]},
    "fermion": {"*": [(60, 60.0)]},
    "cloudflare": {"*": [(250, 10.0), (1200, 300.0)]},
    "tencent": {"get_room_stats": [(100, 1.0)], "get_room_list": [(10, 1.0)]},
}

_VENDOR_SCALE = {"gjirafa": 1.0, "swiftfederation": 2.0, "fermion": 0.2, "cloudflare": 1.0, "tencent": 3.0}
_TITLES = {
    "rising": "Morning Show",
    "falling": "Late Night Rerun",
    "drop": "Championship Final",
    "ends": "Weekly Q&A",
    "starts": "Evening Concert",
    "ended": "Opening Keynote",
    "steady": "Pop-up Stream",
}
_PROTOCOLS = ("http-flv", "ll-hls", "hls/dash")
QUIRKS = (
    "sfd_malformed_streams",  # stream keys whose answers carry one malformed timestamp
    "fermion_first_call_only",  # answer only the first call of a multi-call body
    "cf_list_form",  # "array" (data list, paging beside) or "object" (one item, paging inside)
    "cf_string_numbers",  # livestream ids whose numbers and `disabled` arrive as strings
    "cf_inactive_session_404",  # active-livestream-session answers 404 when no session is live
)


@dataclass
class Fault:
    kind: str
    remaining: int
    stream: str | None = None
    code: int | None = None


@dataclass
class Credentials:
    """What the simulator accepts. Tests may add more."""

    gjirafa_keys: set[str] = field(default_factory=lambda: {DEMO_GJIRAFA_KEY})
    sfd_keys: dict[str, str] = field(default_factory=lambda: {DEMO_SFD_KEY_ID: DEMO_SFD_SECRET})
    fermion_keys: set[str] = field(default_factory=lambda: {DEMO_FERMION_KEY})
    cf_tokens: set[str] = field(default_factory=lambda: {DEMO_CF_TOKEN})
    cf_account: str = DEMO_CF_ACCOUNT
    cf_app: str = DEMO_CF_APP
    tencent_apps: dict[int, str] = field(default_factory=lambda: {DEMO_TENCENT_APP_ID: DEMO_TENCENT_SECRET})


def _attrs(vendor: str, key: str, scenario: str, index: int) -> dict[str, str]:
    attrs = {"name": f"{_TITLES.get(scenario, 'Stream')} ({key})"}
    parts = key.split("/")
    if vendor == "gjirafa" and len(parts) == 2:
        attrs.update(project_id=parts[0], media=parts[1])
    elif vendor == "swiftfederation" and len(parts) == 3:
        attrs.update(
            domain=parts[0],
            app=parts[1],
            stream=parts[2],
            region="SG",
            protocol=_PROTOCOLS[index % len(_PROTOCOLS)],
        )
    return attrs


class Simulator:
    """All state of the fake vendor APIs.

    `clock` returns wall seconds (default time.time); `monotonic` is used for the request
    log and rate limits (default time.monotonic with the default clock, else `clock`), so a
    test that passes a fake clock moves both at once.
    """

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        *,
        monotonic: Callable[[], float] | None = None,
        slow_seconds: float = 3.0,
        hang_seconds: float = 120.0,
        retry_after_seconds: float = 2.0,
    ) -> None:
        self.clock: Callable[[], float] = clock or time.time
        if monotonic is None:
            monotonic = time.monotonic if clock is None else clock
        self.monotonic: Callable[[], float] = monotonic
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self.retry_after_seconds = retry_after_seconds
        self.credentials = Credentials()
        self.log = RequestLog()
        self.limiter = SlidingWindowLimiter()
        self.closing = False
        self.generation = 0
        self.request_counter = 0
        self.t0 = 0.0
        self.streams: dict[str, dict[str, SimStream]] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.limits: dict[str, dict[str, list[Window]]] = {}
        self.sfd_malformed_streams: set[str] = set()
        self.fermion_first_call_only = False
        self.cf_list_form = "array"
        self.cf_string_numbers: set[str] = set()
        self.cf_inactive_session_404 = False
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def now(self) -> float:
        return self.clock()

    def reset(self) -> None:
        """Back to the initial demo state; time starts again now."""
        self.generation += 1
        self.t0 = self.clock()
        self.log.clear()
        self.limiter.clear()
        self.faults = {vendor: [] for vendor in VENDORS}
        self.limits = {vendor: {k: list(v) for k, v in ws.items()} for vendor, ws in DEFAULT_LIMITS.items()}
        self.sfd_malformed_streams = set(SFD_MALFORMED_DEFAULT)
        self.fermion_first_call_only = False
        self.cf_list_form = "array"
        self.cf_string_numbers = set(CF_STRING_NUMBERS_DEFAULT)
        self.cf_inactive_session_404 = False
        self.streams = {vendor: {} for vendor in VENDORS}
        for vendor, scenarios in DEMO_SCENARIOS.items():
            for index, (key, scenario) in enumerate(scenarios.items()):
                self.streams[vendor][key] = self._demo_stream(vendor, key, scenario, index)

    def _demo_stream(self, vendor: str, key: str, scenario: str, index: int) -> SimStream:
        t0 = self.t0
        stream = SimStream(
            vendor=vendor,
            key=key,
            scenario=scenario,
            base=SCENARIO_BASE[scenario] * _VENDOR_SCALE[vendor],
            created_at=t0,
            attrs=_attrs(vendor, key, scenario, index),
            integrated_until=t0,
        )
        start, end = t0, None
        if scenario == "starts":
            start = t0 + START_AFTER
            if vendor in ("cloudflare", "tencent"):
                stream.created_at = start - CREATE_BEFORE_START
        elif scenario == "ends":
            end = t0 + END_AFTER
            if vendor == "tencent":
                stream.removed_at = end + TENCENT_DESTROY_AFTER_END
        elif scenario == "ended":
            end = t0 - ENDED_BEFORE
            start = end - ENDED_DURATION
            # created and integrated from before its session, so its counters hold the session
            stream.created_at = stream.integrated_until = start - CREATE_BEFORE_START
        stream.sessions.append(Session(id=stream.session_id(0), start=start, end=end))
        return stream

    # ------------------------------------------------------------------ streams

    def _vendor(self, vendor: str) -> str:
        if vendor not in VENDORS:
            raise ValueError(f"unknown vendor {vendor!r}; one of {', '.join(VENDORS)}")
        return vendor

    def stream(self, vendor: str, key: str) -> SimStream:
        try:
            return self.streams[self._vendor(vendor)][key]
        except KeyError:
            raise KeyError(f"{vendor} has no stream {key!r}") from None

    def find(self, vendor: str, key: str) -> SimStream | None:
        """The stream if it exists now (created and not removed)."""
        stream = self.streams[vendor].get(key)
        if stream is None or not stream.exists(self.now()):
            return None
        return stream

    def visible(self, vendor: str) -> list[SimStream]:
        now = self.now()
        return [s for s in self.streams[vendor].values() if s.exists(now)]

    def viewers(self, vendor: str, key: str) -> int:
        return self.stream(vendor, key).viewers(self.now())

    def set_viewers(self, vendor: str, stream_key: str, value: float) -> None:
        """Replace the stream's curve by a fixed value (until changed again)."""
        self.stream(vendor, stream_key).set_viewers(self.now(), value)

    def drop(self, vendor: str, stream_key: str, factor: float = 1.0 / 3.0) -> None:
        """Multiply the stream's viewers by `factor` from now on."""
        self.stream(vendor, stream_key).drop(self.now(), factor)

    def end_stream(self, vendor: str, key: str) -> None:
        self.stream(vendor, key).end(self.now())

    def start_stream(self, vendor: str, key: str, viewers: float | None = None) -> None:
        """Start (or restart) a stream now; an unknown key creates a new stream."""
        now = self.now()
        stream = self.streams[self._vendor(vendor)].get(key)
        if stream is None:
            stream = SimStream(
                vendor=vendor,
                key=key,
                scenario="steady",
                base=float(viewers if viewers is not None else 100),
                created_at=now,
                attrs=_attrs(vendor, key, "steady", len(self.streams[vendor])),
                integrated_until=now,
            )
            self.streams[vendor][key] = stream
        stream.start(now, viewers)

    def remove_stream(self, vendor: str, key: str) -> None:
        """The vendor forgets the stream: 404 / Tencent 100004 / Fermion error output."""
        self.stream(vendor, key).remove(self.now())

    # ------------------------------------------------------------------ quirks

    def set_quirk(self, name: str, value: object) -> None:
        if name == "sfd_malformed_streams":
            self.sfd_malformed_streams = set(_str_list(value))
        elif name == "cf_string_numbers":
            self.cf_string_numbers = set(_str_list(value))
        elif name == "fermion_first_call_only":
            self.fermion_first_call_only = bool(value)
        elif name == "cf_inactive_session_404":
            self.cf_inactive_session_404 = bool(value)
        elif name == "cf_list_form":
            if value not in ("array", "object"):
                raise ValueError("cf_list_form is 'array' or 'object'")
            self.cf_list_form = str(value)
        else:
            raise ValueError(f"unknown quirk {name!r}; one of {', '.join(QUIRKS)}")

    # ------------------------------------------------------------------ faults

    def inject(
        self, vendor: str, kind: str, count: int = 1, stream: str | None = None, code: int | None = None
    ) -> None:
        """Make the next `count` requests (of `stream`, if given) fail as `kind` says.

        `code` overrides the HTTP status (5xx, html) or the vendor error code (Tencent
        auth/throttle200/error200).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self.faults[self._vendor(vendor)].append(Fault(kind=kind, remaining=count, stream=stream, code=code))

    def clear_faults(self, vendor: str | None = None) -> None:
        for name in [vendor] if vendor else list(self.faults):
            self.faults[self._vendor(name)] = []

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
        self, vendor: str, endpoint: str, credential: str | None, streams: Sequence[str]
    ) -> RequestRecord:
        self.request_counter += 1
        return self.log.add(
            RequestRecord(
                vendor=vendor,
                endpoint=endpoint,
                credential=credential,
                time=self.monotonic(),
                wall=self.clock(),
                streams=tuple(streams),
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
        records = self.log.select(self._vendor(vendor), endpoint, credential)
        return max_in_window((r.time for r in records), window_seconds)

    def request_log(self, vendor: str | None = None) -> list[dict[str, object]]:
        return [r.as_dict() for r in self.log.select(vendor)]


def _str_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set):
        return [str(v) for v in value]
    raise ValueError("expected a stream key or a list of them")
