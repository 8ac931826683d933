"""Fake SwiftFederation LLS: concurrent viewers and stream discovery, Signature V2 verified."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from aiohttp import web

from exporter.providers.signing import SFD_DATE_FORMAT, sfd_signature

from .common import Reply, iso_z, utc
from .core import Catalog, Limits, Settings, VendorSim, register, str_list
from .curves import SimStream
from .pipeline import Call, serve

# Fake demo credentials, accepted by the simulator only.
DEMO_KEY_ID: Final = "DemoSfdKey7Q2x9L"
DEMO_SECRET: Final = "demo-sfd-secret-4b1e8d2a9c7f6e5d"  # noqa: S105
DEMO_FZONE: Final = "SG"
# Streams whose answers carry one malformed timestamp by default.
MALFORMED_DEFAULT: Final = ("live.example.com/demoapp/backup",)
POINT_SECONDS = 300.0
_REGION = "SG"
_DOMAIN = "live.example.com"  # the demo's domain and app, where add_streams puts its streams
_APP = "demoapp"
_PROTOCOLS = ("http-flv", "ll-hls", "hls/dash")
_DEFAULT_POINTS = 6
_MAX_POINTS = 288
_MAX_SKEW_SECONDS = 3600.0
_NONCE = re.compile(r"\d{1,18}")
_AUTH = re.compile(r"HMAC-SHA256 ([^:\s]+):([0-9a-fA-F]+)")


@register
class SwiftFederation(VendorSim):
    """Signature V2 (HMAC-SHA256 over the request); 100 requests a minute and 1000 an hour."""

    name = "swiftfederation"
    prefix = "/swiftfederation"
    limits: ClassVar[Limits] = {"*": [(100, 60.0), (1000, 3600.0)]}
    scale = 2.0
    scenarios: ClassVar[Catalog] = {  # stream key: {domain}/{app}/{stream}
        "live.example.com/demoapp/main": "rising",
        "live.example.com/demoapp/backup": "falling",
        "live.example.com/demoapp/concert": "drop",
        "live.example.com/demoapp/webinar": "ends",
        "live.example.com/demoapp/late-show": "starts",
    }
    # stream keys whose answers carry one malformed timestamp
    quirks: ClassVar[Settings] = {"sfd_malformed_streams": MALFORMED_DEFAULT}
    quick_first_cycle: ClassVar[Settings] = {"rate_limit": [{"requests": 300, "per": "1m"}]}
    demo_latency = (0.2, 0.08)
    list_endpoints: ClassVar[frozenset[str]] = frozenset({"stream"})
    over_limit_error = ("RequestLimit.Exceeded", "The request rate limit is exceeded.")
    auth_error = ("Signature.NotMatch", "The signature does not match.")
    throttle_error = ("RequestLimit.Exceeded", "The request rate limit is exceeded.")
    failure_error = ("InternalError", "An internal error occurred.")

    keys: dict[str, str]  # accepted access key id -> its secret
    malformed_streams: set[str]

    def reset(self) -> None:
        super().reset()
        self.keys = {DEMO_KEY_ID: DEMO_SECRET}

    def set_quirk(self, name: str, value: object) -> None:
        if name == "sfd_malformed_streams":
            self.malformed_streams = set(str_list(value))
        else:
            super().set_quirk(name, value)

    @classmethod
    def stream_key(cls, n: int) -> str:
        """{domain}/{app}/{stream}: all on the demo's domain and app."""
        return f"{_DOMAIN}/{_APP}/stream-{n:05d}"

    def stream_attrs(self, key: str, scenario: str, index: int) -> dict[str, str]:
        attrs = super().stream_attrs(key, scenario, index)
        parts = key.split("/")
        if len(parts) == 3:
            protocol = _PROTOCOLS[index % len(_PROTOCOLS)]
            attrs.update(domain=parts[0], app=parts[1], stream=parts[2], region=_REGION, protocol=protocol)
        return attrs

    @classmethod
    def demo_fields(cls) -> dict[str, Any]:
        targets: list[dict[str, Any]] = []
        for index, key in enumerate(cls.demo_keys(discover=True)):
            domain, app, stream = key.split("/")
            protocol = _PROTOCOLS[index % len(_PROTOCOLS)]
            targets.append(
                {"domain": domain, "app": app, "stream": stream, "region": _REGION, "protocol": protocol}
            )
        return {
            "fzone": DEMO_FZONE,
            "discover": True,
            "credentials": {"access_key_id": DEMO_KEY_ID, "access_key_secret": DEMO_SECRET},
            "targets": targets,
        }

    def add_routes(self, app: web.Application) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            refusal = verify(request, self, body)
            match = _AUTH.fullmatch(request.headers.get("Authorization", "").strip())
            credential = match.group(1) if match else None
            query = request.query
            if request.match_info["endpoint"] == "stream":
                call = Call(self, "stream", credential, refusal, lambda: stream_list(self, query))
                return await serve(request, call)
            keys = [s.key for s in _selected(self, query)] if query.get("domain") else []

            def produce() -> Reply:
                return concurrent_viewers(self, query)

            return await serve(
                request, Call(self, "queryConcurrentViewers", credential, refusal, produce, keys)
            )

        app.router.add_get(
            self.prefix + "/lls/v1.0/{endpoint:stream|analytics/delivery/queryConcurrentViewers}", handle
        )


def sfd_timestamp(ts: float) -> str:
    return utc(ts).strftime(SFD_DATE_FORMAT)


def malformed(timestamp: str) -> str:
    """Drop a minute digit, as the vendor's own example does (20250518T18000Z)."""
    return timestamp[:11] + timestamp[12:]


