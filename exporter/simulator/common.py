"""What every fake vendor shares: answers, HTML error pages, credentials in logs, time formats."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """One answer: a JSON body, or `raw` text with its content type."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None
    content_type: str = "application/json"
    error: str | None = None  # vendor error code, for the request log
    ending: str | None = None  # "cut" or "reset": the connection ends after part of the body

    def text(self) -> str:
        return self.raw if self.raw is not None else json.dumps(self.body)

    def truncated(self) -> Reply:
        text = self.text()
        return replace(self, status=200, raw=text[: max(1, len(text) // 2)], error="truncated")

    def to_response(self) -> web.Response:
        return web.Response(
            status=self.status, text=self.text(), content_type=self.content_type, headers=self.headers
        )


def html_page(status: int) -> str:
    title = f"{status} {'OK' if status == 200 else 'Bad Gateway'}"
    return (
        "<!DOCTYPE html>\n<html><head><title>" + title + "</title></head>\n"
        "<body><h1>Something went wrong</h1><p>The upstream server returned an invalid response."
        "</p><hr><center>nginx</center></body></html>\n"
    )


# ---------------------------------------------------------------------- helpers


def fingerprint(secret: str) -> str:
    """A loggable stand-in for a secret credential."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def iso_z(ts: float, *, millis: bool = False) -> str:
    """2023-11-07T05:31:56Z, or 2025-10-29T12:05:38.367Z with millis."""
    moment = utc(ts)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_naive(ts: float) -> str:
    """2024-08-16T11:49:15 (no zone: UTC)."""
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%S")


def int_param(value: str | None, default: int, *, minimum: int = 1, maximum: int = 10_000) -> int:
    """A query parameter as an int; ValueError when present but invalid."""
    if value is None or value == "":
        return default
    number = int(value)
    if not minimum <= number <= maximum:
        raise ValueError(f"{number} outside {minimum}..{maximum}")
    return number
