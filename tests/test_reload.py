"""A reload restarts only the sources whose configuration changed.

An unchanged source keeps its runner, its HTTP session, its polls in flight and its
schedule; a changed one gets a new runner that keeps the counters and the budget's
history; a removed one stops.  All on the fake clock, against real fake-vendor servers.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from exporter.model.clock import FakeClock
from tests.conftest import tv_source, wait_for
from tests.fakevendor import FakeVendor
from tests.pollhelpers import TimedLog


async def serve(aiohttp_server: Any, vendor: FakeVendor, clock: FakeClock) -> str:
    vendor.clock = clock
    vendor.log = TimedLog(clock.monotonic)
    server = await aiohttp_server(vendor.app())
    return str(server.make_url("")).rstrip("/")


async def test_an_unchanged_source_keeps_its_runner_session_polls_and_schedule(
    write_config, running, aiohttp_server
):
    clock = FakeClock()
    # "steady" answers in 0.9 s, so a poll is likely in flight when the reload happens
    steady = FakeVendor(slow_seconds=0.9, faults={"a": "slow", "b": "slow", "c": "slow"})
    edited = FakeVendor()
    steady_url = await serve(aiohttp_server, steady, clock)
    edited_url = await serve(aiohttp_server, edited, clock)
    exporter, _ = await running(
        write_config(
            [tv_source(steady_url, name="steady", interval="6s"), tv_source(edited_url, name="edited")]
        ),
        clock=clock,
    )
    await wait_for(lambda: len(steady.log) >= 5 and steady.answering)
    clock.autojump = False  # time stands still while the reload happens
    (in_flight,) = steady.answering
    polled_before = exporter.store.sources["steady"].targets[in_flight].last_success
    runner = exporter.runners["steady"]
    session = runner.http._session
    assert session is not None
    replaced = exporter.runners["edited"]

    write_config(
        [
            tv_source(steady_url, name="steady", interval="6s"),
            tv_source(edited_url, name="edited", targets=["a", "b", "c", "d"]),
        ]
    )
    assert await exporter.reload() is None

    assert exporter.runners["steady"] is runner
    assert runner.http._session is session and not session.closed
    assert exporter.runners["edited"] is not replaced
    assert steady.answering == {in_flight}, "the poll in flight was cancelled"
    clock.autojump = True
    # the poll that was in flight during the reload lands
    await wait_for(lambda: exporter.store.sources["steady"].targets[in_flight].last_success != polled_before)
    # and the schedule goes on undisturbed: a cycle every 6 s, a slot every 2 s, from the start
    await wait_for(lambda: len(steady.log) >= 12)
    starts = steady.log.times[:12]
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx([2.0] * 11)


async def test_a_changed_source_keeps_its_counters_and_last_values(write_config, running, aiohttp_server):
    clock = FakeClock()
    vendor = FakeVendor()
    url = await serve(aiohttp_server, vendor, clock)
    exporter, _ = await running(write_config([tv_source(url)]), clock=clock)
    await wait_for(lambda: exporter.store.sources["tv"].targets["c"].up)
    requests = sum(exporter.store.sources["tv"].stats.requests.values())
    old = exporter.runners["tv"]

    write_config([tv_source(url, targets=["a", "b", "c", "d"])])
    vendor.viewers["d"] = 400.0
    assert await exporter.reload() is None
    assert exporter.runners["tv"] is not old
    state = exporter.store.sources["tv"]
    assert state.targets["a"].up, "the last values of a target that stays are kept"
    assert sum(state.stats.requests.values()) >= requests, "the request counters went back"
    await wait_for(lambda: exporter.store.sources["tv"].targets["d"].up)


async def test_a_reload_that_changes_nothing_restarts_nothing(write_config, running, aiohttp_server, logs):
    clock = FakeClock()
    vendor = FakeVendor()
    url = await serve(aiohttp_server, vendor, clock)
    cfg = write_config([tv_source(url, name="one"), tv_source(url, name="two")])
    exporter, _ = await running(cfg, clock=clock)
    await wait_for(exporter.store.ready)
    before = dict(exporter.runners)
    assert await exporter.reload() is None
    assert exporter.runners == before
    assert all(exporter.runners[n] is r for n, r in before.items())
    assert any("configuration reloaded" in line and "restarted=0" in line for line in logs)
