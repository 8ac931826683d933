"""Gjirafa VP analytics: audio and video live consumption per project.

`GET {base_url}/api/v1/projects/{projectId}/dashboard/{audio|video}LiveConsumption?intervalLength=N`
with the API key in a configurable header (default `Authorization: Bearer <key>`).

    livestream_concurrent_viewers        uniqueViewers of the latest interval
    livestream_peak_concurrent_viewers   max uniqueViewers over the returned intervals
    livestream_unique_viewers            result.total
    livestream_data_timestamp_seconds    date of the latest interval (no zone means UTC)

The envelope's `success: false` or a non-empty `errors` is a failure even with HTTP 200.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal
from urllib.parse import quote

from pydantic import Field

from exporter.config.registry import register
from exporter.config.schema import CredentialsBase, Secret, SourceBase, TargetBase
from exporter.model.errors import AuthError, ParseError, PollError, ThrottledError, UpstreamError
from exporter.model.samples import Outcome, Sample, Target
from exporter.model.windows import Window
from exporter.providers.base import Provider
from exporter.providers.parse import count, iso_time, obj


class GjirafaCredentials(CredentialsBase):
    api_key: Secret


class GjirafaTarget(TargetBase):
    project_id: str = Field(min_length=1)
    media: Literal["audio", "video"] = "audio"
    interval_length: int = Field(default=5, ge=1, le=1440)

    def key(self) -> str:
        return f"{self.project_id}/{self.media}"


class GjirafaSource(SourceBase):
    credentials: GjirafaCredentials
    targets: tuple[GjirafaTarget, ...] = ()
    auth_header: str = Field(default="Authorization", min_length=1, pattern=r"^[A-Za-z0-9-]+$")
    auth_scheme: str = "Bearer"


@register
class Gjirafa(Provider[GjirafaSource, GjirafaTarget]):
    name = "gjirafa"
    Source = GjirafaSource
    default_base_url = None
    default_rate_limits: ClassVar[Mapping[str, tuple[Window, ...]]] = {"default": (Window(60, 60.0),)}

    def _headers(self) -> dict[str, str]:
        src = self.source
        key = src.credentials.api_key.get_secret_value()
        return {
            src.auth_header: f"{src.auth_scheme} {key}" if src.auth_scheme else key,
            "Accept": "application/json",
        }

    async def poll(self, batch: Sequence[Target[GjirafaTarget]]) -> Mapping[str, Outcome]:
        (target,) = batch
        spec = target.spec
        endpoint = f"{spec.media}LiveConsumption"
        url = f"{self.base_url}/api/v1/projects/{quote(spec.project_id, safe='')}/dashboard/{endpoint}"
        r = await self.http.request(
            "GET",
            url,
            endpoint=endpoint,
            params={"intervalLength": str(spec.interval_length)},
            headers=self._headers(),
        )
        return {target.key: self.parse(r.json(), endpoint)}

    @staticmethod
    def _failure(env: Mapping[str, object], errors: object, endpoint: str) -> PollError:
        """The envelope's failure; its `statusCode` tells throttling and refused keys apart."""
        n = len(errors) if isinstance(errors, list) else 1
        code = env.get("statusCode")
        status = code if isinstance(code, int) and not isinstance(code, bool) else None
        flag = "false" if env.get("success") is False else "true"
        what = f"{endpoint}: the vendor reported failure (success={flag}, {n} error(s)"
        what += f", statusCode {status})" if status is not None else ")"
        if status == 429:
            return ThrottledError(what)
        if status in (401, 403):
            return AuthError(what)
        return UpstreamError(what, status=status if status is not None and status >= 500 else None)

    def parse(self, doc: object, endpoint: str) -> list[Sample]:
        env = obj(doc, "envelope")
        errors = env.get("errors") or []
        if env.get("success") is False or errors:
            raise self._failure(env, errors, endpoint)
        result = obj(env.get("result"), "result")
        samples = [Sample.of("livestream_unique_viewers", count(result.get("total"), "result.total"))]
        intervals = result.get("liveViewers") or []
        if not isinstance(intervals, list):
            raise ParseError(f"{endpoint}: field result.liveViewers is not a list")
        points: list[tuple[float, float]] = []
        skipped = 0
        for item in intervals:
            try:
                entry = obj(item, "liveViewers[]")
                points.append(
                    (iso_time(entry.get("date"), "date"), count(entry.get("uniqueViewers"), "uniqueViewers"))
                )
            except ParseError:
                skipped += 1
        self.http.skipped(skipped)
        if points:
            when, latest = max(points)
            samples += [
                Sample.of("livestream_concurrent_viewers", latest),
                Sample.of("livestream_peak_concurrent_viewers", max(v for _, v in points)),
                Sample.of("livestream_data_timestamp_seconds", when),
            ]
        return samples
