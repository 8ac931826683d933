"""Signal handling from the first line of the command, before the heavy imports.

Importing aiohttp, pydantic and friends takes a few hundred milliseconds, and until the
event loop installs its handlers a SIGHUP (a config reloader reacting to a restart) or
a SIGTERM would get the default action: death, or exit code 143 instead of 0.  These
stand-ins remember a SIGHUP for `serve()` to apply once polling runs, and turn SIGTERM
and SIGINT into a clean exit.  Only the command installs them, never an import.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

#: signals seen before the event loop took over
_pending: set[int] = set()


def _on_hup(signum: int, _frame: FrameType | None) -> None:
    _pending.add(signum)


def _on_stop(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def install() -> None:
    signal.signal(signal.SIGHUP, _on_hup)
    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)


def take_hup() -> bool:
    """Whether a SIGHUP arrived before the event loop took over (and forget it)."""
    if signal.SIGHUP in _pending:
        _pending.discard(signal.SIGHUP)
        return True
    return False
