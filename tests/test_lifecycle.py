"""Signals (reload, shutdown), also during start-up, and the log format and level, out of process.

The real CLI runs in a subprocess (`python -m tests.run_exporter`) and polls a FakeVendor
served by the test process over loopback.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import Awaitable, Callable

import aiohttp
import yaml

from tests.conftest import tv_source, wait_for
from tests.exporter_process import run_exporter

SHUTDOWN_NOISE = ("Traceback", "Task was destroyed", "Unclosed client session", "Unclosed connector")


def reload_successful(text: str) -> float:
    m = re.search(r"^livestream_exporter_config_last_reload_successful (\S+)$", text, re.M)
    assert m, text
    return float(m.group(1))


async def test_sighup_reloads_the_config_file(vendor, vendor_url, write_config, tmp_path):
    """SIGHUP re-reads the file; a target added there appears on /metrics."""
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(tmp_path, config=cfg) as p:
        assert 'stream="tv/a"} 100.0' in await p.metrics()
        vendor.viewers["d"] = 444.0
        write_config([tv_source(vendor_url, targets=["a", "b", "c", "d"])])
        p.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: ("stream", "d") in vendor.log)
        text = ""

        async def has_d() -> bool:
            nonlocal text
            text = await p.metrics()
            return (
                'livestream_concurrent_viewers{provider="testvendor",source="tv",stream="tv/d"} 444.0' in text
            )

        await _await_true(has_d)
        assert reload_successful(text) == 1.0
        assert "configuration reloaded" in p.stderr


async def test_sighup_with_invalid_file_keeps_the_old_config(vendor, vendor_url, write_config, tmp_path):
    """an invalid file on SIGHUP is logged as an error; the old targets keep being polled."""
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(tmp_path, config=cfg) as p:
        bad = yaml.safe_load(cfg.read_text())
        bad["sources"][0]["interval"] = "soon"
        cfg.write_text(yaml.safe_dump(bad))
        p.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: "reload failed" in p.stderr)
        line = next(ln for ln in p.stderr.splitlines() if "reload failed" in ln)
        assert "level=error" in line and "sources[0] (tv).interval" in line, line

        seen = len(vendor.log)
        await wait_for(lambda: {("stream", k) for k in "abc"} <= set(vendor.log[seen:]))
        text = await p.metrics()
        assert reload_successful(text) == 0.0
        for k in "abc":
            assert f'livestream_target_up{{provider="testvendor",source="tv",stream="tv/{k}"}} 1.0' in text
        assert p.proc.returncode is None


async def test_sigterm_exits_0_within_5s_with_a_poll_in_flight(vendor, vendor_url, write_config, tmp_path):
    """SIGTERM stops within 5 s, cancelling an in-flight poll cleanly, exit code 0."""
    vendor.faults["a"] = "slow"
    vendor.slow_seconds = 30.0
    cfg = write_config([tv_source(vendor_url, targets=["a"])], timeout="20s")
    async with run_exporter(tmp_path, config=cfg, wait_path="/-/healthy") as p:
        await wait_for(lambda: ("stream", "a") in vendor.log)
        code, took = await p.signal_and_wait(signal.SIGTERM, within=10.0)
        err = p.stderr
        assert code == 0, err
        assert took < 5.0, f"took {took:.1f}s to stop"
        for noise in SHUTDOWN_NOISE:
            assert noise not in err, err
        assert "stopped" in err


async def test_sigint_exits_0(vendor, vendor_url, write_config, tmp_path):
    """SIGINT is a clean shutdown too (exit 0, no traceback)."""
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(tmp_path, config=cfg) as p:
        code, took = await p.signal_and_wait(signal.SIGINT)
        err = p.stderr
        assert code == 0, err
        assert took < 5.0
        for noise in SHUTDOWN_NOISE:
            assert noise not in err, err


async def test_log_format_json(vendor, vendor_url, write_config, tmp_path):
    """--log.format json writes one JSON object per line."""
    vendor.faults["b"] = "500"
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(tmp_path, "--log.format", "json", config=cfg) as p:
        await wait_for(lambda: "poll failed" in p.stderr)
        code, _ = await p.signal_and_wait(signal.SIGTERM)
        assert code == 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines
    events = []
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        assert {"event", "level", "ts"} <= set(obj), obj
        events.append(obj)
    failed = next(e for e in events if e["event"] == "poll failed")
    assert failed["level"] == "warning"
    assert (failed["stream"], failed["error"], failed["source"]) == ("tv/b", "upstream", "tv")
    assert any(e["event"] == "listening" and e["level"] == "info" for e in events)


async def test_log_level_warn_hides_info(vendor, vendor_url, write_config, tmp_path):
    """--log.level warn shows warnings and hides info lines."""
    vendor.faults["b"] = "500"
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(tmp_path, "--log.level", "warn", config=cfg) as p:
        await wait_for(lambda: "poll failed" in p.stderr)
        code, _ = await p.signal_and_wait(signal.SIGTERM)
        assert code == 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert any("level=warning" in ln and "poll failed" in ln for ln in lines), lines
    assert all(re.search(r"\blevel=(warning|error|critical)\b", ln) for ln in lines), lines
    assert "listening" not in p.stderr and "started" not in p.stderr


async def test_logfmt_is_the_default_and_debug_shows_more(vendor, vendor_url, write_config, tmp_path):
    """logfmt by default (ts, level, event first); --log.level debug adds debug lines."""
    vendor.faults["b"] = "500"
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(tmp_path, "--log.level", "debug", config=cfg) as p:
        await wait_for(lambda: "level=debug" in p.stderr)
        code, _ = await p.signal_and_wait(signal.SIGTERM)
        assert code == 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    for line in lines:
        assert re.match(r'ts=\S+ level=(debug|info|warning|error) event=("[^"]*"|\S+)', line), line
    assert any("level=info" in ln and "event=listening" in ln for ln in lines), lines


async def _await_true(cond: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


# -- signals while the exporter is starting to serve --

#: run before the CLI: serving's start-up (building the web app) announces itself, then takes 1 s
SLOW_START = """
import sys
import time
import exporter.process.serve
_create_app = exporter.process.serve.create_app
def _slow_create_app(*args, **kwargs):
    print("serving starts", file=sys.stderr, flush=True)
    time.sleep(1.0)
    return _create_app(*args, **kwargs)
