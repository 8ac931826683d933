"""Prometheus-style durations: `500ms`, `15s`, `5m`, `1h30m`, `1d`."""

from __future__ import annotations

import re

_UNITS = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
#: ten thousand years, in milliseconds; far beyond any use, far within a float
_LONGEST_MS = 10_000 * 365 * 86400 * 1000
_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError with a readable reason otherwise."""
    m = _RE.match(text.strip()) if isinstance(text, str) else None
    if not m or not text.strip() or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, like 500ms, 15s, 5m or 1h")
    total = 0
    for value, unit in zip(m.groups(), ("y", "w", "d", "h", "m", "s", "ms"), strict=True):
        if value:
            total += int(value) * round(_UNITS[unit] * 1000)  # whole milliseconds: exact
    if total > _LONGEST_MS:
        raise ValueError(f"{text!r} is longer than any duration this program can use")
    return total / 1000


def format_duration(seconds: float) -> str:
    """The shortest Prometheus-style spelling, e.g. 90 -> '1m30s', 0.25 -> '250ms'."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)
