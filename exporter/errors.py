"""The typed failures of a poll.

Each class is one `kind`: the landing page shows it, the logs carry it as `error=`, and
the scheduler decides from it whether to back off or to remove a target's series.
Messages are written by the exporter, never copied from a response body, so they can
carry neither personal data nor secrets echoed back by a vendor.
"""

from __future__ import annotations


class PollError(Exception):
    kind = "error"
    #: the source should slow down (429, 5xx, vendor "too frequent" answers)
    backoff = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthError(PollError):
    """The vendor refused the credentials (401/403 or a vendor code meaning the same)."""

    kind = "auth"


class ThrottledError(PollError):
    """The vendor asked us to slow down; `retry_after` is its hint in seconds, if any."""

    kind = "throttled"
    backoff = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(PollError):
    """The vendor failed (5xx, unexpected status, connection error)."""

    kind = "upstream"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.backoff = status is not None and status >= 500


class PollTimeout(UpstreamError):
    """No answer within `global.timeout`."""

    kind = "timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, None)
        self.backoff = True


class ParseError(PollError):
    """The answer was not what the vendor documents (HTML, truncated JSON, missing fields)."""

    kind = "parse"


class GoneError(PollError):
    """The vendor says the stream no longer exists: its series are removed, not zeroed."""

    kind = "gone"
