"""One HTTP client per source: budget, timeout and request reporting in one place.

Providers see it as a `Transport`; it reports every request to a `RequestObserver`
(the source's runner), never to the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
from yarl import URL

from exporter import __version__
from exporter.engine.limiter import SourceLimiter
from exporter.model.clock import Clock
from exporter.model.errors import ParseError, PollTimeout, UpstreamError
from exporter.providers.transport import Response, raise_for_status

USER_AGENT = f"livestream-exporter/{__version__}"
MAX_BODY = 8 * 1024 * 1024


class RequestObserver(Protocol):
    def request_done(self, endpoint: str, code: str, duration: float) -> None:
        """A request ended: `code` is the HTTP status, `timeout` or `error`."""

    def limiter_waited(self) -> None:
        """The budget held a request back."""

    def points_skipped(self, points: int) -> None:
        """A provider skipped malformed vendor data points."""


class HttpClient:
    def __init__(
        self,
        *,
        limiter: SourceLimiter,
        observer: RequestObserver,
        clock: Clock,
        timeout: float,
    ) -> None:
        self.limiter = limiter
        self._observer = observer
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
        self._observer.request_done(endpoint, code, duration)

    def pause_for_window(self, bucket: str = "default") -> None:
        self.limiter.pause_for_window(bucket)

    def skipped(self, points: int) -> None:
        if points:
            self._observer.points_skipped(points)

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
        check: bool = True,
    ) -> Response:
        """Send one request within the budget (see `Transport.request`)."""
        before = self._clock.monotonic()
        if await self.limiter.acquire(bucket):
            self._observer.limiter_waited()
        self.wait_seconds += self._clock.monotonic() - before
        session = self._session_or_new()
        start = self._clock.monotonic()
        try:
            async with session.request(method, url, params=params, headers=headers, json=json) as resp:
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
