"""Target state and what /metrics shows of it: old values kept on failure, staleness, gone
targets, health metrics and readiness.

Runners are driven by hand on a FakeClock against the real fake vendor, and /metrics,
/-/ready are served by the real web app over the same Store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from exporter.engine.stats import SourceStats
from exporter.model.clock import FakeClock
from exporter.model.errors import UpstreamError
from exporter.store.store import Store
from exporter.web.app import create_app
from tests.conftest import tv_source, wait_for
from tests.fakevendor import FakeVendor
from tests.pollhelpers import Rig, Samples, build_rig, fake_time_log, parse, series_of, tv, value

VALUES = ("livestream_concurrent_viewers", "livestream_likes_total", "livestream_live", "livestream_status")


class Served:
    """A rig plus the real web app over its store."""

    def __init__(self, rig: Rig, client: Any) -> None:
        self.rig = rig
        self.client = client

    async def metrics(self) -> Samples:
        r = await self.client.get("/metrics")
        assert r.status == 200
        return parse(await r.text())

    async def ready_status(self) -> int:
        return (await self.client.get("/-/ready")).status

    async def cycle(self, source: str | None = None) -> None:
        runner = self.rig.runners[source] if source else self.rig.runner
        await runner.run_cycle()


@pytest.fixture
async def served(aiohttp_client) -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def make(config_file: Path) -> Served:
        rig = build_rig(config_file, FakeClock())
        rigs.append(rig)
        exporter = SimpleNamespace(store=rig.store, clock=rig.clock, reload_status=rig.reload_status)
        client = await aiohttp_client(create_app(exporter))  # type: ignore[arg-type]
        return Served(rig, client)

    yield make
    for r in rigs:
        await r.close()


def stream_series(samples: Samples, stream: str) -> list[str]:
    return series_of(samples, stream=f"tv/{stream}")


# -- failures keep values; staleness; gone --------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("500", "upstream"),
        ("429", "throttled"),
        ("html", "parse"),
        ("truncated", "parse"),
        ("auth", "auth"),
        ("throttle200", "throttled"),
    ],
)
async def test_failed_poll_sets_up_0_and_keeps_previous_values(
    vendor, vendor_url, write_config, served, fault, kind
):
    s = await served(write_config([tv_source(vendor_url, targets=["a"])]))
    await s.cycle()
    before = await s.metrics()
    assert value(before, "livestream_target_up", **tv("a")) == 1
    last_success = value(before, "livestream_target_last_success_timestamp_seconds", **tv("a"))

    vendor.faults["a"] = fault
    vendor.viewers["a"] = 0.0  # would show if a failure were turned into a fresh answer
    s.rig.clock.advance(1.0)
    await s.cycle()
    after = await s.metrics()
    assert value(after, "livestream_target_up", **tv("a")) == 0
    assert value(after, "livestream_concurrent_viewers", **tv("a")) == 100, (
        "a failure must not report 0 viewers"
    )
    for name in ("livestream_concurrent_viewers", "livestream_likes_total_total", "livestream_live"):
        assert value(after, name, **tv("a")) == value(before, name, **tv("a")), name
    assert value(after, "livestream_target_last_success_timestamp_seconds", **tv("a")) == last_success
    assert s.rig.store.sources["tv"].targets["a"].error == kind


async def test_first_poll_failing_exports_up_0_and_no_values(vendor, vendor_url, write_config, served):
    vendor.faults["a"] = "500"
    s = await served(write_config([tv_source(vendor_url, targets=["a"])]))
    await s.cycle()
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **tv("a")) == 0
    assert not set(stream_series(samples, "a")) & set(VALUES), "no values were ever read: none may show"


async def test_values_vanish_after_stale_after_but_target_up_stays(vendor, vendor_url, write_config, served):
    s = await served(write_config([tv_source(vendor_url, targets=["a", "b"])], stale_after="10s"))
    clock = s.rig.clock
    await s.cycle()
    t_ok = s.rig.store.sources["tv"].targets["a"].last_success_mono
    assert t_ok is not None
    vendor.faults["a"] = "500"

    clock.advance(8.0)
    await s.cycle()  # a fails; the back-off (<= 1 s) delays b: still < stale_after since t_ok
    samples = await s.metrics()
    assert clock.monotonic() - t_ok < 10.0
    assert value(samples, "livestream_concurrent_viewers", **tv("a")) == 100

    # no poll at all in between: the scrape itself drops what is older than stale_after
    clock.advance(t_ok + 10.5 - clock.monotonic())
    samples = await s.metrics()
    assert value(samples, "livestream_concurrent_viewers", **tv("a")) is None
    assert [n for n in stream_series(samples, "a") if n.startswith(VALUES)] == []
    assert value(samples, "livestream_target_up", **tv("a")) == 0, (
        "health stays while the target is configured"
    )
    # b, polled successfully after a's failure, is not stale
    assert value(samples, "livestream_concurrent_viewers", **tv("b")) == 200

    # recovery: values back and up=1
    del vendor.faults["a"]
    vendor.viewers["a"] = 123.0
    await s.cycle()
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **tv("a")) == 1
    assert value(samples, "livestream_concurrent_viewers", **tv("a")) == 123
    assert value(samples, "livestream_concurrent_viewers", **tv("b")) == 200


async def test_gone_target_has_all_its_series_removed(vendor, vendor_url, write_config, served):
    s = await served(write_config([tv_source(vendor_url, targets=["a", "b"])]))
    await s.cycle()
    assert "livestream_target_up" in stream_series(await s.metrics(), "a")

    vendor.faults["a"] = "gone"  # HTTP 404
    s.rig.clock.advance(1.0)
    await s.cycle()
    samples = await s.metrics()
    assert stream_series(samples, "a") == [], "a gone stream's series are removed, not zeroed"
    assert value(samples, "livestream_concurrent_viewers", **tv("b")) == 200
    assert s.rig.store.sources["tv"].targets["a"].health == "gone"

    # a configured stream that comes back is polled again
    del vendor.faults["a"]
    s.rig.clock.advance(1.0)
    await s.cycle()
    samples = await s.metrics()
    assert value(samples, "livestream_target_up", **tv("a")) == 1
    assert value(samples, "livestream_concurrent_viewers", **tv("a")) == 100


async def test_gone_discovered_target_is_dropped(vendor, vendor_url, write_config, served):
    """A discovered stream the vendor answers 404 for is dropped from the source."""
    s = await served(write_config([tv_source(vendor_url, targets=[], discover=True)]))
    await s.cycle()
    vendor.faults["b"] = "gone"
    s.rig.clock.advance(1.0)
    await s.cycle()
    samples = await s.metrics()
    assert stream_series(samples, "b") == []
    assert "b" not in s.rig.store.sources["tv"].targets
    assert value(samples, "livestream_exporter_targets", provider="testvendor", source="tv") == 2


# -- health metrics ---------------------------------------------------------------------------


async def test_last_success_timestamp_and_poll_duration_are_exported(
    vendor, vendor_url, write_config, served
):
    s = await served(write_config([tv_source(vendor_url, targets=["a"])]))
    clock = s.rig.clock
    vendor.log = log = fake_time_log(clock)
    log.cost = 0.25  # each answer takes 250 ms of (fake) time
    wall0 = clock.time()
    await s.cycle()
    samples = await s.metrics()
    assert value(samples, "livestream_target_last_success_timestamp_seconds", **tv("a")) == pytest.approx(
        wall0 + 0.25
    )
    assert value(samples, "livestream_target_poll_duration_seconds", **tv("a")) == pytest.approx(0.25)
    src = {"provider": "testvendor", "source": "tv", "endpoint": "stream"}
    assert value(samples, "livestream_exporter_api_request_duration_seconds_sum", **src) == pytest.approx(
        0.25
    )
    assert value(samples, "livestream_exporter_api_request_duration_seconds_bucket", **src, le="0.25") == 1
    assert value(samples, "livestream_exporter_api_request_duration_seconds_bucket", **src, le="0.1") == 0

    # a failed poll updates the duration, not the last success
    vendor.faults["a"] = "500"
    log.cost = 0.5
    clock.advance(10.0)
    await s.cycle()
    samples = await s.metrics()
    assert value(samples, "livestream_target_last_success_timestamp_seconds", **tv("a")) == pytest.approx(
        wall0 + 0.25
    )
    assert value(samples, "livestream_target_poll_duration_seconds", **tv("a")) == pytest.approx(0.5)


async def test_app_level_series_carry_provider_and_source_only(vendor, vendor_url, write_config, served):
    s = await served(
        write_config([tv_source(vendor_url, targets=["a"], app_metrics=True)], stale_after="10s")
    )
    await s.cycle()
    samples = await s.metrics()
    app = [(n, dict(lv)) for n, lv in samples if n == "livestream_app_livestreams"]
    assert app == [("livestream_app_livestreams", {"provider": "testvendor", "source": "tv"})]
    assert value(samples, "livestream_app_livestreams", provider="testvendor", source="tv") == 7

    # a failing app-level poll keeps the value until stale_after, like a target's
    runner = s.rig.runner

    async def failing() -> Any:
        raise UpstreamError("app: HTTP 502", 502)

    runner.provider.poll_app = failing  # type: ignore[method-assign]
    s.rig.clock.advance(5.0)
    await s.cycle()
    samples = await s.metrics()
    assert value(samples, "livestream_app_livestreams", provider="testvendor", source="tv") == 7
    s.rig.clock.advance(6.0)
    samples = await s.metrics()
    assert value(samples, "livestream_app_livestreams", provider="testvendor", source="tv") is None


# -- readiness ----------------------------------------------------------------------------


def test_store_ready_only_after_every_source_attempted() -> None:
    store = Store()
    assert not store.ready()  # no configuration loaded
    store.keep_sources((n, "testvendor", SourceStats(provider="testvendor")) for n in ("x", "y"))
    assert not store.ready()
    store.mark_attempted("x")
    assert not store.ready()
    store.mark_attempted("y")
    assert store.ready()


async def test_ready_503_until_every_source_polled_then_200(
    vendor, vendor_url, write_config, served, aiohttp_server
):
    """A failing first poll still counts as attempted: ready means "has tried", not "is up"."""
    failing = FakeVendor(faults={"a": "500", "b": "500", "c": "500"})
    failing_url = str((await aiohttp_server(failing.app())).make_url("")).rstrip("/")
    s = await served(write_config([tv_source(vendor_url, name="one"), tv_source(failing_url, name="two")]))
    assert await s.ready_status() == 503
    await s.cycle("one")
    assert not s.rig.store.ready()
    assert await s.ready_status() == 503
    await s.cycle("two")
    assert not any(t.up for t in s.rig.store.sources["two"].targets.values())
    assert s.rig.store.ready()
    assert await s.ready_status() == 200


async def test_daemon_ready_after_first_polls_with_real_timestamps(write_config, running, aiohttp_server):
    """End to end through the daemon: /-/ready flips once the first (slow) poll is done, and
    the health series carry real wall-clock timestamps and durations."""
    vendor = FakeVendor(slow_seconds=0.3, faults={"a": "slow"})
    server = await aiohttp_server(vendor.app())
    url = str(server.make_url("")).rstrip("/")
    exporter, client = await running(write_config([tv_source(url, targets=["a"])]))
    assert (await client.get("/-/ready")).status == 503
    await wait_for(exporter.store.ready, within=5)
    assert (await client.get("/-/ready")).status == 200
    samples = parse(await (await client.get("/metrics")).text())
    assert value(samples, "livestream_target_up", **tv("a")) == 1
    last = value(samples, "livestream_target_last_success_timestamp_seconds", **tv("a"))
    assert last is not None and abs(last - time.time()) < 10
    duration = value(samples, "livestream_target_poll_duration_seconds", **tv("a"))
    assert duration is not None and 0.25 <= duration < 1.0
