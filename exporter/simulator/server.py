"""The aiohttp application serving every registered fake vendor API and the control endpoints."""

from __future__ import annotations

from aiohttp import web

from . import control
from .core import Simulator

SIMULATOR_KEY = web.AppKey("simulator", Simulator)


def create_app(sim: Simulator | None = None) -> web.Application:
    """One application; `app[SIMULATOR_KEY]` is the simulator it serves."""
    simulator = sim if sim is not None else Simulator()
    app = web.Application()
    app[SIMULATOR_KEY] = simulator
    for vendor in simulator.vendors.values():
        vendor.add_routes(app)
    control.add_routes(app, simulator)

    async def on_startup(_: web.Application) -> None:
        simulator.closing = False

    async def on_shutdown(_: web.Application) -> None:
        simulator.closing = True  # releases requests hanging on a "timeout" fault

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app
