"""Tolerant readers for vendor fields: numbers that arrive as strings, dates with or without a zone.

Each raises ParseError with the field's name, never its value (values can be personal data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from exporter.model.errors import ParseError


def number(value: Any, field: str) -> float:
    """A documented number, also when it arrives as a numeric string."""
    if isinstance(value, bool) or value is None:
        raise ParseError(f"field {field} is not a number")
    if isinstance(value, int | float):
        try:
            out = float(value)
        except OverflowError:  # an integer no float holds
            raise ParseError(f"field {field} is not a finite number") from None
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise ParseError(f"field {field} is not a number") from None
    else:
        raise ParseError(f"field {field} is not a number")
    if not math.isfinite(out):
        raise ParseError(f"field {field} is not a finite number")
    return out


def count(value: Any, field: str) -> float:
    """A documented count, total or duration: a finite number that is never negative."""
    out = number(value, field)
    if out < 0:
        raise ParseError(f"field {field} is negative")
    return out


def sendable(value: Any, field: str) -> str:
    """A vendor's id as text a request can carry: UTF-8 encodes it (JSON can hold a lone
    surrogate, which no URL or body can send back)."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError(f"field {field} is not UTF-8 text") from None
    return text


def iso_time(value: Any, field: str) -> float:
    """Unix seconds of an ISO 8601 time; without a zone it is UTC."""
    if not isinstance(value, str) or not value.strip():
        raise ParseError(f"field {field} is not a time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ParseError(f"field {field} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def obj(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ParseError(f"field {field} is missing or not an object")
    return value


def optional_time(value: Any, field: str) -> float | None:
    if value is None or value == "":
        return None
    return iso_time(value, field)
