"""Start the simulator inside a running event loop (what `--demo` needs)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .core import Simulator
from .server import create_app


@dataclass
class RunningSimulator:
    sim: Simulator
    runner: web.AppRunner
    url: str  # http://HOST:PORT, the root that demo_config takes

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_simulator(
    sim: Simulator | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Serve the simulator on host:port (0: any free port). No access log: query strings
    may carry credentials, which must not reach a log."""
    simulator = sim if sim is not None else Simulator()
    runner = web.AppRunner(create_app(simulator), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    shown = f"[{host}]" if ":" in host else host
    return RunningSimulator(sim=simulator, runner=runner, url=f"http://{shown}:{bound}")
