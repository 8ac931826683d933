"""Fixtures of the provider tests.  A test module declares its data; the fixtures read it.

- `canned`: (Canned, base URL) - a tiny loopback vendor (`tests.simrig.Canned`) whose base URL
  ends in the module's `CANNED_PREFIX` (a path such as "client/v4", or "" for the bare root).
- `unit`: make(**overrides) -> Rig - one source against `canned`: the module's `UNIT_SOURCE`
  (a source dict without `base_url`) updated with `overrides`, on its own FakeClock at START.
- `world` and `rigs` (from tests/conftest.py): the simulator on its FakeClock, and runners on it.
- `demo_source`: source(**overrides) -> dict - the demo configuration's source of the module's
  `DEMO_PROVIDER` polling `world`, updated with the module's `DEMO_CHANGES`, then `overrides`.

Every rig a fixture makes is closed at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import sim_sources
from tests.pollhelpers import Rig
from tests.simrig import Canned, SimWorld, UnitRigs, serve_canned


@pytest.fixture
async def canned(request: pytest.FixtureRequest, aiohttp_server: Any) -> tuple[Canned, str]:
    return await serve_canned(aiohttp_server, request.module.CANNED_PREFIX)


@pytest.fixture
async def unit(
    request: pytest.FixtureRequest, canned: tuple[Canned, str], write_config: Callable[..., Path]
) -> AsyncIterator[Callable[..., Rig]]:
    _, base = canned
    rigs = UnitRigs(write_config, {**request.module.UNIT_SOURCE, "base_url": base})
    yield rigs.make
    await rigs.close()


@pytest.fixture
def demo_source(request: pytest.FixtureRequest, world: SimWorld) -> Callable[..., dict[str, Any]]:
    provider: str = request.module.DEMO_PROVIDER
    changes: dict[str, Any] = getattr(request.module, "DEMO_CHANGES", {})

    def source(**overrides: Any) -> dict[str, Any]:
        (s,) = sim_sources(world.root, provider, **{**changes, **overrides})
        return s

    return source