exporter.process.serve.create_app = _slow_create_app
"""


async def test_sighup_during_start_up_is_not_fatal(vendor, vendor_url, write_config, tmp_path):
    """A SIGHUP while the exporter is starting to serve (e.g. a config-management reload right
    after a start) does not kill it: it keeps running, serves, and applies the reload once started."""
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(tmp_path, config=cfg, wait_path=None, prelude=SLOW_START) as p:
        await wait_for(lambda: "serving starts" in p.stderr)
        p.proc.send_signal(signal.SIGHUP)

        async def serving() -> bool:
            assert p.proc.returncode is None, f"the SIGHUP killed it ({p.proc.returncode}):\n{p.stderr}"
            try:
                return (await p.get("/-/ready"))[0] == 200
            except (aiohttp.ClientError, OSError):
                return False

        await _await_true(serving)
        await wait_for(lambda: "configuration reloaded" in p.stderr)
        assert 'stream="tv/a"} 100.0' in await p.metrics()
        assert p.proc.returncode is None


async def test_sigterm_during_start_up_exits_0(vendor, vendor_url, write_config, tmp_path):
    """A SIGTERM while the exporter is starting to serve is a clean shutdown (exit code 0), not
    the default action (exit -15)."""
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(tmp_path, config=cfg, wait_path=None, prelude=SLOW_START) as p:
        await wait_for(lambda: "serving starts" in p.stderr)
        code, took = await p.signal_and_wait(signal.SIGTERM, within=10.0)
        err = p.stderr
        assert code == 0, err
        assert took < 5.0
        assert "Traceback" not in err
        assert "stopped" in err
