"""Cloudflare RealtimeKit livestreams.

    GET {base_url}/accounts/{account_id}/realtime/kit/{app_id}/livestreams      discovery, paged
    GET .../livestreams/{livestream_id}/active-livestream-session                per target
    GET .../livestreams/{livestream_id}?page_no=&per_page=1                      when no session is active
    GET .../analytics/livestreams/overall?start_time=&end_time=                  app level

    livestream_viewer_seconds_total        session viewer_seconds
    livestream_ingest_seconds_total        session ingest_seconds
    livestream_started_timestamp_seconds   session started_time
    livestream_ended_timestamp_seconds     session stopped_time (when set)
    livestream_live                        1 when status is LIVE
    livestream_status{status}              1 for the current of LIVE, IDLE, ERRORED, INVOKED, 0 for the others
    livestream_stream_info{name}           the livestream's name
    livestream_app_livestreams             analytics overall count
    livestream_app_viewer_seconds_total    total_viewer_seconds
    livestream_app_ingest_seconds_total    total_ingest_seconds

Analytics overall covers the range it is asked for, and without `start_time` its range is
not documented (it may be a rolling window, whose totals fall).  The exporter asks for
everything: from 1970-01-01T00:00:00Z to now, so the app totals are cumulative counters.

Without an active session, `GET livestreams/{id}` pages through the livestream's sessions
and its `session` is the first of the page, whose order is not documented: the exporter asks
for one session a page, reads page 1 and, when there are more, the last page too, and keeps
the session that started last.

Numbers may arrive as strings; the list's `data` may be an array with `paging` beside it or
one object (one livestream a page) with `paging` inside: pages are followed until
`paging.end_offset` reaches `total_count` (without paging, while pages are full).  A
livestream is gone when the livestream itself is not found (or, with discovery, when the
list stops returning it).  `success: false` is a failure even on HTTP 200, and throttling
(error 971) whether it comes as a 429 or on HTTP 200.  `X-RateLimit-Remaining: 0` pauses
the source until the shortest window has passed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import Field, ValidationError

from exporter.config.registry import register
from exporter.config.schema import CredentialsBase, DiscoveringSource, Secret, TargetBase
from exporter.model.errors import AuthError, GoneError, ParseError, ThrottledError, UpstreamError
from exporter.model.samples import Origin, Outcome, Sample, Target
from exporter.model.windows import Window
from exporter.providers.base import Provider
from exporter.providers.parse import count, number, obj, optional_time, sendable
from exporter.providers.transport import Response, parse_retry_after, raise_for_status

STATUSES = ("LIVE", "IDLE", "ERRORED", "INVOKED")
PER_PAGE = 100
#: a bound on one discovery, should paging never end (the object form has one livestream a page)
MAX_PAGES = 1000
#: Cloudflare's "Please wait and consider throttling your request speed"
THROTTLED_CODE = 971
#: where the app-level analytics range starts: before any app existed, so the totals are cumulative
ANALYTICS_START = "1970-01-01T00:00:00.000Z"
#: a bound on a livestream's session count as read from paging (a page number is sent from it)
MAX_SESSIONS = 10**9
#: a vendor error code as the exporter reads it
_CODE = re.compile(r"[0-9]{1,9}")
#: the session times that tell which session is the latest, best first
SESSION_TIMES = ("started_time", "invoked_time", "created_at")


class CloudflareCredentials(CredentialsBase):
    api_token: Secret


class CloudflareTarget(TargetBase):
    livestream_id: str = Field(min_length=1)

    def key(self) -> str:
        return self.livestream_id


class CloudflareSource(DiscoveringSource):
    credentials: CloudflareCredentials
    targets: tuple[CloudflareTarget, ...] = ()
    account_id: str = Field(min_length=1)
    app_id: str = Field(min_length=1)


@register
class Cloudflare(Provider[CloudflareSource, CloudflareTarget]):
    name = "cloudflare"
    Source = CloudflareSource
    default_base_url = "https://api.cloudflare.com/client/v4"
    default_rate_limits: ClassVar[Mapping[str, tuple[Window, ...]]] = {
        "default": (Window(250, 10.0), Window(1200, 300.0))
    }
    has_app_metrics = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the latest end_time asked of analytics overall: never earlier, even if the clock steps back
        self._analytics_end = -math.inf

    def _app_url(self) -> str:
        s = self.source
        return (
            f"{self.base_url}/accounts/{quote(s.account_id, safe='')}/realtime/kit/{quote(s.app_id, safe='')}"
        )

    async def _get(self, path: str, endpoint: str, params: Mapping[str, str] | None = None) -> Response:
        headers = {"Authorization": f"Bearer {self.source.credentials.api_token.get_secret_value()}"}
        r = await self.http.request(
            "GET", self._app_url() + path, endpoint=endpoint, params=params, headers=headers, check=False
        )
        remaining = r.headers.get("X-RateLimit-Remaining")
        if remaining is not None and remaining.strip() == "0":
            self.http.pause_for_window()
        if r.status in (401, 403):
            raise AuthError(f"{endpoint}: the vendor refused the token (HTTP {r.status})")
        raise_for_status(r, self.clock.time())
        return r

    def _envelope(self, r: Response) -> Mapping[str, Any]:
        doc = obj(r.json(), "answer")
        if doc.get("success") is False:
            codes = _error_codes(doc)
            if THROTTLED_CODE in codes:
                retry = parse_retry_after(r.headers.get("Retry-After"), self.clock.time())
                raise ThrottledError(f"{r.endpoint}: throttled (error {THROTTLED_CODE})", retry)
            shown = f", error {', '.join(str(c) for c in codes)}" if codes else ""
            raise UpstreamError(f"{r.endpoint}: the vendor reported failure (success=false{shown})")
        return doc

    async def discover(self) -> list[Target[CloudflareTarget]]:
        found: dict[str, Target[CloudflareTarget]] = {}
        pages = 0
        last_end: float | None = None
        for page in range(1, MAX_PAGES + 1):
            r = await self._get(
                "/livestreams", "livestreams", {"page_no": str(page), "per_page": str(PER_PAGE)}
            )
            pages += 1
            doc = self._envelope(r)
            data = doc.get("data")
            items: list[Any]
            if isinstance(data, list):
                items, paging = data, doc.get("paging")
            elif isinstance(data, dict):
                # one livestream per page, paging inside (or beside) it; `{paging}` alone past the end
                items = [data] if data.get("id") else []
                paging = data.get("paging", doc.get("paging"))
            elif data is None:
                items, paging = [], None
            else:
                raise ParseError("livestreams: field data is neither a list nor an object")
            before = len(found)
            for item in items:
                if isinstance(item, dict) and item.get("id"):
                    try:
                        spec = CloudflareTarget(livestream_id=sendable(item["id"], "id"))
                    except (ParseError, ValidationError):
                        continue  # not an id a request can carry
                    info = {"name": str(item.get("name") or ""), "status": str(item.get("status") or "")}
                    found[spec.key()] = Target.of(spec, Origin.DISCOVERY, info)
            if not items or not self._more_pages(paging, len(found), len(items), isinstance(data, list)):
                break
            # A vendor that ignores page_no answers the same page again: its paging does not move
            # on (or, without paging, the page has no livestream not seen yet).  Following it
            # would spend MAX_PAGES requests every discovery.
            end = _end_offset(paging)
            if (end is not None and last_end is not None and end <= last_end) or (
                end is None and len(found) == before
            ):
                self.log.warning(
                    "the livestream list answered the same page again; paging stopped", pages=pages
                )
                break
            last_end = end
        else:
            self.log.warning("livestream list longer than the pages followed", pages=MAX_PAGES)
        self.discovery_requests = pages
        return list(found.values())

    @staticmethod
    def _more_pages(paging: Any, found: int, on_page: int, array: bool) -> bool:
        """Whether the list goes on after this page: by `paging` when given, else by a full page."""
        if isinstance(paging, dict):
            total = paging.get("total_count")
            end = paging.get("end_offset")
            if total is not None:
                total_n = number(total, "paging.total_count")
                if end is not None:
                    return number(end, "paging.end_offset") < total_n
                return found < total_n
        return array and on_page >= PER_PAGE

    async def poll(self, batch: Sequence[Target[CloudflareTarget]]) -> Mapping[str, Outcome]:
        (target,) = batch
        lid = quote(target.key, safe="")
        try:
            r = await self._get(f"/livestreams/{lid}/active-livestream-session", "active_livestream_session")
            data = obj(self._envelope(r).get("data"), "data")
        except GoneError:
            # No active session: the livestream itself says whether it still exists.
            data = await self._latest_session(lid)
        return {target.key: self.parse(data, target)}

    async def _session_page(self, lid: str, page: int) -> tuple[Mapping[str, Any], Any]:
        """One page of `GET livestreams/{id}` with one session a page: its data and paging."""
        r = await self._get(f"/livestreams/{lid}", "livestream", {"page_no": str(page), "per_page": "1"})
        doc = self._envelope(r)
        data = obj(doc.get("data"), "data")
        return data, data.get("paging", doc.get("paging"))

    async def _latest_session(self, lid: str) -> Mapping[str, Any]:
        """The livestream with its latest session: page 1 and, with more sessions, the last page
        (the order is not documented), whichever session started later."""
        first, paging = await self._session_page(lid, 1)
        total = _mapping(paging).get("total_count")
        sessions = count(total, "paging.total_count") if total is not None else 0.0
        if sessions <= 1:
            return first
        if sessions != int(sessions) or sessions > MAX_SESSIONS:
            raise ParseError("livestream: field paging.total_count is not a session count")
        last, _ = await self._session_page(lid, int(sessions))
        if _mapping(last.get("session")) and _began(last) >= _began(first):
            return last
        return first

    def parse(self, data: Mapping[str, Any], target: Target[CloudflareTarget]) -> list[Sample]:
        livestream = _mapping(data.get("livestream"))
        session = _mapping(data.get("session"))
        status = str(livestream.get("status") or target.info.get("status") or "").upper()
        samples = [Sample.of("livestream_live", 1.0 if status == "LIVE" else 0.0)]
        if status in STATUSES:
            samples += [
                Sample.of("livestream_status", 1.0 if s == status else 0.0, status=s) for s in STATUSES
            ]
        for metric, field in (
            ("livestream_viewer_seconds_total", "viewer_seconds"),
            ("livestream_ingest_seconds_total", "ingest_seconds"),
        ):
            if session.get(field) is not None:
                samples.append(Sample.of(metric, count(session[field], f"session.{field}")))
        started = optional_time(session.get("started_time"), "session.started_time")
        if started is not None:
            samples.append(Sample.of("livestream_started_timestamp_seconds", started))
        stopped = optional_time(session.get("stopped_time"), "session.stopped_time")
        if stopped is not None:
            samples.append(Sample.of("livestream_ended_timestamp_seconds", stopped))
        name = livestream.get("name") or target.info.get("name")
        if name:
            samples.append(Sample.of("livestream_stream_info", 1.0, name=str(name)))
        return samples

    async def poll_app(self) -> Sequence[Sample]:
        # everything from the start of time to now: cumulative totals, never a rolling window
        self._analytics_end = max(self._analytics_end, self.clock.time())
        r = await self._get(
            "/analytics/livestreams/overall",
            "analytics_overall",
            {"start_time": ANALYTICS_START, "end_time": _iso(self._analytics_end)},
        )
        data = obj(self._envelope(r).get("data"), "data")
        # a missing field is a parse error, never a 0 (a counter at 0 reads as a reset)
        return [
            Sample.of("livestream_app_livestreams", count(data.get("count"), "count")),
            Sample.of(
                "livestream_app_viewer_seconds_total",
                count(data.get("total_viewer_seconds"), "total_viewer_seconds"),
            ),
            Sample.of(
                "livestream_app_ingest_seconds_total",
                count(data.get("total_ingest_seconds"), "total_ingest_seconds"),
            ),
        ]


def _end_offset(paging: Any) -> float | None:
    """`paging.end_offset`, when the answer has it."""
    if isinstance(paging, dict) and paging.get("end_offset") is not None:
        return number(paging["end_offset"], "paging.end_offset")
    return None


def _iso(when: float) -> str:
    """2025-10-29T12:05:38.367Z: ISO 8601 in UTC, to the millisecond, as the vendor writes times."""
    moment = datetime.fromtimestamp(when, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _began(data: Mapping[str, Any]) -> float:
    """When the answer's session began (its first readable time), -inf when none is readable."""
    session = _mapping(data.get("session"))
    for field in SESSION_TIMES:
        try:
            when = optional_time(session.get(field), f"session.{field}")
        except ParseError:
            continue
        if when is not None:
            return when
    return -math.inf


def _mapping(value: Any) -> Mapping[str, Any]:
    """An optional object of the answer: absent or null reads as empty."""
    return value if isinstance(value, Mapping) else {}


def _error_codes(doc: Mapping[str, Any]) -> list[int]:
    """Codes of `{errors: [{code, message}]}` and of the older `{error: {code, message}}`."""
    entries: list[Any] = []
    if isinstance(doc.get("errors"), list):
        entries += doc["errors"]
    if isinstance(doc.get("error"), dict):
        entries.append(doc["error"])
    codes = []
    for e in entries:
        code = e.get("code") if isinstance(e, dict) else None
        text = str(code).strip() if isinstance(code, int | str) else ""
        # ASCII digits only ("²" is a digit to str.isdigit, not to int), few enough for an int
        if _CODE.fullmatch(text):
            codes.append(int(text))
    return codes