def verify(request: web.Request, vendor: SwiftFederation, body: bytes) -> Reply | None:
    """None when the request carries a valid Signature V2."""
    match = _AUTH.fullmatch(request.headers.get("Authorization", "").strip())
    if match is None:
        return vendor.error(401, "AccessCredential.Invalid", "The Authorization header is invalid.")
    key_id, signature = match.groups()
    secret = vendor.keys.get(key_id)
    if secret is None:
        return vendor.error(401, "AccessCredential.Invalid", "The access key is invalid.")
    try:
        date = datetime.strptime(request.headers.get("X-SFD-Date", ""), SFD_DATE_FORMAT)
    except ValueError:
        return vendor.error(400, "Timestamp.Invalid", "X-SFD-Date is missing or invalid.")
    skew = abs(date.replace(tzinfo=UTC).timestamp() - vendor.sim.now())
    if skew > _MAX_SKEW_SECONDS:
        return vendor.error(400, "Signature.Expired", "The signature has expired.")
    if not _NONCE.fullmatch(request.headers.get("X-SFD-Nonce", "")):
        return vendor.error(400, "Nonce.Invalid", "X-SFD-Nonce is missing or invalid.")
    if request.headers.get("X-SFD-Signature-Version") != "2":
        return vendor.error(401, "Signature.NotMatch", "Only signature version 2 is supported.")
    headers = {name: value for name, value in request.headers.items()}
    expected = sfd_signature(
        method=request.method,
        uri=request.raw_path,
        headers=headers,
        access_key_id=key_id,
        access_key_secret=secret,
        body=body,
    )
    if not hmac.compare_digest(expected, signature.lower()):
        return vendor.error(401, "Signature.NotMatch", "The signature does not match.")
    return None


def _matches(domain: str, app: str, stream: str = "") -> Callable[[SimStream, float], bool]:
    def keep(s: SimStream, now: float) -> bool:
        return (
            s.attrs.get("domain") == domain
            and (not app or s.attrs.get("app") == app)
            and (not stream or s.attrs.get("stream") == stream)
        )

    return keep


def _selected(vendor: SwiftFederation, query: Mapping[str, str]) -> Sequence[SimStream]:
    """The streams of the query's domain (and app, and stream): one stream by its key, many by
    a view of the domain (or app)."""
    domain, app, stream = query.get("domain", ""), query.get("app", ""), query.get("stream", "")
    if domain and app and stream:
        found = vendor.find(f"{domain}/{app}/{stream}")
        return [found] if found is not None and found.attrs.get("stream") == stream else []
    return vendor.view(("selected", domain, app, stream), _matches(domain, app, stream))


def _parse_ts(value: str) -> float:
    return datetime.strptime(value, SFD_DATE_FORMAT).replace(tzinfo=UTC).timestamp()


def concurrent_viewers(vendor: SwiftFederation, query: Mapping[str, str]) -> Reply:
    if not query.get("domain"):
        return vendor.error(400, "Parameter.Invalid", "domain is mandatory.")
    streams = _selected(vendor, query)
    if not streams:
        return vendor.error(404, "Resource.NotFound", "No such domain, app or stream.")
    now = vendor.sim.now()
    current = int(now // POINT_SECONDS)
    try:
        first = int(_parse_ts(query["started"]) // POINT_SECONDS) if query.get("started") else None
        last = int(_parse_ts(query["ended"]) // POINT_SECONDS) if query.get("ended") else None
    except ValueError:
        return vendor.error(400, "LLS.Analytics.InvalidTimestamp", "Timestamp is empty or invalid.")
    last = min(current, last if last is not None else current)
    first = first if first is not None else last - _DEFAULT_POINTS + 1
    first = max(first, last - _MAX_POINTS + 1)
    data: list[dict[str, Any]] = []
    for index in range(first, last + 1):
        start = index * POINT_SECONDS
        if index == current:
            value = sum(s.viewers(now) for s in streams)
        else:
            value = sum(round(s.viewers_at(start + POINT_SECONDS / 2)) for s in streams)
        data.append({"timestamp": sfd_timestamp(start), "concurrentViewers": value})
    if len(data) >= 2 and any(s.key in vendor.malformed_streams for s in streams):
        data[-2]["timestamp"] = malformed(data[-2]["timestamp"])
    body: dict[str, Any] = {"domain": query["domain"]}
    for name in ("app", "stream", "region", "protocol", "started", "ended"):
        if query.get(name):
            body[name] = query[name]
    body["data"] = data
    return Reply(200, body)


def stream_list(vendor: SwiftFederation, query: Mapping[str, str]) -> Reply:
    """Every stream of the domain (and app) in one answer: the list has no pages."""
    now = vendor.sim.now()
    domain, app = query.get("domain", ""), query.get("app", "")
    streaming = query.get("streamingStatus") == "streaming"

    def keep(s: SimStream, t: float) -> bool:
        return (
            (not domain or s.attrs.get("domain") == domain)
            and (not app or s.attrs.get("app") == app)
            and (not streaming or s.is_live(t))
        )

    streams: list[dict[str, Any]] = []
    for s in vendor.view(("list", domain, app, streaming), keep):
        live = s.is_live(now)
        session = s.latest_session(now)
        latest = now if live else (session.end if session and session.end else None)
        streams.append(
            {
                "id": s.session_id(0)[:8],
                "domain": s.attrs.get("domain"),
                "app": s.attrs.get("app"),
                "stream": s.attrs.get("stream"),
                "status": "active",
                "streamingStatus": "streaming" if live else "idle",
                "latestStreamingAt": iso_z(latest) if latest is not None else None,
                "createdAt": iso_z(s.created_at),
            }
        )
    return Reply(200, {"streams": streams})
