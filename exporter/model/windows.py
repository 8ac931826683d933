"""A rate-limit window: at most `requests` in any `per` seconds."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.model.durations import format_duration


@dataclass(frozen=True, order=True)
class Window:
    requests: int
    per: float  # seconds

    @property
    def rate(self) -> float:
        """Sustainable requests per second."""
        return self.requests / self.per

    def __str__(self) -> str:
        return f"{self.requests}/{format_duration(self.per)}"
