"""What a provider may ask of the engine: send a request within the budget, and two hints.

The engine's HTTP client implements `Transport`; providers see only this, so they never
touch budgets, sessions or metrics themselves.  Error messages name the endpoint (a fixed,
short name such as `get_room_stats`), never the URL: some vendors put credentials in the
query string (Tencent's UserSig).
"""

from __future__ import annotations

import email.utils
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Protocol

from yarl import URL

from exporter.model.errors import AuthError, GoneError, ParseError, ThrottledError, UpstreamError


@dataclass(frozen=True)
class Response:
    endpoint: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            ctype = self.headers.get("Content-Type", "unknown").split(";")[0]
            raise ParseError(
                f"{self.endpoint}: answer is not valid JSON"
                f" (HTTP {self.status}, {ctype}, {len(self.body)} bytes)"
            ) from None


class Transport(Protocol):
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
        """Send one request within the budget of `bucket`.

        With `check`, 401/403 raise AuthError, 404 GoneError, 429 ThrottledError (with
        Retry-After), 5xx and other non-2xx UpstreamError.  Without it the provider
        reads the status itself (for vendors that explain errors in the body).
        """
        ...

    def pause_for_window(self, bucket: str = "default") -> None:
        """The vendor said the budget is spent: wait until its shortest window has passed."""
        ...

    def skipped(self, points: int) -> None:
        """Count vendor data points skipped as malformed (never fatal to the poll)."""
        ...


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
    raise UpstreamError(f"{r.endpoint}: HTTP {s}", status=s)
