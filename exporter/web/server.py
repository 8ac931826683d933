"""The listening side: a cap on connections, a deadline for each request, and TLS whose
settings follow the web configuration file.

aiohttp by itself lets a connection sit idle or trickle a request for an hour, and takes
every connection the kernel hands it.  With the common limit of 1024 open files, 1100
idle connections once starved real scrapes.  Here:

- at most `max_connections` connections are open (counted once their TLS handshake is
  done).  When one more comes, the connection that has waited longest for a request (idle,
  or trickling one in) is closed to make room, so idle connections can never lock out a
  scrape; only when every connection is busy with a request is the newcomer answered 503
  and closed, holding its file descriptor for an instant only;
- a client has `read_timeout` to send a whole request head from the moment it connects
  or its previous answer went out, and an idle keep-alive connection closes after it too;
- a TLS handshake has `read_timeout` as well.
Refusals are logged at most once a minute, with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from structlog.typing import FilteringBoundLogger

from exporter.model.throttle import LogThrottle

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 37\r\n"
    b"Connection: close\r\n\r\n"
    b"too many connections; try again soon\n"
)


@dataclass
class ConnectionGuard:
    """The limits of `--web.max-connections` and `--web.read-timeout`, and their log."""

    max_connections: int
    read_timeout: float
    log: FilteringBoundLogger
    throttle: LogThrottle = field(default_factory=LogThrottle)
    refused: int = 0
    evicted: int = 0

    def evict(self, handler: RequestHandler) -> None:
        self.evicted += 1
        handler.force_close()
        held = self.throttle.admit("evicted")
        if held is not None:
            self.log.warning(
                "closed the connection waiting longest for a request: --web.max-connections reached",
                max_connections=self.max_connections,
                closed_since_last_line=held,
            )

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        self.refused += 1
        with contextlib.suppress(Exception):
            transport.write(_REFUSAL)  # type: ignore[attr-defined]
        transport.close()
        held = self.throttle.admit("refused")
        if held is not None:
            self.log.warning(
                "connection refused: --web.max-connections reached, every connection busy",
                max_connections=self.max_connections,
                refused_since_last_line=held,
            )


class _GuardedHandler(RequestHandler):
    """aiohttp's connection handler, refusing connections beyond the cap."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=guard.read_timeout, **kwargs)
        self._guard = guard
        self.opened = 0.0

    @property
    def waiting(self) -> bool:
        """Waiting for a request: idle, or its request still arriving."""
        return self._waiter is not None and not self._waiter.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        self.opened = self._loop.time()
        if manager is not None:
            connections = manager.connections
            if len(connections) >= self._guard.max_connections:
                waiting = [c for c in connections if isinstance(c, _GuardedHandler) and c.waiting]
                if not waiting:
                    self._manager = None  # so that connection_lost has nothing to undo
                    self._guard.refuse(transport)
                    return
                self._guard.evict(min(waiting, key=lambda c: c.opened))
        super().connection_made(transport)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections are guarded by `guard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '*'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        guard = self._guard

        def connection() -> RequestHandler:
            return _GuardedHandler(server, guard, loop=loop, access_log=None)

        self._server = await loop.create_server(
            connection,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=guard.read_timeout if self._ssl_context else None,
        )


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one, as Go programs do at start:
    connections, vendor sessions and files all need descriptors.  (old, new) soft limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return soft, hard
    return soft, soft
