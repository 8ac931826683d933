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
    livestream_live                        1 while streamEndedAt is null (once started)

Whether several calls in one request are answered one for one is not documented, so with
`batch_size` > 1 an answer whose output count differs makes the source fall back to one
session per request (logged once), and the batch is polled again one by one; a lone
error output failing the whole request (bad key, too many requests, "something went wrong")
is not such an answer.
An error output is an error for its session only: a refused key is an auth error, "too many
requests" throttling, "something went wrong" a transient failure (values kept), and any
other error (e.g. "session not found") means the session is gone (its series removed).
`topUsersByWatchTime` (emails, names) is personal data: it is never read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field

from exporter.config.registry import register
from exporter.config.schema import CredentialsBase, Secret, SourceBase, TargetBase
from exporter.model.errors import AuthError, GoneError, ParseError, PollError, ThrottledError, UpstreamError
from exporter.model.samples import Outcome, Sample, Target
from exporter.model.windows import Window
from exporter.providers.base import Provider
from exporter.providers.parse import count, iso_time, obj, optional_time

ENDPOINT = "get-live-event-session-stats"
#: the smallest top-user list: the exporter has no use for it (personal data)
TOP_USER_COUNT = 1
_AUTH_MESSAGE = re.compile(r"school not found|api[ -]?key|unauthori[sz]ed|forbidden", re.I)
_THROTTLE_MESSAGE = re.compile(r"too many requests|rate limit|too frequent", re.I)
_TRANSIENT_MESSAGE = re.compile(r"something went wrong|internal (server )?error|try again", re.I)

COUNTS = (
    ("livestream_concurrent_viewers", "currentActivelyWatchingDistinctUserCount"),
    ("livestream_peak_concurrent_viewers", "peakConcurrentUsers"),
    ("livestream_unique_viewers", "uniqueUsersCount"),
    ("livestream_messages_total", "totalMessagesSentCount"),
    ("livestream_instructor_messages_total", "instructorMessagesSentCount"),
    ("livestream_polls_total", "pollsConductedCount"),
)


class FermionCredentials(CredentialsBase):
    api_key: Secret


class FermionTarget(TargetBase):
    live_event_session_id: str = Field(min_length=1)

    def key(self) -> str:
        return self.live_event_session_id


class FermionSource(SourceBase):
    credentials: FermionCredentials
    targets: tuple[FermionTarget, ...] = ()
    batch_size: int = Field(default=1, ge=1, le=100)


@register
class Fermion(Provider[FermionSource, FermionTarget]):
    name = "fermion"
    Source = FermionSource
    default_base_url = "https://backend.codedamn.com/api"
    default_rate_limits: ClassVar[Mapping[str, tuple[Window, ...]]] = {"default": (Window(60, 60.0),)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_size = self.source.batch_size
        self._fell_back = False

    def batch_size(self) -> int:
        return self._batch_size

    async def _request(self, batch: Sequence[Target[FermionTarget]]) -> list[Any]:
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

    async def poll(self, batch: Sequence[Target[FermionTarget]]) -> Mapping[str, Outcome]:
        if len(batch) > self._batch_size:
            # planned before the fallback (the rest of the current cycle): one by one
            return await self._one_by_one(batch)
        outputs = await self._request(batch)
        if len(outputs) != len(batch):
            if len(batch) == 1:
                raise ParseError(f"{ENDPOINT}: {len(outputs)} outputs for 1 session")
            whole = self._request_error(outputs)
            if whole is not None:
                raise whole  # a refusal of the whole request, not an answer per call
            if not self._fell_back:
                self._fell_back = True
                self.log.warning(
                    "the vendor answered a batch with a different number of outputs;"
                    " falling back to one session per request",
                    sent=len(batch),
                    received=len(outputs),
                )
            self._batch_size = 1
            return await self._one_by_one(batch)
        return {t.key: self.parse(out) for t, out in zip(batch, outputs, strict=True)}

    async def _one_by_one(self, batch: Sequence[Target[FermionTarget]]) -> Mapping[str, Outcome]:
        result: dict[str, Outcome] = {}
        for t in batch:
            try:
                result.update(await self.poll([t]))
            except PollError as e:
                result[t.key] = e
        return result

    def _request_error(self, outputs: list[Any]) -> PollError | None:
        """The error of a lone error output that fails the whole request (key, throttling, failure)."""
        if len(outputs) != 1:
            return None
        outcome = self.parse(outputs[0])
        if isinstance(outcome, AuthError | ThrottledError | UpstreamError):
            return outcome
        return None

    def parse(self, item: object) -> Outcome:
        """One session's output: its samples, or the error for that session only."""
        try:
            output = obj(obj(item, "output item").get("output"), "output")
            if output.get("status") != "ok":
                message = str(output.get("errorMessage") or "")
                if _AUTH_MESSAGE.search(message):
                    return AuthError(f"{ENDPOINT}: the vendor refused the API key")
                if _THROTTLE_MESSAGE.search(message):
                    return ThrottledError(f"{ENDPOINT}: the vendor says too many requests")
                if _TRANSIENT_MESSAGE.search(message):
                    return UpstreamError(
                        f"{ENDPOINT}: the vendor failed for the session (error output)", transient=True
                    )
                return GoneError(
                    f"{ENDPOINT}: the vendor answered status"
                    f" {str(output.get('status'))[:20]!r} for the session"
                )
            data = obj(output.get("data"), "output.data")
            samples = [Sample.of(metric, count(data.get(field), field)) for metric, field in COUNTS]
            minutes = data.get("estimatedStreamDurationInMinutes")
            if minutes is not None:
                samples.append(
                    Sample.of(
                        "livestream_duration_seconds",
                        count(minutes, "estimatedStreamDurationInMinutes") * 60,
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
            # live: started and not ended (a session not yet started is not live)
            samples.append(Sample.of("livestream_live", 1.0 if started is not None and not ended else 0.0))
            return samples
        except ParseError as e:
            return e
