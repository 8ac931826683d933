"""Blocking work (file reads, bcrypt) off the event loop, with a deadline.

A read from a FIFO or a hung network mount can block for ever.  On the event loop that
freezes everything: health checks time out and SIGTERM is never handled.  In the default
executor it would still hold up the interpreter's exit, which waits for those threads.  So
each call gets a daemon thread of its own, and whoever waits gives up after `seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: how long a file read (configuration, credentials, certificates) may take
READ_TIMEOUT_SECONDS = 10.0


class OffLoopTimeout(Exception):
    """The work did not finish in time (its thread is left to finish or hang on its own)."""


async def off_loop(fn: Callable[[], T], *, seconds: float, what: str) -> T:
    """`fn()` in a daemon thread; its result, its exception, or OffLoopTimeout after `seconds`."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = fn()
        except BaseException as e:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, None, e)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name=f"off-loop: {what}", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(done), seconds)
    except TimeoutError:
        raise OffLoopTimeout(f"{what} took longer than {seconds:g}s") from None
