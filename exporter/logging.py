"""structlog set-up: logfmt or JSON on stderr, levels, and redaction of secrets.

Redaction is the last line of defence, not the first: messages are written not to carry
secrets at all, and then every rendered value is scrubbed of the credential values the
configuration holds (they are registered on every load) and of key names that smell
of secrets.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"(secret|token|password|api_?key|usersig|signature|authorization)", re.I)
_MIN_SECRET = 4


class Redactor:
    """Replaces registered secret values anywhere in a string."""

    def __init__(self) -> None:
        self._static: frozenset[str] = frozenset()
        self._dynamic: dict[str, tuple[str, ...]] = {}
        self._pattern: re.Pattern[str] | None = None

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """The configuration's credential values (replaced on every load)."""
        self._static = frozenset(secrets)
        self._compile()

    def set_dynamic(self, slot: str, secret: str) -> None:
        """A value made at run time (a generated Tencent UserSig), one slot per maker.

        The slot keeps the current and the previous value only, so renewals never make
        the redactor grow.
        """
        current = self._dynamic.get(slot, ())
        if current[:1] != (secret,):
            self._dynamic[slot] = (secret, *current[:1])
            self._compile()

    def _compile(self) -> None:
        everything = set(self._static).union(*self._dynamic.values())
        values = sorted((s for s in everything if len(s) >= _MIN_SECRET), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in values)) if values else None

    def scrub(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text


REDACTOR = Redactor()


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key != "event" and _SECRET_KEY.search(key) and value not in (None, ""):
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = REDACTOR.scrub(value)
        elif not isinstance(value, int | float | bool | type(None)):
            event[key] = REDACTOR.scrub(str(value))
    return event


def setup(level: str = "info", fmt: str = "logfmt", stream: Any = None) -> None:
    out = stream if stream is not None else sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.processors.LogfmtRenderer(key_order=["ts", "level", "event"], drop_missing=True)
    )
    shared: list[Any] = [
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(LEVELS[level], logging.WARNING))
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)


def get_logger(**bound: Any) -> structlog.typing.FilteringBoundLogger:
    log: structlog.typing.FilteringBoundLogger = structlog.get_logger(**bound)
    return log
