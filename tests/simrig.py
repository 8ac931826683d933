"""The vendor simulator and hand-driven SourceRunners on one FakeClock, /metrics served for real.

    world = await start_world(aiohttp_server)          # Simulator on a loopback server
    rigs = Rigs(world, aiohttp_client, write_config)
    served = await rigs.make([source, ...])            # runners + the real web app over their store
    rig = rigs.build([source, ...])                    # runners only (`rig.scrape()` for /metrics)
    world.sim.set_viewers("gjirafa", "vp-news/audio", 500)
    world.at(300)                                      # simulated time: START + 300 s
    await served.cycle("gj")                           # one poll cycle (fake time, real HTTP)
    samples = await served.metrics()                   # GET /metrics, parsed

The simulator's wall clock and rate-limit clock are the runners' FakeClock, so curves,
5-minute vendor intervals, signature dates and rate limits all follow simulated time.
`world.seen` records every request that reached the simulator (method, raw path with its
query string exactly as sent, headers and body), for assertions on what a provider really
sends.  `Canned` is a tiny vendor for unit tests that records requests the same way.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from exporter.model.clock import FakeClock
from exporter.simulator import BASE_PATHS, Simulator
from exporter.simulator import create_app as create_sim_app
from exporter.web.app import create_app
from tests.pollhelpers import Rig, Samples, build_rig, parse

#: a multiple of 300 s and of 60 s: the simulator's 5-minute points and gjirafa intervals start here
START = 1_700_000_100.0


@dataclass(frozen=True)
class Seen:
    """One request as it reached a vendor."""

    method: str
    raw_path: str  # path and query string, byte for byte as the client sent them
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        """The raw path without its query string."""
        return self.raw_path.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        """The query string's parameters, decoded (blank values kept)."""
        return dict(parse_qsl(urlsplit(self.raw_path).query, keep_blank_values=True))

    def json(self) -> Any:
        """The body as JSON; None when there was none."""
        return json.loads(self.body) if self.body else None


async def record(request: web.Request) -> Seen:
    """The request as it reached the vendor."""
    return Seen(request.method, request.raw_path, dict(request.headers), await request.read())


@dataclass
class SimWorld:
    clock: FakeClock
    sim: Simulator
    root: str
    seen: list[Seen] = field(default_factory=list)
    start: float = START  # the clock's time when the simulator started

    def base_url(self, vendor: str) -> str:
        return self.root + BASE_PATHS[vendor]

    def at(self, seconds: float) -> None:
        """Move the shared clock to `seconds` after the simulator started."""
        self.clock.advance(self.start + seconds - self.clock.time())

    def requests_to(self, path_part: str) -> list[Seen]:
        return [s for s in self.seen if path_part in s.raw_path]


async def start_world(aiohttp_server: Callable[..., Awaitable[Any]], start: float = START) -> SimWorld:
    clock = FakeClock(start)
    sim = Simulator(
        clock=clock.time, monotonic=clock.monotonic, sleep=clock.sleep, slow_seconds=2.0, hang_seconds=5.0
    )
    requests: list[Seen] = []

    @web.middleware
    async def capture(request: web.Request, handler: Any) -> web.StreamResponse:
        requests.append(await record(request))
        response: web.StreamResponse = await handler(request)
        return response

    app = create_sim_app(sim)
    app.middlewares.append(capture)
    server = await aiohttp_server(app)
    root = str(server.make_url("")).rstrip("/")
    return SimWorld(clock=clock, sim=sim, root=root, seen=requests, start=start)


class Served:
    """Runners built from a config file, and the real web app over their store."""

    def __init__(self, world: SimWorld, rig: Rig, client: Any) -> None:
        self.world = world
        self.rig = rig
        self.client = client

    async def text(self, path: str) -> str:
        """GET `path` of the web app: its text (the answer must be 200)."""
        r = await self.client.get(path)
        assert r.status == 200, path
        return str(await r.text())

    async def metrics(self) -> Samples:
        return parse(await self.text("/metrics"))

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

    def build(self, sources: list[dict[str, Any]], **global_: Any) -> Rig:
        """Runners of `sources` on the world's clock, without a web app."""
        rig = build_rig(self._write(sources, **global_), self.world.clock)
        self._rigs.append(rig)
        return rig

    async def make(self, sources: list[dict[str, Any]], **global_: Any) -> Served:
        """Runners of `sources` on the world's clock, and the real web app over their store."""
        rig = self.build(sources, **global_)
        exporter = SimpleNamespace(
            store=rig.store, clock=rig.clock, reload_status=rig.reload_status, config_file=rig.config.file
        )
        client = await self._client(create_app(exporter))
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
        self.seen.append(await record(request))
        status, body = self.answers.pop(0) if self.answers else (500, "no answer queued")
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html")
        return web.json_response(body, status=status)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


async def serve_canned(aiohttp_server: Callable[..., Awaitable[Any]], prefix: str) -> tuple[Canned, str]:
    """A Canned vendor on loopback and its base URL (`http://127.0.0.1:PORT/{prefix}`, without a
    trailing slash when `prefix` is empty)."""
    vendor = Canned()
    server = await aiohttp_server(vendor.app())
    return vendor, str(server.make_url("/" + prefix)).rstrip("/")


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


async def cycles(rig: Rig, n: int = 1, source: str | None = None) -> None:
    """Run `n` cycles of one source (the rig's only one when not named) as the scheduler would:
    each starts one effective interval after the last."""
    run = rig.runner if source is None else rig.runners[source]
    for _ in range(n):
        began = rig.clock.monotonic()
        await run.run_cycle()
        rig.clock.advance(max(0.0, began + run.interval - rig.clock.monotonic()))
