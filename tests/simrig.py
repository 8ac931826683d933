"""The vendor simulator and hand-driven SourceRunners on one FakeClock, /metrics served for real.

    world = await start_world(aiohttp_server)          # Simulator on a loopback server
    rigs = Rigs(world, aiohttp_client, write_config)
    served = await rigs.make([source, ...])            # runners + the real web app over their store
    world.sim.set_viewers("gjirafa", "vp-news/audio", 500)
    await served.cycle("gj")                           # one poll cycle (fake time, real HTTP)
    samples = await served.metrics()                   # GET /metrics, parsed

The simulator's wall clock and rate-limit clock are the runners' FakeClock, so curves,
5-minute vendor intervals, signature dates and rate limits all follow simulated time.
`world.seen` records every request that reached the simulator (raw path with its query
string exactly as sent, and headers), for assertions on what a provider really sends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from exporter.clock import FakeClock
from exporter.simulator import BASE_PATHS, Simulator
from exporter.simulator import create_app as create_sim_app
from exporter.web import create_app
from tests.pollhelpers import Rig, Samples, build_rig, parse

#: a multiple of 300 s and of 60 s: the simulator's 5-minute points and gjirafa intervals start here
START = 1_700_000_100.0


@dataclass(frozen=True)
class Seen:
    method: str
    raw_path: str  # path and query string, byte for byte as the client sent them
    headers: dict[str, str]


@dataclass
class SimWorld:
    clock: FakeClock
    sim: Simulator
    root: str
    seen: list[Seen] = field(default_factory=list)

    def base_url(self, vendor: str) -> str:
        return self.root + BASE_PATHS[vendor]

    def requests_to(self, path_part: str) -> list[Seen]:
        return [s for s in self.seen if path_part in s.raw_path]


async def start_world(aiohttp_server: Callable[..., Awaitable[Any]], start: float = START) -> SimWorld:
    clock = FakeClock(start)
    sim = Simulator(clock=clock.time, monotonic=clock.monotonic, slow_seconds=2.0, hang_seconds=5.0)
    seen: list[Seen] = []

    @web.middleware
    async def capture(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(Seen(request.method, request.raw_path, dict(request.headers)))
        response: web.StreamResponse = await handler(request)
        return response

    app = create_sim_app(sim)
    app.middlewares.append(capture)
    server = await aiohttp_server(app)
    world = SimWorld(clock=clock, sim=sim, root=str(server.make_url("")).rstrip("/"), seen=seen)
    return world


class Served:
    """Runners built from a config file, and the real web app over their store."""

    def __init__(self, world: SimWorld, rig: Rig, client: Any) -> None:
        self.world = world
        self.rig = rig
        self.client = client

    async def metrics(self) -> Samples:
        r = await self.client.get("/metrics")
        assert r.status == 200
        return parse(await r.text())

    async def cycle(self, *sources: str) -> None:
        """One cycle of the named sources (all, in config order, when none is named)."""
        for name in sources or tuple(self.rig.runners):
            await self.rig.runners[name].run_cycle()

    def target(self, source: str, key: str) -> Any:
        return self.rig.store.sources[source].targets[key]


class Rigs:
    def __init__(
        self,
        world: SimWorld,
        aiohttp_client: Callable[..., Awaitable[Any]],
        write_config: Callable[..., Path],
    ) -> None:
        self.world = world
        self._client = aiohttp_client
        self._write = write_config
        self._rigs: list[Rig] = []

    async def make(self, sources: list[dict[str, Any]], **global_: Any) -> Served:
        rig = build_rig(self._write(sources, **global_), self.world.clock)
        self._rigs.append(rig)
        exporter = SimpleNamespace(store=rig.store, clock=rig.clock, reload_status=rig.reload_status)
        client = await self._client(create_app(exporter))  # type: ignore[arg-type]
        return Served(self.world, rig, client)

    async def close(self) -> None:
        for r in self._rigs:
            await r.close()


class Canned:
    """A tiny vendor for one-request unit tests: answers from a queue, records what it got.

    (aioresponses cannot build responses with aiohttp 3.14, hence a real loopback server.)
    """

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any]] = []
        self.seen: list[Seen] = []

    def answer(self, body: Any, status: int = 200) -> None:
        """Queue one answer: a JSON-able value, or `str` sent as is (text/html)."""
        self.answers.append((status, body))

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers)))
        status, body = self.answers.pop(0) if self.answers else (500, "no answer queued")
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html")
        return web.json_response(body, status=status)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


async def serve_canned(aiohttp_server: Callable[..., Awaitable[Any]], prefix: str) -> tuple[Canned, str]:
    """A Canned vendor on loopback and its base URL (`http://127.0.0.1:PORT/{prefix}`)."""
    vendor = Canned()
    server = await aiohttp_server(vendor.app())
    return vendor, str(server.make_url("")).rstrip("/") + "/" + prefix


class UnitRigs:
    """Rigs of one source, made from a default source dict plus per-test overrides."""

    def __init__(
        self, write_config: Callable[..., Path], default: dict[str, Any], start: float = START
    ) -> None:
        self._write = write_config
        self._default = default
        self._start = start
        self._rigs: list[Rig] = []

    def make(self, **over: Any) -> Rig:
        rig = build_rig(self._write([{**self._default, **over}]), FakeClock(self._start))
        self._rigs.append(rig)
        return rig

    async def close(self) -> None:
        for r in self._rigs:
            await r.close()


async def poll(rig: Rig) -> dict[Any, float]:
    """One cycle, then what /metrics would show."""
    await rig.runner.run_cycle()
    return rig.scrape()
