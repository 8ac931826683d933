"""Redaction of secrets from anything shown to people: logs, pages, error messages.

Redaction is the last line of defence, not the first: messages are written not to carry
secrets at all, and then every rendered text is scrubbed of the credential values the
configuration holds (registered on every load) and of values made at run time (a
generated Tencent UserSig).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "<redacted>"
#: shorter values would redact ordinary words
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
        """A value made at run time, one slot per maker.

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
