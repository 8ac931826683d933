"""The aiohttp application serving all five fake vendor APIs and the control endpoints."""

from __future__ import annotations

from aiohttp import web

from . import cloudflare, control, fermion, gjirafa, swiftfederation, tencent
from .state import Simulator

SIMULATOR_KEY = web.AppKey("simulator", Simulator)

# Vendor -> path prefix: the exporter's base_url is http://HOST:PORT + prefix.
BASE_PATHS: dict[str, str] = {
    "gjirafa": gjirafa.PREFIX,
    "swiftfederation": swiftfederation.PREFIX,
    "fermion": fermion.PREFIX,
    "cloudflare": cloudflare.PREFIX,
    "tencent": tencent.PREFIX,
}


def create_app(sim: Simulator | None = None) -> web.Application:
    """One application; `app[SIMULATOR_KEY]` is the simulator it serves."""
    simulator = sim if sim is not None else Simulator()
    app = web.Application()
    app[SIMULATOR_KEY] = simulator
    for module in (gjirafa, swiftfederation, fermion, cloudflare, tencent, control):
        module.add_routes(app, simulator)

    async def on_startup(_: web.Application) -> None:
        simulator.closing = False

    async def on_shutdown(_: web.Application) -> None:
        simulator.closing = True  # releases requests hanging on a "timeout" fault

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app
