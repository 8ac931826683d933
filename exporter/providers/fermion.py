"""Fermion live event session stats.

`POST {base_url}/public/get-live-event-session-stats` with `FERMION-API-KEY`; the body is a
list of calls, one per session, and the answer a list of outputs, in the same order.

    livestream_concurrent_viewers          currentActivelyWatchingDistinctUserCount
    livestream_peak_concurrent_viewers     peakConcurrentUsers
    livestream_unique_viewers              uniqueUsersCount
    livestream_messages_total              totalMessagesSentCount
    livestream_instructor_messages_total   instructorMessagesSentCount
    livestream_polls_total                 pollsConductedCount
    livestream_duration_seconds            estimatedStreamDurationInMinutes x 60
    livestream_started_timestamp_seconds   streamStartedAt
    livestream_ended_timestamp_seconds     streamEndedAt (when set)
    livestream_live                        1 while streamEndedAt is null

Whether several calls in one request are answered one for one is not documented, so with
`batch_size` > 1 an answer whose output count differs makes the source fall back to one
session per request (logged once), and the batch is polled again one by one.
`topUsersByWatchTime` (emails, names) is personal data: it is never read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from exporter.config import CredentialsBase, SourceBase, TargetBase
from exporter.errors import AuthError, GoneError, ParseError, PollError
from exporter.providers import register
from exporter.providers.base import Outcome, Provider, Sample, Target
from exporter.providers.parse import iso_time, number, obj, optional_time
from exporter.ratelimit import Window

ENDPOINT = "get-live-event-session-stats"
#: the smallest top-user list: the exporter has no use for it (personal data)
TOP_USER_COUNT = 1
_AUTH_MESSAGE = re.compile(r"school not found|api[ -]?key|unauthori[sz]ed|forbidden", re.I)

COUNTS = (
    ("livestream_concurrent_viewers", "currentActivelyWatchingDistinctUserCount"),
    ("livestream_peak_concurrent_viewers", "peakConcurrentUsers"),
    ("livestream_unique_viewers", "uniqueUsersCount"),
    ("livestream_messages_total", "totalMessagesSentCount"),
    ("livestream_instructor_messages_total", "instructorMessagesSentCount"),
    ("livestream_polls_total", "pollsConductedCount"),
)


class FermionCredentials(CredentialsBase):
    api_key: SecretStr


class FermionTarget(TargetBase):
    live_event_session_id: str = Field(min_length=1)

    def key(self) -> str:
        return self.live_event_session_id


class FermionSource(SourceBase):
    credentials: FermionCredentials
    targets: tuple[FermionTarget, ...] = ()
    batch_size: int = Field(default=1, ge=1, le=100)


@register
class Fermion(Provider):
    name = "fermion"
    Source = FermionSource
    default_base_url = "https://backend.codedamn.com/api"
    default_rate_limits: ClassVar[Mapping[str, tuple[Window, ...]]] = {"default": (Window(60, 60.0),)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.source, FermionSource)
        self._batch_size = self.source.batch_size

    def batch_size(self) -> int:
        return self._batch_size

    async def _request(self, batch: Sequence[Target]) -> list[Any]:
        assert isinstance(self.source, FermionSource)
        body = {
            "data": [{"data": {"liveEventSessionId": t.key, "topUserCount": TOP_USER_COUNT}} for t in batch]
        }
        r = await self.http.request(
            "POST",
            f"{self.base_url}/public/{ENDPOINT}",
            endpoint=ENDPOINT,
            headers={"FERMION-API-KEY": self.source.credentials.api_key.get_secret_value()},
            json=body,
        )
        doc = r.json()
        if not isinstance(doc, list):
            raise ParseError(f"{ENDPOINT}: the answer is not a list")
        return doc

    async def poll(self, batch: Sequence[Target]) -> Mapping[str, Outcome]:
        outputs = await self._request(batch)
        if len(outputs) != len(batch):
            if len(batch) == 1:
                raise ParseError(f"{ENDPOINT}: {len(outputs)} outputs for 1 session")
            self.log.warning(
                "the vendor answered a batch with a different number of outputs;"
                " falling back to one session per request",
                sent=len(batch),
                received=len(outputs),
            )
            self._batch_size = 1
            result: dict[str, Outcome] = {}
            for t in batch:
                try:
                    result.update(await self.poll([t]))
                except PollError as e:
                    result[t.key] = e
            return result
        return {t.key: self.parse(out) for t, out in zip(batch, outputs, strict=True)}

    def parse(self, item: object) -> Outcome:
        """One session's output: its samples, or the error for that session only."""
        try:
            output = obj(obj(item, "output item").get("output"), "output")
            if output.get("status") != "ok":
                message = str(output.get("errorMessage") or "")
                if _AUTH_MESSAGE.search(message):
                    return AuthError(f"{ENDPOINT}: the vendor refused the API key")
                return GoneError(
                    f"{ENDPOINT}: the vendor answered status"
                    f" {str(output.get('status'))[:20]!r} for the session"
                )
            data = obj(output.get("data"), "output.data")
            samples = [Sample.of(metric, number(data.get(field), field)) for metric, field in COUNTS]
            minutes = data.get("estimatedStreamDurationInMinutes")
            if minutes is not None:
                samples.append(
                    Sample.of(
                        "livestream_duration_seconds",
                        number(minutes, "estimatedStreamDurationInMinutes") * 60,
                    )
                )
            started = optional_time(data.get("streamStartedAt"), "streamStartedAt")
            if started is not None:
                samples.append(Sample.of("livestream_started_timestamp_seconds", started))
            ended = data.get("streamEndedAt")
            if ended:
                samples.append(
                    Sample.of("livestream_ended_timestamp_seconds", iso_time(ended, "streamEndedAt"))
                )
            samples.append(Sample.of("livestream_live", 0.0 if ended else 1.0))
            return samples
        except ParseError as e:
            return e
