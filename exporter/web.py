"""The HTTP side: /metrics, the landing page, health, readiness and reload.

`/metrics` does no I/O.  The exporter's own families are rendered once per change of the
store (its generation) and format, and served from that cache, gzipped when asked; the
process metrics, which change on every scrape, are rendered fresh and appended.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import html
import platform
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import exposition as prom_text
from prometheus_client.openmetrics import exposition as prom_om

from exporter import __version__
from exporter.config import Config
from exporter.daemon import Exporter
from exporter.durations import format_duration
from exporter.logging import REDACTOR
from exporter.metrics import StoreCollector
from exporter.webconfig import LiveWebConfig

EXPORTER = web.AppKey("exporter", Exporter)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class MetricsCache:
    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(StoreCollector(exporter.store, reload_status=exporter.reload_status))
        self._process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._process)
        PlatformCollector(registry=self._process)
        GCCollector(registry=self._process)
        self._cache: dict[bool, tuple[int, bytes]] = {}

    def render(self, openmetrics: bool) -> bytes:
        store = self._exporter.store
        store.expire(self._exporter.clock.monotonic())
        hit = self._cache.get(openmetrics)
        if hit is None or hit[0] != store.generation:
            generation = store.generation
            gen = prom_om.generate_latest if openmetrics else prom_text.generate_latest
            body = gen(self._registry)
            if openmetrics:
                body = body.removesuffix(b"# EOF\n")
            self._cache[openmetrics] = hit = (generation, body)
        gen = prom_om.generate_latest if openmetrics else prom_text.generate_latest
        return hit[1] + gen(self._process)


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


def _ts(value: float | None) -> str:
    if value is None:
        return "never"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


async def landing(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER]
    path = request.app[TELEMETRY_PATH]
    e = html.escape
    rows = []
    for s in exporter.store.sources.values():
        interval = s.stats.interval if s.stats else 0.0
        for t in sorted(s.targets.values(), key=lambda t: t.target.stream):
            origin = "discovered" if t.target.discovered else "configured"
            rows.append(
                "<tr>"
                f"<td>{e(s.name)}</td><td>{e(s.provider)}</td><td>{e(t.target.stream)}</td><td>{origin}</td>"
                f"<td class={t.health}>{t.health}</td><td>{_ts(t.last_success)}</td>"
                f"<td>{e(t.error or '')}</td><td>{format_duration(interval)}</td>"
                "</tr>"
            )
        if not s.targets:
            rows.append(
                f"<tr><td>{e(s.name)}</td><td>{e(s.provider)}</td><td colspan=6>no targets yet</td></tr>"
            )
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>livestream-exporter</title>
<style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}
.up{{color:#080}} .down{{color:#c00}} .gone,.pending{{color:#888}}
</style></head>
<body><h1>livestream-exporter</h1>
<p>Version {e(__version__)} (Python {e(platform.python_version())})
&middot; configuration {e(exporter.config_file)}</p>
<ul><li><a href="{e(path.lstrip("/"))}">Metrics</a></li><li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li></ul>
<h2>Targets</h2>
<table><tr><th>source</th><th>provider</th><th>stream</th><th>origin</th><th>health</th>
<th>last success</th><th>last error</th><th>interval</th></tr>
{"".join(rows)}
</table></body></html>
"""
    return web.Response(text=REDACTOR.scrub(body), content_type="text/html")


CACHE = web.AppKey("metrics_cache", MetricsCache)
TELEMETRY_PATH = web.AppKey("telemetry_path", str)


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
    exporter: Exporter,
    *,
    config: Config | None = None,
    telemetry_path: str = "/metrics",
    web_config: LiveWebConfig | None = None,
) -> web.Application:
    """The aiohttp app; with `config`, the exporter's polling runs in its cleanup context."""
    middlewares: list[Middleware] = []
    if web_config is not None:
        middlewares += [_headers_middleware(web_config), _auth_middleware(web_config)]
    app = web.Application(middlewares=middlewares)
    app[EXPORTER] = exporter
    app[CACHE] = MetricsCache(exporter)
    app[TELEMETRY_PATH] = telemetry_path
    app.router.add_get("/", landing)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    if config is not None:
        startup: Config = config

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await exporter.start(startup)
            yield
            await exporter.stop()

        app.cleanup_ctx.append(lifecycle)
    return app
