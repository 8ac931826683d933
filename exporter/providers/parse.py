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
        out = float(value)
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
