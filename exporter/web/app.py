"""The web server: /metrics, the landing page, health, readiness and reload.

`/metrics` does no I/O: it serves the exposition's cached rendering, gzipped when asked.
The server sees the running exporter only as `ExporterView`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import exposition as prom_text
from prometheus_client.openmetrics import exposition as prom_om

from exporter.model.redaction import REDACTOR
from exporter.store.exposition import MetricsCache
from exporter.web.landing import landing_page
from exporter.web.view import ExporterView
from exporter.web.webconfig import LiveWebConfig

EXPORTER = web.AppKey("exporter", ExporterView)
CACHE = web.AppKey("metrics_cache", MetricsCache)
TELEMETRY_PATH = web.AppKey("telemetry_path", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _wants_openmetrics(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";")[0].strip()
        if media == "application/openmetrics-text":
            return True
    return False


async def metrics(request: web.Request) -> web.Response:
    cache: MetricsCache = request.app[CACHE]
    om = _wants_openmetrics(request.headers.get("Accept", ""))
    body = cache.render(om)
    # 0.0.4 is the text format every Prometheus version parses; our names need no UTF-8 escaping.
    ctype = prom_om.CONTENT_TYPE_LATEST if om else prom_text.CONTENT_TYPE_PLAIN_0_0_4
    headers = {"Content-Type": ctype}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


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
    error = await request.app[EXPORTER].reload()
    if error is None:
        return web.Response(text="Reloaded\n")
    return web.Response(
        status=500,
        text=f"Reload failed; the previous configuration keeps running:\n{REDACTOR.scrub(error)}\n",
    )


def _auth_middleware(live: LiveWebConfig) -> Middleware:
    @web.middleware
    async def mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        live.refresh()
        auth = live.auth
        if not auth:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            if await auth.check(user, password):
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
) -> web.Application:
    """The aiohttp app serving `exporter`; the process adds the polling's lifecycle."""
    middlewares: list[Middleware] = []
    if web_config is not None:
        middlewares += [_headers_middleware(web_config), _auth_middleware(web_config)]
    app = web.Application(middlewares=middlewares)
    app[EXPORTER] = exporter
    app[CACHE] = MetricsCache(exporter.store, exporter.reload_status, exporter.clock)
    app[TELEMETRY_PATH] = telemetry_path
    app.router.add_get("/", landing)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    return app
