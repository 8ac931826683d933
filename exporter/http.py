"""One HTTP client per source: budget, timeout and request metrics in one place.

Providers call `request()` and get a `Response` or a typed `PollError`.  Error messages
name the endpoint (a fixed, short name such as `get_room_stats`), never the URL: some
vendors put credentials in the query string (Tencent's UserSig).
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import aiohttp
from yarl import URL

from exporter import __version__
from exporter.clock import Clock
from exporter.errors import AuthError, GoneError, ParseError, PollTimeout, ThrottledError, UpstreamError
from exporter.ratelimit import SourceLimiter
from exporter.state import Histogram, SourceStats, Store

USER_AGENT = f"livestream-exporter/{__version__}"
MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True)
class Response:
    endpoint: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            ctype = self.headers.get("Content-Type", "unknown").split(";")[0]
            raise ParseError(
                f"{self.endpoint}: answer is not valid JSON"
                f" (HTTP {self.status}, {ctype}, {len(self.body)} bytes)"
            ) from None


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP date is always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_wall)


class HttpClient:
    def __init__(
        self,
        *,
        limiter: SourceLimiter,
        stats: SourceStats,
        store: Store,
        clock: Clock,
        timeout: float,
    ) -> None:
        self.limiter = limiter
        self.stats = stats
        self._store = store
        self._clock = clock
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        #: time spent waiting for the budget, so poll durations can leave it out
        self.wait_seconds = 0.0

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": USER_AGENT},
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _count(self, endpoint: str, code: str, duration: float) -> None:
        self.stats.requests[(endpoint, code)] += 1
        self.stats.durations.setdefault(endpoint, Histogram()).observe(duration)
        self._store.bump()

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        endpoint: str,
        bucket: str = "default",
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
        check: bool = True,
    ) -> Response:
        """Send one request within the budget.

        With `check`, 401/403 raise AuthError, 404 GoneError, 429 ThrottledError (with
        Retry-After), 5xx and other non-2xx UpstreamError.  Without it the provider
        reads the status itself (for vendors that explain errors in the body).
        """
        before = self._clock.monotonic()
        if await self.limiter.acquire(bucket):
            self.stats.limiter_waits += 1
            self._store.bump()
        self.wait_seconds += self._clock.monotonic() - before
        session = self._session_or_new()
        start = self._clock.monotonic()
        try:
            async with session.request(
                method, url, params=params, headers=headers, json=json, data=data
            ) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise ParseError(f"{endpoint}: answer larger than {MAX_BODY} bytes")
                response = Response(endpoint, resp.status, dict(resp.headers), body)
        except TimeoutError:
            self._count(endpoint, "timeout", self._clock.monotonic() - start)
            raise PollTimeout(f"{endpoint}: no answer within {self._timeout:g}s") from None
        except aiohttp.ClientPayloadError:
            self._count(endpoint, "error", self._clock.monotonic() - start)
            raise ParseError(f"{endpoint}: answer cut short") from None
        except aiohttp.ClientError as e:
            self._count(endpoint, "error", self._clock.monotonic() - start)
            raise UpstreamError(f"{endpoint}: request failed ({type(e).__name__})") from None
        except asyncio.CancelledError:
            raise
        self._count(endpoint, str(response.status), self._clock.monotonic() - start)
        if check:
            raise_for_status(response, self._clock.time())
        return response


def raise_for_status(r: Response, now_wall: float) -> None:
    s = r.status
    if 200 <= s < 300:
        return
    if s in (401, 403):
        raise AuthError(f"{r.endpoint}: the vendor refused the credentials (HTTP {s})")
    if s == 404:
        raise GoneError(f"{r.endpoint}: not found (HTTP 404)")
    if s == 429:
        retry = parse_retry_after(r.headers.get("Retry-After"), now_wall)
        hint = f", retry after {retry:g}s" if retry is not None else ""
        raise ThrottledError(f"{r.endpoint}: throttled (HTTP 429{hint})", retry)
    raise UpstreamError(f"{r.endpoint}: HTTP {s}", s)
