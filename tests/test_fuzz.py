"""Every provider's answer parsers, and the configuration loader, fuzzed with hypothesis.

Providers are driven as the daemon drives them: runners built from a config file poll a
loopback vendor over real HTTP, and the vendor answers each endpoint with a fuzzed body:
the documented answer with values of other types, numbers as strings ("NaN", "Infinity",
"1e999", negative counts), keys dropped or given twice, deep nesting, huge arrays, bytes
that are not UTF-8, or no JSON at all.  Each example first polls a valid answer, then:

- every provider call (discovery, poll, app-level poll) answers or raises a typed poll
  error, never anything else and never the engine's "internal" error;
- a full cycle through the runner logs no provider bug, and /metrics still renders;
- no exported value is NaN or infinite, no count, total or duration is negative, and a
  target (or the app level) whose poll failed keeps exactly the values it had, so no
  counter goes down because of a bad answer.

The loader, given any text, returns a configuration or raises its ConfigError, so the CLI
never prints a traceback.

Example counts are small so that `make test` stays quick (and the examples are the same on
every run); `FUZZ_EXAMPLES=N` raises them and draws new examples each run (`python -m
bench.fuzz` does that).  The `@example`s are inputs that once broke a parser;
`FUZZ_EXPLICIT=1` runs only them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from exporter.config.loader import Config, load_config, parse_config
from exporter.config.problems import ConfigError
from exporter.model.catalog import CATALOG
from exporter.model.clock import FakeClock
from exporter.model.errors import InternalError, PollError
from exporter.model.samples import Sample
from exporter.store.exposition import MetricsCache
from tests.pollhelpers import Rig, Samples, build_rig, parse
from tests.simrig import START

#: examples per test: FUZZ_EXAMPLES when set (a long run), else the quick default
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)
#: FUZZ_EXPLICIT=1 runs the `@example`s only (the inputs that once broke a parser)
FUZZ_EXPLICIT = bool(os.environ.get("FUZZ_EXPLICIT"))


def fuzz_settings(quick: int) -> settings:
    return settings(
        max_examples=FUZZ_EXAMPLES or quick,
        deadline=None,
        database=None,
        derandomize=not FUZZ_EXAMPLES,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
        phases=(Phase.explicit,) if FUZZ_EXPLICIT else tuple(Phase),
    )


#: values that must never be negative: counters, and gauges of counts and durations
NEVER_NEGATIVE = {name for name, m in CATALOG.items() if m.type == "counter"} | {
    "livestream_concurrent_viewers",
    "livestream_peak_concurrent_viewers",
    "livestream_unique_viewers",
    "livestream_gift_senders",
    "livestream_duration_seconds",
    "livestream_live",
    "livestream_status",
    "livestream_stream_info",
    "livestream_app_livestreams",
}
HEALTH_PREFIX = "livestream_target_"


# -- JSON with what the json module cannot write: repeated keys and raw bytes ------------------


@dataclass(frozen=True)
class Dup:
    """An object whose keys may repeat, in this order."""

    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Raw:
    """Bytes put into the body as they are (not necessarily JSON, not necessarily UTF-8)."""

    data: bytes


def encode(node: Any) -> bytes:
    if isinstance(node, Raw):
        return node.data
    if isinstance(node, Dup):
        return b"{" + b",".join(encode(k) + b":" + encode(v) for k, v in node.pairs) + b"}"
    if isinstance(node, dict):
        return encode(Dup(tuple((str(k), v) for k, v in node.items())))
    if isinstance(node, list | tuple):
        return b"[" + b",".join(encode(v) for v in node) + b"]"
    return json.dumps(node, allow_nan=True).encode()


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


#: numbers as strings: the vendors send some numbers as strings, so these must be read or refused
NUMBER_STRINGS = st.sampled_from(
    [
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "1e999",
        "-1e999",
        "-1",
        "-5",
        "-0",
        "-0.0001",
        "1e-7",
        " 42 ",
        "0x1A",
        "1_000",
        "١٢",  # Arabic-Indic digits: float() reads them
        "²",  # a digit to str.isdigit(), not to int()
        "",
        " ",
        "12abc",
        "9" * 400,
        "1.7976931348623157e308",
        "4e308",
    ]
)
SPECIAL_BYTES = st.sampled_from(
    [
        Raw(b'"\xff\xfe\xfd"'),  # a string that is not UTF-8
        Raw(b'"\xc3\x28"'),
        Raw(b'"\xed\xa0\x80"'),  # an encoded surrogate
        Raw(b'"\\ud800"'),  # a lone surrogate, escaped
        Raw(b'"a\\u0000b"'),
        Raw(b"1e999"),
        Raw(b"-1e999"),
        Raw(b"NaN"),
        Raw(b"-Infinity"),
        Raw(b"-0"),
        Raw(b"1" * 400),  # an integer no float holds
        Raw(b"-" + b"1" * 400),
        Raw(b"1" * 5000),  # more digits than Python reads by default
        Raw(nested(50)),
        Raw(nested(900)),
        Raw(nested(5000)),
        Raw(b'{"a":' * 900 + b"1" + b"}" * 900),
    ]
)
#: strings a vendor may put where it documents an id, a name or a status
ODD_STRINGS = st.sampled_from(
    [
        "\ud800",  # a lone surrogate: no UTF-8 encodes it
        "x\udc00",
        "a\x00b",
        "line\nbreak",
        'quote" back\\slash',
        "x" * 5000,
        "😀",
        "\u202eevil",
        "../..",
        "a/b?c=d#e",
        "live",
        "ERRORED",
        " ",
    ]
)
DATES = st.sampled_from(
    [
        "2025-10-29T12:05:38.367Z",
        "2024-08-16T11:49:15",
        "20250518T173000Z",
        "20250518T18000Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-23:59",
        "2025-02-30T00:00:00Z",
        "not a date",
        "",
    ]
)
KEYS = st.sampled_from(
    [
        "data",
        "success",
        "errors",
        "error",
        "code",
        "result",
        "paging",
        "total_count",
        "session",
        "livestream",
        "output",
        "status",
        "ErrorCode",
        "Response",
        "RoomList",
        "Next",
        "streams",
        "id",
        "name",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | NUMBER_STRINGS
    | DATES
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)


#: how many times a huge array repeats its items, and about how many bytes it may take at most
HUGE = (60, 150, 5000, 20000)
HUGE_BYTES = 2_000_000


@st.composite
def mutated(
    draw: st.DrawFn,
    node: Any,
    specials: st.SearchStrategy[Raw] = SPECIAL_BYTES,
    huge: Sequence[int] = HUGE,
) -> Any:
    """The documented answer `node` with some of its parts changed: a value (more often a
    leaf than an object or array) replaced by another type, a number as a string or odd
    bytes; keys left out, given twice or added; arrays emptied or made huge (one a body)."""
    return _mutate(draw, node, specials, huge, [1])


def _mutate(
    draw: st.DrawFn, node: Any, specials: st.SearchStrategy[Raw], huge: Sequence[int], huge_left: list[int]
) -> Any:
    # low draws keep the answer as it is: hypothesis draws them more often, and shrinks to them
    leaf = not isinstance(node, dict | list)
    roll = draw(st.integers(0, 99))
    if roll >= (64 if leaf else 93):
        return draw(
            st.one_of(
                NUMBER_STRINGS,  # a number as a string
                ANY_JSON,  # another type where the vendor documents this one
                specials,
                ODD_STRINGS,
            )
        )
    if isinstance(node, dict):
        pairs: list[tuple[str, Any]] = []
        for key, value in node.items():
            fate = draw(st.integers(0, 19))
            if fate == 19:
                continue  # left out
            pairs.append((key, _mutate(draw, value, specials, huge, huge_left)))
            if fate == 18:
                pairs.append((key, draw(ANY_JSON)))  # given twice: the last one counts
        if draw(st.integers(0, 9)) == 9:
            pairs.append((draw(KEYS), draw(ANY_JSON)))
        return Dup(tuple(pairs))
    if isinstance(node, list):
        items = [_mutate(draw, v, specials, huge, huge_left) for v in node]
        fate = draw(st.integers(0, 11))
        if fate == 11:
            return []
        if fate == 10 and items and huge_left[0]:
            huge_left[0] -= 1
            encoded = [encode(v) for v in items]
            # at most about 2 MB: bigger answers only cost time (the HTTP client refuses 8 MB)
            times = min(draw(st.sampled_from(huge)), 1 + HUGE_BYTES // sum(len(e) + 1 for e in encoded))
            return Raw(b"[" + b",".join(encoded * times) + b"]")
        return items
    return node


@st.composite
def bodies(draw: st.DrawFn, valid: Any) -> bytes:
    """Answer bodies: mostly the valid one changed here and there, sometimes anything."""
    whole = encode(valid)
    kind = draw(st.integers(0, 15))
    if kind < 10:
        return encode(draw(mutated(valid)))
    if kind == 10:
        return whole[: draw(st.integers(0, len(whole) - 1))]  # cut short
    if kind == 11:
        return encode(draw(ANY_JSON))
    if kind == 12:
        return encode(draw(SPECIAL_BYTES))
    if kind == 13:
        return draw(st.binary(max_size=64))
    return draw(
        st.sampled_from(
            [
                b"",
                b"null",
                b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
                nested(100_000),
                b"\xef\xbb\xbf" + whole,  # a byte order mark
                whole.decode().encode("utf-16"),
                whole + b"garbage",
            ]
        )
    )


#: mostly 200 (vendors put most of their failures in 200 answers), sometimes an error status
STATUSES = st.integers(0, 15).map(lambda i: [400, 401, 403, 404, 429, 500, 503][i - 9] if i >= 9 else 200)


# -- the vendors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vendor:
    """What a fuzz test needs of one provider: its source, its endpoints and valid answers."""

    source: Callable[[str], dict[str, Any]]  # root URL of the fuzzing vendor -> source
    route: Callable[[str], str]  # request path -> endpoint name
    valid: Mapping[str, Any]  # endpoint name -> a valid answer
    failures: Sequence[Any] = ()  # the vendor's failure answers, as documented

    def answers(self) -> st.SearchStrategy[dict[str, tuple[int, bytes]]]:
        """Per endpoint: a status, and a body made from its valid answer or from a failure."""
        return st.fixed_dictionaries(
            {
                name: st.tuples(STATUSES, st.sampled_from([doc, *self.failures]).flatmap(bodies))
                for name, doc in self.valid.items()
            }
        )

    def valid_answers(self) -> dict[str, tuple[int, bytes]]:
        return {name: (200, encode(doc)) for name, doc in self.valid.items()}


GJIRAFA = Vendor(
    source=lambda root: {
        "name": "gj",
        "provider": "gjirafa",
        "base_url": root + "/vp",
        "credentials": {"api_key": "gj-key"},
        "targets": [{"project_id": "p1"}, {"project_id": "p1", "media": "video"}],
    },
    route=lambda path: "consumption",
    valid={
        "consumption": {
            "success": True,
            "errors": [],
            "messages": [],
            "result": {
                "total": 120,
                "liveViewers": [
                    {"date": "2025-10-29T12:00:00.000Z", "uniqueViewers": 40},
                    {"date": "2025-10-29T12:05:00", "uniqueViewers": "45"},
                ],
            },
            "resultInfo": None,
            "statusCode": 200,
        }
    },
    failures=[
        {"success": False, "errors": ["Too many requests"], "result": None, "statusCode": 429},
        {"success": True, "errors": [{"code": 401, "message": "Unauthorized"}], "statusCode": "401"},
    ],
)

SWIFTFEDERATION = Vendor(
    source=lambda root: {
        "name": "sfd",
        "provider": "swiftfederation",
        "base_url": root + "/sfd",
        "discover": True,
        "credentials": {"access_key_id": "AKID", "access_key_secret": "sfd-secret"},
        "targets": [{"domain": "live.example.com", "app": "a", "stream": "s"}],
    },
    route=lambda path: "list" if path.endswith("/stream") else "viewers",
    valid={
        "viewers": {
            "domain": "live.example.com",
            "app": "a",
            "started": "20250518T173000Z",
            "ended": "20250518T175000Z",
            "data": [
                {"timestamp": "20250518T173000Z", "concurrentViewers": 1283},
                {"timestamp": "20250518T173500Z", "concurrentViewers": "1354"},
                {"timestamp": "20250518T18000Z", "concurrentViewers": 3276},
            ],
        },
        "list": {
            "streams": [
                {
                    "id": 7,
                    "domain": "live.example.com",
                    "app": "a",
                    "stream": "s2",
                    "status": "active",
                    "latestStreamingAt": "2025-05-18T17:30:00Z",
                }
            ]
        },
    },
    failures=[
        {"code": "Signature.NotMatch", "message": "signature does not match"},
        {"code": "LLS.Analytics.InvalidTimestamp", "message": "invalid timestamp"},
    ],
)

FERMION_STATS = {
    "currentActivelyWatchingDistinctUserCount": 12,
    "peakConcurrentUsers": "30",
    "uniqueUsersCount": 44,
    "totalMessagesSentCount": 90,
    "instructorMessagesSentCount": 9,
    "pollsConductedCount": 2,
    "estimatedStreamDurationInMinutes": 35,
    "streamStartedAt": "2025-10-29T12:05:38.367Z",
    "streamEndedAt": None,
    "topUsersByWatchTime": [{"email": "someone@example.com", "name": "Someone"}],
}
FERMION = Vendor(
    source=lambda root: {
        "name": "fm",
        "provider": "fermion",
        "base_url": root + "/api",
        "batch_size": 2,
        "credentials": {"api_key": "fm-key"},
        "targets": [{"live_event_session_id": "s1"}, {"live_event_session_id": "s2"}],
    },
    route=lambda path: "stats",
    valid={"stats": [{"output": {"status": "ok", "data": FERMION_STATS}}] * 2},
    failures=[
        [{"output": {"status": "error", "errorMessage": "Fermion School not found! Check the API key"}}],
        [
            {"output": {"status": "error", "errorMessage": "Too many requests"}},
            {"output": {"status": "error", "errorMessage": "Live event session not found"}},
        ],
        [{"output": {"status": "ok", "data": FERMION_STATS}}] * 3,
    ],
)

_CF_LIVESTREAM = {"id": "ls-1", "name": "One", "status": "LIVE", "disabled": "false"}
_CF_SESSION = {
    "id": "sess-1",
    "viewer_seconds": 1500,
    "ingest_seconds": "60",
    "started_time": "2025-10-29T12:05:38.367Z",
    "stopped_time": None,
}
CLOUDFLARE = Vendor(
    source=lambda root: {
        "name": "cf",
        "provider": "cloudflare",
        "base_url": root + "/client/v4",
        "account_id": "acc",
        "app_id": "app",
        "discover": True,
        "credentials": {"api_token": "cf-token"},
        "targets": [{"livestream_id": "ls-1"}],
    },
    route=lambda path: (
        "overall"
        if path.endswith("/overall")
        else "active"
        if path.endswith("/active-livestream-session")
        else "livestream"
        if re.search(r"/livestreams/[^/]+$", path)
        else "list"
    ),
    valid={
        "list": {
            "success": True,
            "data": [{"id": "ls-2", "name": "Two", "status": "IDLE"}],
            "paging": {"start_offset": 1, "end_offset": 1, "total_count": 1},
        },
        "active": {"success": True, "data": {"livestream": _CF_LIVESTREAM, "session": _CF_SESSION}},
        "livestream": {
            "success": True,
            "data": {
                "livestream": _CF_LIVESTREAM,
                "session": _CF_SESSION,
                "paging": {"start_offset": 1, "end_offset": 1, "total_count": 2},
            },
        },
        "overall": {
            "success": True,
            "data": {"count": 2, "total_viewer_seconds": 90000, "total_ingest_seconds": "3600"},
        },
    },
    failures=[
        {"success": False, "errors": [{"code": 971, "message": "Please wait"}], "messages": []},
        {"success": False, "error": {"code": "10000", "message": "Authentication error"}},
        {
            "success": True,
            "data": {"id": "ls-3", "paging": {"start_offset": 1, "end_offset": 1, "total_count": 3}},
        },
    ],
)

TENCENT = Vendor(
    source=lambda root: {
        "name": "tc",
        "provider": "tencent",
        "base_url": root,
        "discover": True,
        "credentials": {"sdk_app_id": 1400000000, "identifier": "administrator", "secret_key": "tc-key"},
        "targets": [{"room_id": "r1"}],
    },
    route=lambda path: "list" if path.endswith("/get_room_list") else "stats",
    valid={
        "stats": {
            "ActionStatus": "OK",
            "ErrorCode": 0,
            "ErrorInfo": "",
            "Response": {
                "TotalViewers": 300,
                "TotalMsgCount": "25",
                "TotalLikesReceived": 80,
                "TotalGiftsSent": 4,
                "TotalGiftCoins": 400,
                "TotalUniqueGiftSenders": 3,
            },
        },
        "list": {"ErrorCode": 0, "Response": {"RoomList": [{"RoomId": "r2", "RoomName": "Two"}], "Next": ""}},
    },
    failures=[
        {"ActionStatus": "FAIL", "ErrorCode": 70001, "ErrorInfo": "UserSig expired"},
        {"ActionStatus": "FAIL", "ErrorCode": "60018", "ErrorInfo": "too frequent"},
        {"ActionStatus": "FAIL", "ErrorCode": 100004, "ErrorInfo": "room not exist"},
        {"ErrorCode": 0, "Response": {"RoomList": [{"RoomId": "r3"}], "Next": "cursor-2"}},
    ],
)


# -- the fuzzing vendor and one example ---------------------------------------------------------


class FuzzVendor:
    """Answers each request with the (status, body) of its endpoint, byte for byte."""

    def __init__(self) -> None:
        self.route: Callable[[str], str] = lambda path: path
        self.answers: dict[str, tuple[int, bytes]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        status, body = self.answers.get(self.route(request.path), (500, b"no answer"))
        return web.Response(status=status, body=body, content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


@pytest.fixture
async def fuzz_vendor(aiohttp_server: Any) -> tuple[FuzzVendor, str]:
    vendor = FuzzVendor()
    server = await aiohttp_server(vendor.app())
    return vendor, str(server.make_url("")).rstrip("/")


def metrics(rig: Rig) -> Samples:
    """/metrics as the web app renders it (the store's own exposition), parsed."""
    cache = MetricsCache(rig.store, rig.reload_status, rig.clock, process_metrics=False)
    assert cache.render(True).endswith(b"# EOF\n")  # the OpenMetrics body renders as well
    return parse(cache.render(False).decode())


def check_samples(samples: Sequence[Sample]) -> None:
    for s in samples:
        assert math.isfinite(s.value), s
        if s.name in NEVER_NEGATIVE:
            assert s.value >= 0, s


async def call_every_provider_method(rig: Rig) -> None:
    """Discovery, each batch's poll and the app-level poll: samples or typed poll errors only."""
    runner = rig.runner
    provider = runner.provider
    calls: list[Any] = []
    if runner.source.discovery_enabled():
        calls.append(provider.discover())
    calls += [provider.poll(batch) for batch in runner.batches()]
    if provider.app_metrics():
        calls.append(provider.poll_app())
    for call in calls:
        try:
            result = await call
        except PollError as e:
            assert not isinstance(e, InternalError), e
            continue
        if isinstance(result, Mapping):
            for outcome in result.values():
                if isinstance(outcome, PollError):
                    assert not isinstance(outcome, InternalError), outcome
                else:
                    check_samples(outcome)
        elif result and isinstance(result[0], Sample):
            check_samples(result)


def series(samples: Samples, **labels: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    want = set(labels.items())
    return {
        (name, lv): v
        for (name, lv), v in samples.items()
        if want <= set(lv) and not name.startswith(HEALTH_PREFIX) and name.startswith("livestream_")
    }


async def fuzz_one(
    vendor: Vendor,
    fuzz_vendor: tuple[FuzzVendor, str],
    write_config: Callable[..., Path],
    answers: dict[str, tuple[int, bytes]],
) -> None:
    server, root = fuzz_vendor
    server.route = vendor.route
    server.answers = vendor.valid_answers()
    rig = build_rig(write_config([vendor.source(root)]), FakeClock(START))
    runner = rig.runner
    try:
        await runner.run_cycle()
        before = metrics(rig)
        states = rig.store.sources[runner.name].targets
        assert states and all(t.up for t in states.values()), "the valid answers poll fine"
        targets = {key: state.target.stream for key, state in states.items()}

        server.answers = answers
        await call_every_provider_method(rig)
        rig.clock.advance(runner.interval)
        await runner.run_cycle()
        assert not runner._bugs, "a provider raised something other than a poll error"
        after = metrics(rig)
    finally:
        await rig.close()

    for name, value in after.items():
        assert math.isfinite(value), name
        if name[0] in NEVER_NEGATIVE:
            assert value >= 0, name
    labels = {"source": runner.name}
    for key, stream in targets.items():
        state = rig.store.sources[runner.name].targets.get(key)
        if state is not None and state.attempted and not state.up and not state.gone:
            # failed: every value is the one it had, none went down
            assert series(after, **labels, stream=stream) == series(before, **labels, stream=stream), key
    if runner.provider.app_metrics() and "app-level poll" in runner._source_errors:
        app_before = {k: v for k, v in before.items() if k[0].startswith("livestream_app_")}
        app_after = {k: v for k, v in after.items() if k[0].startswith("livestream_app_")}
        assert app_after == app_before, "the app-level values are the ones they were"


# -- the providers ----------------------------------------------------------------------------
# Each `@example` is an answer that once broke its provider:
# - an integer no float holds (400 digits) raised OverflowError instead of a parse error;
# - a negative count or total ("-1") was exported, so a counter went down;
# - a discovered id that UTF-8 cannot encode (a lone surrogate, which JSON can carry) raised
#   pydantic's ValidationError, or UnicodeEncodeError when polled;
# - a Cloudflare error code such as "²" (a digit to str.isdigit, not to int) or of 5000 digits
#   raised ValueError.


def with_answer(
    vendor: Vendor, endpoint: str, answer: Any, status: int = 200
) -> dict[str, tuple[int, bytes]]:
    """The vendor's valid answers, one endpoint's replaced by `answer` (bytes as they are)."""
    answers = vendor.valid_answers()
    answers[endpoint] = (status, answer if isinstance(answer, bytes) else encode(answer))
    return answers


HUGE_INT = Raw(b"1" * 400)


@fuzz_settings(60)
@given(answers=GJIRAFA.answers())
@example(answers=with_answer(GJIRAFA, "consumption", {"success": True, "result": {"total": HUGE_INT}}))
@example(answers=with_answer(GJIRAFA, "consumption", {"success": True, "result": {"total": "-3"}}))
@example(
    answers=with_answer(
        GJIRAFA,
        "consumption",
        {
            "success": True,
            "result": {"total": 3, "liveViewers": [{"date": "2025-10-29T12:00:00Z", "uniqueViewers": -5}]},
        },
    )
)
async def test_gjirafa_answers_fuzzed(
    fuzz_vendor: tuple[FuzzVendor, str], write_config: Callable[..., Path], answers: dict[str, Any]
) -> None:
    await fuzz_one(GJIRAFA, fuzz_vendor, write_config, answers)


@fuzz_settings(60)
@given(answers=SWIFTFEDERATION.answers())
@example(
    answers=with_answer(
        SWIFTFEDERATION, "list", {"streams": [{"domain": "live.example.com", "stream": "\ud800"}]}
    )
)
@example(
    answers=with_answer(
        SWIFTFEDERATION,
        "list",
        {"streams": [{"domain": "live.example.com", "app": "x\udc00", "stream": "s3"}]},
    )
)
@example(
    answers=with_answer(
        SWIFTFEDERATION,
        "viewers",
        {"data": [{"timestamp": "20250518T173000Z", "concurrentViewers": HUGE_INT}]},
    )
)
@example(
    answers=with_answer(
        SWIFTFEDERATION, "viewers", {"data": [{"timestamp": "20250518T173000Z", "concurrentViewers": "-1"}]}
    )
)
async def test_swiftfederation_answers_fuzzed(
    fuzz_vendor: tuple[FuzzVendor, str], write_config: Callable[..., Path], answers: dict[str, Any]
) -> None:
    await fuzz_one(SWIFTFEDERATION, fuzz_vendor, write_config, answers)


@fuzz_settings(60)
@given(answers=FERMION.answers())
@example(
    answers=with_answer(
        FERMION,
        "stats",
        [{"output": {"status": "ok", "data": {**FERMION_STATS, "totalMessagesSentCount": "-5"}}}] * 2,
    )
)
@example(
    answers=with_answer(
        FERMION,
        "stats",
        [{"output": {"status": "ok", "data": {**FERMION_STATS, "peakConcurrentUsers": HUGE_INT}}}] * 2,
    )
)
async def test_fermion_answers_fuzzed(
    fuzz_vendor: tuple[FuzzVendor, str], write_config: Callable[..., Path], answers: dict[str, Any]
) -> None:
    await fuzz_one(FERMION, fuzz_vendor, write_config, answers)


@fuzz_settings(60)
@given(answers=CLOUDFLARE.answers())
@example(
    answers=with_answer(
        CLOUDFLARE,
        "overall",
        {"success": True, "data": {"count": 2, "total_viewer_seconds": -5, "total_ingest_seconds": 1}},
    )
)
@example(
    answers=with_answer(
        CLOUDFLARE, "active", b'{"success":true,"data":{"session":{"viewer_seconds":' + b"9" * 400 + b"}}}"
    )
)
@example(answers=with_answer(CLOUDFLARE, "list", {"success": True, "data": [{"id": "\udc00", "name": "x"}]}))
@example(
    answers=with_answer(CLOUDFLARE, "overall", {"success": False, "errors": [{"code": "²", "message": "x"}]})
)
@example(answers=with_answer(CLOUDFLARE, "overall", {"success": False, "error": {"code": "1" * 5000}}))
async def test_cloudflare_answers_fuzzed(
    fuzz_vendor: tuple[FuzzVendor, str], write_config: Callable[..., Path], answers: dict[str, Any]
) -> None:
    await fuzz_one(CLOUDFLARE, fuzz_vendor, write_config, answers)


@fuzz_settings(60)
@given(answers=TENCENT.answers())
@example(
    answers=with_answer(
        TENCENT,
        "stats",
        {
            "ErrorCode": 0,
            "Response": {**TENCENT.valid["stats"]["Response"], "TotalUniqueGiftSenders": HUGE_INT},
        },
    )
)
@example(
    answers=with_answer(
        TENCENT,
        "stats",
        {"ErrorCode": 0, "Response": {**TENCENT.valid["stats"]["Response"], "TotalUniqueGiftSenders": "-1"}},
    )
)
async def test_tencent_answers_fuzzed(
    fuzz_vendor: tuple[FuzzVendor, str], write_config: Callable[..., Path], answers: dict[str, Any]
) -> None:
    await fuzz_one(TENCENT, fuzz_vendor, write_config, answers)


# -- the configuration loader -----------------------------------------------------------------

ENV = {"CF_TOKEN": "cf-token", "EMPTY": ""}
VALID_CONFIG = {
    "global": {"interval": "30s", "timeout": "10s", "stale_after": "5m"},
    "sources": [
        {
            "name": "cf",
            "provider": "cloudflare",
            "account_id": "acc",
            "app_id": "app",
            "discover": True,
            "interval": "15s",
            "credentials": {"api_token": "${CF_TOKEN}"},
            "targets": [{"livestream_id": "ls-1", "name": "town-hall"}],
        },
        {
            "name": "gj",
            "provider": "gjirafa",
            "base_url": "https://vp.example.com",
            "auth_scheme": "",
            "rate_limit": [{"requests": 60, "per": "1m"}],
            "max_in_flight": 4,
            "credentials": {"api_key": "k"},
            "targets": [{"project_id": "p1", "media": "video", "interval_length": 5}],
        },
        {
            "name": "tc",
            "provider": "tencent",
            "region": "singapore",
            "credentials": {"sdk_app_id": 1400000000, "identifier": "admin", "secret_key": "s"},
            "targets": [{"room_id": "r1"}],
        },
        {
            "name": "sfd",
            "provider": "swiftfederation",
            "fzone": "SG",
            "credentials": {"access_key_id": "id", "access_key_secret": "secret"},
            "targets": [{"domain": "live.example.com", "app": "a", "protocol": "ll-hls", "region": "SG"}],
        },
        {
            "name": "fm",
            "provider": "fermion",
            "batch_size": 5,
            "credentials": {"api_key": "k"},
            "targets": [{"live_event_session_id": "s1"}],
        },
    ],
}
#: YAML that once made the loader raise something other than ConfigError, and its neighbours
YAML_TEXTS = [
    "&a [*a]",
    "sources: &s [*s]",
    "sources: [&e {name: x, provider: gjirafa, targets: [*e]}]",
    "? [1, 2]\n: x\n",
    "{[1]: 2}",
    "global: {? {a: 1} : 2}",
    "sources:\n  - provider: [gjirafa]\n",
    "sources: [{provider: {a: 1}, name: x}]",
    "sources: [{name: x, provider: gjirafa, interval: " + "9" * 400 + "s}]",
    "global: {interval: " + "9" * 400 + "s}",
    "global: {timeout: 1" + "0" * 5000 + "ms}",
    "sources: [{name: x, provider: cloudflare, max_in_flight: " + "9" * 400 + "}]",
    "sources: [{name: x, provider: gjirafa, rate_limit: [{requests: 1e999, per: 1s}]}]",
    "!!python/object/apply:os.system ['true']",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "sources: !!set {a, b}",
    "2001-12-14t21:59:43.10-05:00",
    "sources: [{name: .nan, provider: .inf}]",
    "base: &b {provider: gjirafa}\nsources: [{<<: *b, name: x}]",
    "[" * 600 + "]" * 600,
    "{a: " * 600 + "1" + "}" * 600,
    "sources: [{name: x, provider: gjirafa, targets: " + "[" * 600 + "]" * 600 + "}]",
    "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 400)),
    "\x00",
    "\t",
    "%YAML 1.1\n---\nsources: []",
    "--- a\n--- b",
    "*unknown",
    "sources: [{name: '${UNSET}', provider: gjirafa}]",
    "sources: [{name: '$${CF_TOKEN}', provider: gjirafa}]",
    "sources: [{name: x, provider: gjirafa, credentials: {api_key_file: /}}]",
    "sources: [{name: x, provider: gjirafa, credentials: {api_key_file: [1]}}]",
    "sources: [{name: x, provider: gjirafa, credentials: {api_key_file: /nonexistent/key}}]",
]
YAML_SNIPPETS = st.sampled_from(YAML_TEXTS)


def as_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


#: odd values for a configuration: PyYAML reads nesting slowly, so it is shallower than in answers
CONFIG_SPECIALS = st.sampled_from(
    [
        Raw(b'"\\ud800"'),
        Raw(b'"a\\u0000b"'),
        Raw(b"1" * 400),
        Raw(b"-" + b"1" * 400),
        Raw(b'"' + b"9" * 400 + b's"'),  # a duration no float holds
        Raw(b'"' + b"1" * 5000 + b'ms"'),
        Raw(b".nan"),
        Raw(b".inf"),
        Raw(b"0x1F"),
        Raw(b"~"),
        Raw(b"yes"),
        Raw(b"!!binary aGVsbG8="),
        Raw(b'"${UNSET}"'),
        Raw(b'"${CF_TOKEN}${EMPTY}"'),
        Raw(nested(50)),
    ]
)
CONFIG_HUGE = (5, 30)
CONFIGS = mutated(VALID_CONFIG, CONFIG_SPECIALS, CONFIG_HUGE)
CONFIG_TEXTS = st.one_of(
    CONFIGS.map(lambda doc: as_text(encode(doc))),
    CONFIGS.map(lambda doc: as_text(encode(doc))),
    CONFIGS.map(lambda doc: as_text(encode(doc))),
    ANY_JSON.map(lambda doc: as_text(encode(doc))),
    YAML_SNIPPETS,
    st.text(max_size=80),
    st.builds(lambda doc, snippet: as_text(encode(doc)) + "\n" + snippet, CONFIGS, YAML_SNIPPETS),
)


@pytest.mark.parametrize("text", YAML_TEXTS, ids=range(len(YAML_TEXTS)))
def test_config_loader_odd_yaml(text: str) -> None:
    """Each text, outside hypothesis (which raises the recursion limit while it runs a test,
    so nesting that breaks the CLI can pass there): a Config or a ConfigError."""
    try:
        parse_config(text, "fuzz.yaml", ENV)
    except ConfigError as e:
        assert e.problems


def test_the_valid_config_loads() -> None:
    config = parse_config(yaml.safe_dump(VALID_CONFIG), "fuzz.yaml", ENV)
    assert [s.name for s in config.sources] == ["cf", "gj", "tc", "sfd", "fm"]


@fuzz_settings(100)
@given(text=CONFIG_TEXTS)
# texts that once made the loader raise something other than ConfigError:
@example(text="? [1, 2]\n: x\n")  # a list as a key: TypeError (unhashable)
@example(text="global: {? {a: 1} : 2}")
@example(text="sources:\n  - provider: [gjirafa]\n")  # a list as the provider: TypeError
@example(text="sources: &s [*s]")  # an alias inside its anchor: RecursionError
@example(text="global: {interval: " + "9" * 400 + "s}")  # a duration no float holds: OverflowError
@example(text="sources: [{name: x, provider: gjirafa, interval: " + "9" * 400 + "s}]")
def test_config_loader_fuzzed(text: str) -> None:
    try:
        config = parse_config(text, "fuzz.yaml", ENV)
    except ConfigError as e:
        assert e.problems and str(e).startswith("fuzz.yaml")
        return
    assert isinstance(config, Config)


@fuzz_settings(40)
@given(data=st.binary(max_size=200) | CONFIG_TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_config_file_bytes_fuzzed(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        load_config(path, ENV)
    except ConfigError as e:
        assert e.problems
