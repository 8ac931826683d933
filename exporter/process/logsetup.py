"""structlog set-up: logfmt or JSON on stderr, levels, and redaction of secrets.

Every rendered value is scrubbed of the registered secret values (`REDACTOR`), and keys
whose names smell of secrets are redacted whatever their value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from exporter.model.redaction import REDACTED, REDACTOR
from exporter.model.throttle import LogThrottle

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_SECRET_KEY = re.compile(r"(secret|token|password|api_?key|usersig|signature|authorization)", re.I)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key != "event" and _SECRET_KEY.search(key) and value not in (None, ""):
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = REDACTOR.scrub(value)
        elif not isinstance(value, int | float | bool | type(None)):
            event[key] = REDACTOR.scrub(str(value))
    return event


class LibraryLogs(logging.Filter):
    """What aiohttp and asyncio log, as one line per event and at most once a minute per kind.

    A malformed request is the client's mistake, not ours: it becomes a one-line warning
    naming the client and what was wrong, without aiohttp's traceback.  Repeated events of
    one kind (a flood of bad requests, `accept()` failing for want of file descriptors) are
    logged once per minute with the number held back.  An unexpected exception in a
    handler is a bug and keeps its traceback.
    """

    def __init__(self, throttle: LogThrottle | None = None) -> None:
        super().__init__()
        self.throttle = throttle or LogThrottle()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        client_error = exc is not None and type(exc).__module__ == "aiohttp.http_exceptions"
        if client_error or (record.name == "asyncio" and exc is not None):
            if client_error:
                # the first line only: the rest quotes the client's bytes, maybe a credential
                message = str(getattr(exc, "message", "") or exc).strip().splitlines()
                record.reason = (message[0] if message else type(exc).__name__).rstrip(": ")
                record.client = _client_of(record)
                record.msg, record.args = "bad HTTP request", ()
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            else:
                record.reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            record.exc_info, record.exc_text = None, None
        kind = f"{record.name}:{record.msg}"
        held = self.throttle.admit(kind)
        if held is None:
            return False
        if held:
            record.held_back = held
        return True


def _client_of(record: logging.LogRecord) -> str | None:
    """aiohttp says "Error handling request from 1.2.3.4": the address, if it is there."""
    args = record.args
    return str(args[0]) if isinstance(args, tuple) and args and args[0] else None


def setup(level: str = "info", fmt: str = "logfmt", stream: Any = None) -> None:
    out = stream if stream is not None else sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.processors.LogfmtRenderer(key_order=["ts", "level", "event"], drop_missing=True)
    )
    shared: list[Any] = [
        structlog.stdlib.ExtraAdder({"reason", "client", "held_back"}),
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
        _redact,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library; render them the same way, warnings and up.
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processor=renderer, foreign_pre_chain=shared))
    handler.addFilter(LibraryLogs())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(LEVELS[level], logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)


def get_logger(**bound: Any) -> structlog.typing.FilteringBoundLogger:
    log: structlog.typing.FilteringBoundLogger = structlog.get_logger(**bound)
    return log
