"""One HTTP client per source: budget, timeout and request reporting in one place.

Providers see it as a `Transport`; it reports every request to a `RequestObserver`
(the source's runner), never to the store.  A request holds its place in the budget from
the moment it is sent until the vendor's answer starts to arrive (its status line: the
vendor has counted the request by then), or the timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import aiohttp
from yarl import URL

from exporter import __version__
from exporter.engine.limiter import SourceLimiter
from exporter.model.clock import Clock, Overtime, within
from exporter.model.errors import ParseError, PollTimeout, UpstreamError
from exporter.providers.transport import Response, raise_for_status

USER_AGENT = f"livestream-exporter/{__version__}"
MAX_BODY = 8 * 1024 * 1024
_READ_SIZE = 64 * 1024
#: aiohttp's own timeout, a safety net behind the clock's (which tests can move)
_NET_SLACK = 1.0

T = TypeVar("T")


class RequestObserver(Protocol):
    def request_started(self) -> None:
        """A request left (it holds its place in the budget until `request_done`)."""

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
                timeout=aiohttp.ClientTimeout(total=self._timeout + _NET_SLACK),
                headers={"User-Agent": USER_AGENT},
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        ticket = await self.limiter.acquire(bucket)
        if ticket.waited:
            self._observer.limiter_waited()
        self.wait_seconds += self._clock.monotonic() - before
        start = self._clock.monotonic()
        self._observer.request_started()
        code = "error"
        held = [ticket]

        def answered() -> None:
            if held:
                self.limiter.release(held.pop())

        try:
            response = await self._within_timeout(
                self._exchange(method, url, endpoint, answered, params=params, headers=headers, json=json)
            )
            code = str(response.status)
        except (Overtime, TimeoutError):
            code = "timeout"
            raise PollTimeout(f"{endpoint}: no answer within {self._timeout:g}s") from None
        except aiohttp.ClientPayloadError:
            raise UpstreamError(f"{endpoint}: the answer was cut short") from None
        except aiohttp.ClientError as e:
            raise UpstreamError(f"{endpoint}: request failed ({type(e).__name__})") from None
        finally:
            answered()  # also when cancelled or timed out: the request may have reached the vendor
            self._observer.request_done(endpoint, code, self._clock.monotonic() - start)
        if check:
            raise_for_status(response, self._clock.time())
        return response

    async def _exchange(
        self,
        method: str,
        url: str | URL,
        endpoint: str,
        answered: Callable[[], None],
        *,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        json: Any,
    ) -> Response:
        """Send and read the whole answer, however it is cut into pieces on the way;
        `answered` is called as soon as the answer's status line is in."""
        session = self._session_or_new()
        async with session.request(method, url, params=params, headers=headers, json=json) as resp:
            answered()
            body = bytearray()
            async for piece in resp.content.iter_chunked(_READ_SIZE):
                body += piece
                if len(body) > MAX_BODY:
                    raise ParseError(f"{endpoint}: answer larger than {MAX_BODY} bytes")
            return Response(endpoint, resp.status, dict(resp.headers), bytes(body))

    async def _within_timeout(self, work: Awaitable[T]) -> T:
        """`work`, or Overtime once the clock says the timeout has passed."""
        return await within(self._clock, self._timeout, work)
