"""Shared fixtures: the test provider registered, a fake vendor server, config files."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from exporter.config.registry import unregister
from exporter.model.clock import SYSTEM_CLOCK, Clock
from exporter.process import logsetup as exlog
from exporter.process.daemon import Exporter
from exporter.process.serve import with_polling
from exporter.simulator import Simulator, demo_config
from exporter.simulator import create_app as create_sim_app
from exporter.web.app import create_app
from tests import fakevendor
from tests.fakevendor import API_KEY, FakeVendor
from tests.simrig import Rigs, SimWorld, start_world


@pytest.fixture(autouse=True)
def _test_provider() -> Iterator[None]:
    fakevendor.install()
    yield
    unregister("testvendor")


@pytest.fixture
def vendor() -> FakeVendor:
    return FakeVendor()


@pytest.fixture
async def vendor_url(vendor: FakeVendor, aiohttp_server: Any) -> str:
    server = await aiohttp_server(vendor.app())
    return str(server.make_url("")).rstrip("/")


def tv_source(
    base_url: str, *, name: str = "tv", targets: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "testvendor",
        "base_url": base_url,
        "credentials": {"api_key": API_KEY},
        "targets": [{"stream_id": t} for t in (["a", "b", "c"] if targets is None else targets)],
        **extra,
    }


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(sources: list[dict[str, Any]], **global_: Any) -> Path:
        path = tmp_path / "config.yaml"
        doc = {
            "global": {"interval": "200ms", "timeout": "1s", "stale_after": "5m", **global_},
            "sources": sources,
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    return write


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Everything the exporter logs, as rendered lines."""

    class Capture:
        def __init__(self) -> None:
            self.lines: list[str] = []
            self._buf = ""

        def write(self, s: str) -> None:
            self._buf += s
            *done, self._buf = self._buf.split("\n")
            self.lines.extend(done)

        def flush(self) -> None:
            pass

    cap = Capture()
    exlog.setup("debug", "logfmt", stream=cap)
    yield cap.lines
    exlog.setup("info", "logfmt")


async def wait_for(cond: Callable[[], Any], within: float = 10.0, interval: float = 0.02) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = cond()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@pytest.fixture
async def running(logs: list[str]) -> AsyncIterator[Callable[..., Any]]:
    """Start an exporter on a config file behind a real aiohttp test server."""
    clients: list[TestClient[Any, Any]] = []

    async def start(
        config_file: Path, *, clock: Clock = SYSTEM_CLOCK, **kw: Any
    ) -> tuple[Exporter, TestClient[Any, Any]]:
        exporter = Exporter(str(config_file), log=exlog.get_logger(), clock=clock)
        config = exporter.load()
        app = create_app(exporter, **kw)
        with_polling(app, exporter, config)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return exporter, client

    yield start
    for c in clients:
        await c.close()


def promtool() -> str | None:
    path = shutil.which("promtool")
    if path is None and os.environ.get("CI") == "true":
        pytest.fail("promtool is required under CI=true (Debian package prometheus; make test installs it)")
    return path


# -- the vendor simulator (exporter.simulator) -------------------------------------------------


@pytest.fixture
async def simulator(aiohttp_server: Any) -> tuple[Any, str]:
    """(Simulator, root URL) of the vendor simulator on a real loopback server."""
    sim = Simulator()
    server = await aiohttp_server(create_sim_app(sim))
    return sim, str(server.make_url("")).rstrip("/")


def sim_sources(root: str, *providers: str, **overrides: Any) -> list[dict[str, Any]]:
    """The demo configuration's sources for `providers`, each updated with `overrides`."""
    sources = [s for s in demo_config(root)["sources"] if not providers or s["provider"] in providers]
    return [{**s, **overrides} for s in sources]


@pytest.fixture
async def world(aiohttp_server: Any) -> SimWorld:
    """The simulator on loopback, on one FakeClock started at START, recording every request
    it receives (`world.seen`)."""
    return await start_world(aiohttp_server)


@pytest.fixture
async def rigs(
    world: SimWorld, aiohttp_client: Any, write_config: Callable[..., Path]
) -> AsyncIterator[Rigs]:
    """Runners on the world's clock: `rigs.make(sources)` (with the real web app) or
    `rigs.build(sources)` (runners only)."""
    r = Rigs(world, aiohttp_client, write_config)
    yield r
    await r.close()
