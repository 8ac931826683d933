"""The typed failures of a poll.

Each class is one `ErrorKind`: the landing page shows it, the logs carry it as `error=`,
and the engine decides from the error alone whether to back off (`backoff`, fixed by
the class or by the constructor, never changed afterwards) or to remove a target's
series (`GoneError`).  Messages are written by the exporter, never copied from a
response body, so they can carry neither personal data nor secrets echoed back by a
vendor.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorKind(StrEnum):
    AUTH = "auth"
    THROTTLED = "throttled"
    UPSTREAM = "upstream"
    TIMEOUT = "timeout"
    PARSE = "parse"
    GONE = "gone"
    #: a bug in the exporter or a provider, not the vendor's doing
    INTERNAL = "internal"


class PollError(Exception):
    """Base of every poll failure; use a subclass."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL

    def __init__(self, message: str, *, backoff: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self._backoff = backoff

    @property
    def backoff(self) -> bool:
        """Whether the source should slow down (429, 5xx, timeouts, vendor "too frequent")."""
        return self._backoff


class AuthError(PollError):
    """The vendor refused the credentials (401/403 or a vendor code meaning the same)."""

    kind = ErrorKind.AUTH


class ThrottledError(PollError):
    """The vendor asked us to slow down; `retry_after` is its hint in seconds, if any."""

    kind = ErrorKind.THROTTLED

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, backoff=True)
        self.retry_after = retry_after


class UpstreamError(PollError):
    """The vendor failed: 5xx, an unexpected status, a broken connection, a failure code.

    It backs off for 5xx and for whatever the vendor documents as temporary (`transient`).
    """

    kind = ErrorKind.UPSTREAM

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message, backoff=transient or (status is not None and status >= 500))
        self.status = status


class PollTimeout(PollError):
    """No answer within `global.timeout`."""

    kind = ErrorKind.TIMEOUT

    def __init__(self, message: str) -> None:
        super().__init__(message, backoff=True)


class ParseError(PollError):
    """The answer was not what the vendor documents (HTML, truncated JSON, missing fields)."""

    kind = ErrorKind.PARSE


class GoneError(PollError):
    """The vendor says the stream no longer exists: its series are removed, not zeroed."""

    kind = ErrorKind.GONE


class InternalError(PollError):
    """A provider raised something unexpected: it costs the targets of that request only."""

    kind = ErrorKind.INTERNAL
