"""Reloads under stress: a storm of them, files that block, and a shutdown in the middle."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config.loader import Config, load_config
from exporter.model.clock import FakeClock
from exporter.process import daemon
from exporter.process import logsetup as exlog
from exporter.process.daemon import Exporter
from tests.conftest import tv_source, wait_for
from tests.fakevendor import FakeVendor
from tests.test_reload import serve


async def test_a_reload_every_2s_starves_no_target(
    write_config: Any, running: Any, aiohttp_server: Any, logs: list[str]
) -> None:
    """A reload every 2 s for a minute, the file unchanged: every target is still polled every
    10 s, and neither a restart nor a "poll interval changed" line is logged."""
    clock = FakeClock()
    vendor = FakeVendor(viewers={s: 1.0 for s in "abcde"})
    url = await serve(aiohttp_server, vendor, clock)
    exporter, _ = await running(
        write_config([tv_source(url, targets=list("abcde"), interval="10s")]), clock=clock
    )
    await wait_for(exporter.store.ready)
    start = clock.monotonic()
    logs.clear()
    while clock.monotonic() < start + 60:
        assert await exporter.reload() is None
        await clock.sleep(2.0)
    for stream in "abcde":
        polls = [t for t in vendor.log.at("stream", stream) if t >= start]
        assert len(polls) >= 5, f"{stream} polled {len(polls)} times in 60 s"
    assert not [line for line in logs if "poll interval changed" in line]
    assert all("restarted=0" in line for line in logs if "configuration reloaded" in line)


async def test_a_credential_file_that_is_a_fifo_fails_the_reload_at_once(
    write_config: Any, running: Any, vendor_url: str, tmp_path: Path
) -> None:
    config = write_config([tv_source(vendor_url)])
    exporter, client = await running(config)
    await wait_for(exporter.store.ready)
    fifo = tmp_path / "api.key"
    os.mkfifo(fifo)
    doc = yaml.safe_load(config.read_text())
    doc["sources"][0]["credentials"] = {"api_key_file": str(fifo)}
    config.write_text(yaml.safe_dump(doc))
    error = await asyncio.wait_for(exporter.reload(), 5.0)
    assert error is not None and "not a regular file" in error
    assert (await client.get("/-/healthy")).status == 200


async def test_a_reload_blocked_on_a_hung_file_never_freezes_serving(
    write_config: Any, running: Any, vendor_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that never returns (a hung network mount): health checks are answered while
    the reload waits, and the reload gives up after its deadline, keeping the running config."""
    hung = threading.Event()
    config = write_config([tv_source(vendor_url)])

    def loader(path: str) -> Config:
        if hung.is_set():
            threading.Event().wait(30)  # the hung read
        return load_config(path)

    monkeypatch.setattr(daemon, "READ_TIMEOUT_SECONDS", 1.0)
    exporter, client = await running(config)
    exporter._loader = loader
    await wait_for(exporter.store.ready)
    hung.set()
    reload = asyncio.create_task(exporter.reload())
    await asyncio.sleep(0.1)
    r = await asyncio.wait_for(client.get("/-/healthy"), 0.5)
    assert r.status == 200 and not reload.done()
    error = await asyncio.wait_for(reload, 5.0)
    assert error is not None and "took longer than 1s" in error
    assert exporter.reload_status.successful is False
    assert "tv" in exporter.runners


async def test_shutdown_during_a_reload_leaves_nothing_running(write_config: Any, vendor_url: str) -> None:
    """SIGTERM while a reload is reading a slow file that adds a source: the reload is
    abandoned, and no runner or HTTP session outlives the shutdown."""
    config = write_config([tv_source(vendor_url)])
    reading = threading.Event()

    def slow_loader(path: str) -> Config:
        reading.set()
        threading.Event().wait(0.5)
        return load_config(path)

    exporter = Exporter(str(config), log=exlog.get_logger(), loader=slow_loader)
    await exporter.start(load_config(str(config)))
    write_config([tv_source(vendor_url), tv_source(vendor_url, name="added")])
    reload = asyncio.create_task(exporter.reload())
    await asyncio.to_thread(reading.wait, 5)
    await exporter.stop()
    await asyncio.gather(reload, return_exceptions=True)
    await asyncio.sleep(0.7)  # the file read ends after the stop
    assert exporter.runners == {}
    assert await exporter.reload() is not None, "a reload after the stop started sources again"
    assert exporter.runners == {}


async def test_a_restarted_source_logs_an_interval_change_only_when_there_is_one(
    write_config: Any, running: Any, aiohttp_server: Any, logs: list[str]
) -> None:
    """30 targets under 60 requests a minute: the budget lengthens the 10 s interval to 30 s.
    A reload that renames a target's label restarts the source with the same plan: no
    "poll interval changed" line.  One that adds a target lengthens it to 31 s: one line,
    saying what it was."""
    clock = FakeClock()
    ids = [f"s{i}" for i in range(30)]
    vendor = FakeVendor(viewers={i: 1.0 for i in [*ids, "extra"]})
    url = await serve(aiohttp_server, vendor, clock)
    limit = [{"requests": 60, "per": "1m"}]
    config = write_config([tv_source(url, targets=ids, interval="10s", rate_limit=limit)])
    exporter, _ = await running(config, clock=clock)
    await wait_for(exporter.store.ready)
    await clock.sleep(60)
    runner = exporter.runners["tv"]
    assert runner.interval == 30.0
    logs.clear()

    renamed = tv_source(url, targets=ids, interval="10s", rate_limit=limit)
    renamed["targets"][0]["name"] = "renamed"
    write_config([renamed])
    assert await exporter.reload() is None
    await clock.sleep(60)
    assert exporter.runners["tv"] is not runner, "the source was not restarted"
    assert not [line for line in logs if "poll interval changed" in line]

    renamed["targets"].append({"stream_id": "extra"})
    write_config([renamed])
    assert await exporter.reload() is None
    await clock.sleep(60)
    (changed,) = [line for line in logs if "poll interval changed" in line]
    assert "interval_seconds=31.0" in changed and "was_seconds=30.0" in changed
