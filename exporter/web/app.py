"""The web server: /metrics, the landing page, health, readiness and reload.

`/metrics` serves the exposition's cached parts (`MetricsCache.scrape_async`; only the
small self-metrics and process metrics are rendered afresh), gzipped when asked: joined
into one write when the body is small, written one by one when it is big.
The server sees the running exporter only as `ExporterView`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload
from aiohttp.typedefs import Middleware
from prometheus_client import exposition as prom_text
from prometheus_client.openmetrics import exposition as prom_om

from exporter.model.redaction import REDACTOR
from exporter.store.exposition import Body, MetricsCache
from exporter.web.landing import landing_page
from exporter.web.view import ExporterView
from exporter.web.webconfig import LiveWebConfig

EXPORTER = web.AppKey("exporter", ExporterView)
CACHE = web.AppKey("metrics_cache", MetricsCache)
TELEMETRY_PATH = web.AppKey("telemetry_path", str)
LIFECYCLE = web.AppKey("enable_lifecycle", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: a body up to this size goes out in one write (one copy is cheaper than a write per part);
#: a bigger one part by part (a copy of many megabytes costs more than the writes)
JOIN_UP_TO = 4 * 1024 * 1024


def _q(params: list[str]) -> float:
    """The q-value among a media range's or coding's parameters (1 when absent or unreadable)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _preferences(header: str) -> dict[str, float]:
    """`a;q=0.5, b` -> {"a": 0.5, "b": 1.0}, names lower-cased; the first mention wins."""
    out: dict[str, float] = {}
    for item in header.split(","):
        name, *params = item.split(";")
        name = name.strip().lower()
        if name and name not in out:
            out[name] = _q(params)
    return out


def wants_openmetrics(accept: str) -> bool:
    """OpenMetrics when the client accepts it (q > 0) at least as much as the text format."""
    prefs = _preferences(accept)
    om = prefs.get("application/openmetrics-text", 0.0)
    text = prefs.get("text/plain", prefs.get("text/*", prefs.get("*/*", 0.0 if prefs else 1.0)))
    return om > 0.0 and om >= text


def wants_gzip(accept_encoding: str) -> bool:
    """gzip when the client accepts it with q > 0, by name or by `*` (RFC 9110, 12.5.3)."""
    prefs = _preferences(accept_encoding)
    q = prefs.get("gzip", prefs.get("*", 0.0))
    return q > 0.0 and q >= prefs.get("identity", 0.0)


class PartsPayload(Payload):
    """A body sent as its parts, one write each: the whole is never copied into one object.

    Each write of more than 64 KiB waits for the socket to drain, so a big body lets the
    event loop do other work while it goes out."""

    _value: tuple[bytes, ...]

    def __init__(self, body: Body, content_type: str) -> None:
        super().__init__(body.parts, content_type=content_type)
        self._size = self._total = body.size

    async def write(self, writer: AbstractStreamWriter) -> None:
        for part in self._value:
            await writer.write(part)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        left = self._total if content_length is None else content_length
        for part in self._value:
            if left <= 0:
                break
            await writer.write(part[:left] if len(part) > left else part)
            left -= len(part)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"".join(self._value)


async def metrics(request: web.Request) -> web.Response:
    cache: MetricsCache = request.app[CACHE]
    om = wants_openmetrics(request.headers.get("Accept", ""))
    gzip = wants_gzip(request.headers.get("Accept-Encoding", ""))
    body = await cache.scrape_async(om, gzip=gzip)
    # 0.0.4 is the text format every Prometheus version parses; our names need no UTF-8 escaping.
    ctype = prom_om.CONTENT_TYPE_LATEST if om else prom_text.CONTENT_TYPE_PLAIN_0_0_4
    # caches between us and the scraper must keep one answer per format and encoding
    headers = {"Content-Type": ctype, "Vary": "Accept, Accept-Encoding"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    if body.size <= JOIN_UP_TO:
        return web.Response(body=body.join(), headers=headers)
    return web.Response(body=PartsPayload(body, ctype), headers=headers)


async def landing(request: web.Request) -> web.Response:
    page = landing_page(request.app[EXPORTER], request.app[TELEMETRY_PATH])
    return web.Response(text=REDACTOR.scrub(page), content_type="text/html")


async def healthy(_: web.Request) -> web.Response:
    return web.Response(text="Healthy\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[EXPORTER].store.ready():
        return web.Response(text="Ready\n")
    return web.Response(status=503, text="Not ready: not every source has polled yet\n")


async def reload(request: web.Request) -> web.Response:
    if not request.app[LIFECYCLE]:
        text = "Lifecycle API is not enabled: start with --web.enable-lifecycle, or send SIGHUP\n"
        return web.Response(status=403, text=text)
    error = await request.app[EXPORTER].reload()
    if error is None:
        return web.Response(text="Reloaded\n")
    return web.Response(
        status=500,
        text=f"Reload failed; the previous configuration keeps running:\n{REDACTOR.scrub(error)}\n",
    )


async def _keep_metrics_warm(app: web.Application) -> AsyncIterator[None]:
    """While serving, what polls change is compressed for gzip scrapes ahead of them."""
    task = asyncio.create_task(app[CACHE].keep_warm())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _credentials(header: str) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header; the scheme is
    case-insensitive (RFC 7617)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _watching(live: LiveWebConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """While serving, the web configuration's files are checked for changes."""

    async def ctx(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(live.watch())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def _auth_middleware(live: LiveWebConfig) -> Middleware:
    @web.middleware
    async def mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        policy = live.policy
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        if policy is not None and ssl_object is not None and not policy.admits(ssl_object):
            # made under an older, looser TLS configuration: the client must handshake again
            return web.Response(
                status=403,
                text="This connection does not meet the current TLS settings; reconnect.\n",
                headers={"Connection": "close"},
            )
        auth = live.auth
        if not auth:
            return await handler(request)
        creds = _credentials(request.headers.get("Authorization", ""))
        if creds is not None and await auth.check(*creds):
            return await handler(request)
        return web.Response(
            status=401,
            text="Unauthorized\n",
            headers={"WWW-Authenticate": 'Basic realm="livestream-exporter"'},
        )

    return mw


def _headers_middleware(live: LiveWebConfig) -> Middleware:
    @web.middleware
    async def mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(live.headers)
        return response

    return mw


def create_app(
    exporter: ExporterView,
    *,
    telemetry_path: str = "/metrics",
    web_config: LiveWebConfig | None = None,
    enable_lifecycle: bool = False,
) -> web.Application:
    """The aiohttp app serving `exporter`; the process adds the polling's lifecycle."""
    middlewares: list[Middleware] = []
    if web_config is not None:
        middlewares += [_headers_middleware(web_config), _auth_middleware(web_config)]
    app = web.Application(middlewares=middlewares)
    app[EXPORTER] = exporter
    app[CACHE] = MetricsCache(exporter.store, exporter.reload_status, exporter.clock)
    app[TELEMETRY_PATH] = telemetry_path
    app[LIFECYCLE] = enable_lifecycle
    app.cleanup_ctx.append(_keep_metrics_warm)
    if web_config is not None:
        app.cleanup_ctx.append(_watching(web_config))
    app.router.add_get("/", landing)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    return app
