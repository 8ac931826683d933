"""SwiftFederation LLS delivery analytics: queryConcurrentViewers, Signature V2.

`GET {base_url}/lls/v1.0/analytics/delivery/queryConcurrentViewers?domain=&app=&stream=&region=&protocol=`

    livestream_concurrent_viewers        concurrentViewers of the latest valid 5-minute point
    livestream_peak_concurrent_viewers   max concurrentViewers over the returned points
    livestream_data_timestamp_seconds    timestamp of the point used

A point whose timestamp is malformed (the vendor's own example has `20250518T18000Z`) is
skipped and counted in `livestream_exporter_skipped_points_total`, never fatal.  With
`discover: true` every stream the stream list reports streaming for the configured
domains is tracked too.  The signed URI is the path with its query string, exactly as sent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar, Literal
from urllib.parse import quote, urlencode, urlsplit

from pydantic import Field, ValidationError, model_validator
from yarl import URL

from exporter.config.registry import register
from exporter.config.schema import CredentialsBase, DiscoveringSource, Secret, TargetBase
from exporter.model.errors import AuthError, ParseError, PollError, ThrottledError, UpstreamError
from exporter.model.samples import Origin, Outcome, Sample, Target
from exporter.model.windows import Window
from exporter.providers.base import Provider
from exporter.providers.parse import count, obj, sendable
from exporter.providers.signing import sfd_sign_headers
from exporter.providers.transport import Response, raise_for_status

QUERY_PATH = "/lls/v1.0/analytics/delivery/queryConcurrentViewers"
LIST_PATH = "/lls/v1.0/stream"
_TIMESTAMP = re.compile(r"^\d{8}T\d{6}Z$")
_VENDOR_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9.]{0,80}$")


class SwiftFederationCredentials(CredentialsBase):
    access_key_id: str = Field(min_length=1)
    access_key_secret: Secret


class SwiftFederationTarget(TargetBase):
    domain: str = Field(min_length=1)
    app: str | None = None
    stream: str | None = None
    region: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    protocol: Literal["http-flv", "ll-hls", "hls/dash"] | None = None

    def key(self) -> str:
        return stream_key(self.domain, self.app, self.stream, self.region, self.protocol)

    def default_stream(self) -> str:
        return "/".join(p for p in (self.domain, self.app, self.stream) if p)


def stream_key(
    domain: str, app: str | None, stream: str | None, region: str | None, protocol: str | None
) -> str:
    return "/".join(p or "" for p in (domain, app, stream, region, protocol))


class SwiftFederationSource(DiscoveringSource):
    credentials: SwiftFederationCredentials
    targets: tuple[SwiftFederationTarget, ...] = ()
    fzone: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _discover_needs_domain(self) -> SwiftFederationSource:
        if self.discover and not self.targets:
            raise ValueError(
                "discover: true lists streams of the configured domains: add a target with the domain"
            )
        return self


def parse_timestamp(text: object) -> float | None:
    """`20250518T173000Z` -> Unix seconds; None when malformed."""
    if not isinstance(text, str) or not _TIMESTAMP.match(text):
        return None
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@register
class SwiftFederation(Provider[SwiftFederationSource, SwiftFederationTarget]):
    name = "swiftfederation"
    Source = SwiftFederationSource
    default_base_url = "https://open-api.swiftfederation.com"
    default_rate_limits: ClassVar[Mapping[str, tuple[Window, ...]]] = {
        "default": (Window(100, 60.0), Window(1000, 3600.0))
    }

    def domains(self) -> list[str]:
        return sorted({t.domain for t in self.source.targets})

    def requests_per_cycle(self, batches: int) -> dict[str, int]:
        self.discovery_requests = len(self.domains())
        return super().requests_per_cycle(batches)

    async def _get(self, path: str, params: Mapping[str, str], endpoint: str) -> Response:
        """A signed GET; the URI signed is byte for byte the one sent."""
        query = urlencode(params, quote_via=quote, safe="")
        path_q = f"{urlsplit(self.base_url).path}{path}?{query}"
        url = URL(f"{self.base_url}{path}?{query}", encoded=True)
        host = urlsplit(self.base_url).netloc.rpartition("@")[2]
        creds = self.source.credentials
        headers = sfd_sign_headers(
            method="GET",
            url_path_with_query=path_q,
            host=host,
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret.get_secret_value(),
            now=datetime.fromtimestamp(self.clock.time(), UTC),
            nonce=random.randint(10000, 99999),
            fzone=self.source.fzone,
        )
        headers["Host"] = host
        r = await self.http.request("GET", url, endpoint=endpoint, headers=headers, check=False)
        if r.status in (400, 401, 403):
            raise self._vendor_error(r)
        raise_for_status(r, self.clock.time())
        return r

    @staticmethod
    def _vendor_error(r: Response) -> PollError:
        code = ""
        try:
            doc = r.json()
            if isinstance(doc, dict) and isinstance(doc.get("code"), str) and _VENDOR_CODE.match(doc["code"]):
                code = f" {doc['code']}"
        except ParseError:
            pass
        if r.status in (401, 403):
            return AuthError(f"{r.endpoint}: the vendor refused the request (HTTP {r.status}{code})")
        return UpstreamError(
            f"{r.endpoint}: the vendor rejected the request (HTTP {r.status}{code})", status=r.status
        )

    @staticmethod
    def _error_body(code: str, endpoint: str) -> PollError:
        """An error body `{code, message}` that came with HTTP 200."""
        shown = f" {code}" if _VENDOR_CODE.match(code) else ""
        what = f"{endpoint}: the vendor answered an error (HTTP 200{shown})"
        lowered = code.lower()
        if "limit" in lowered or "throttl" in lowered or "frequen" in lowered:
            return ThrottledError(what)
        if lowered.startswith(("signature.", "accesscredential.", "permission.")):
            return AuthError(what)
        return UpstreamError(what)

    async def poll(self, batch: Sequence[Target[SwiftFederationTarget]]) -> Mapping[str, Outcome]:
        (target,) = batch
        spec = target.spec
        parts = {
            "domain": spec.domain,
            "app": spec.app,
            "stream": spec.stream,
            "region": spec.region,
            "protocol": spec.protocol,
        }
        params = {k: v for k, v in parts.items() if v}
        r = await self._get(QUERY_PATH, params, "queryConcurrentViewers")
        return {target.key: self.parse(r.json())}

    def parse(self, doc: object) -> list[Sample]:
        answer = obj(doc, "answer")
        data = answer.get("data")
        if not isinstance(data, list):
            code = answer.get("code")
            if isinstance(code, str) and code:
                raise self._error_body(code, "queryConcurrentViewers")
            raise ParseError("queryConcurrentViewers: field data is not a list")
        points: list[tuple[float, float]] = []
        skipped = 0
        for item in data:
            when = parse_timestamp(item.get("timestamp")) if isinstance(item, dict) else None
            if when is None:
                skipped += 1
                continue
            try:
                points.append((when, count(item.get("concurrentViewers"), "concurrentViewers")))
            except ParseError:
                skipped += 1
        self.http.skipped(skipped)
        if not points:
            return []
        when, latest = max(points)
        return [
            Sample.of("livestream_concurrent_viewers", latest),
            Sample.of("livestream_peak_concurrent_viewers", max(v for _, v in points)),
            Sample.of("livestream_data_timestamp_seconds", when),
        ]

    async def discover(self) -> list[Target[SwiftFederationTarget]]:
        found: dict[str, Target[SwiftFederationTarget]] = {}
        for domain in self.domains():
            params = {"domain": domain, "status": "active", "streamingStatus": "streaming"}
            r = await self._get(LIST_PATH, params, "stream_list")
            answer = obj(r.json(), "answer")
            streams = answer.get("streams")
            if streams is None and "streams" in answer:
                streams = []  # present but null: none streaming
            if not isinstance(streams, list):
                # never read a failure as "no streams": that would remove every discovered series
                code = answer.get("code")
                if isinstance(code, str) and code:
                    raise self._error_body(code, "stream_list")
                raise ParseError("stream_list: field streams is not a list")
            for s in streams:
                if not isinstance(s, dict) or not s.get("stream"):
                    continue
                try:
                    spec = SwiftFederationTarget(
                        domain=sendable(s.get("domain") or domain, "domain"),
                        app=sendable(s.get("app") or "", "app") or None,
                        stream=sendable(s["stream"], "stream"),
                    )
                except (ParseError, ValidationError):
                    continue  # not a stream a request can name
                found[spec.key()] = Target.of(spec, Origin.DISCOVERY)
        return list(found.values())
