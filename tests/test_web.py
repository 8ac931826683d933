"""The HTTP side in process: /metrics (format, negotiation, self-metrics), the pages, reload
and the web config (basic auth, TLS).

Every test runs the real aiohttp app against the FakeVendor over loopback; the TLS test
runs the real CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import gzip
import platform
import re
import socket
import ssl
import subprocess
import sys
import time
import zlib
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import bcrypt
import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from exporter import __version__
from exporter.process import daemon
from exporter.process import logsetup as exlog
from exporter.process.cli import main
from exporter.web.app import CACHE
from exporter.web.webconfig import LiveWebConfig
from tests.conftest import promtool, tv_source, wait_for
from tests.exporter_process import run_exporter

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


# ---- helpers ----------------------------------------------------------------------------


async def scrape(client: Any, path: str = "/metrics", **headers: str) -> tuple[aiohttp.ClientResponse, str]:
    headers.setdefault("Accept-Encoding", "identity")
    r = await client.get(path, headers=headers)
    return r, await r.text()


def families(text: str) -> dict[str, dict[str, Any]]:
    """Parse the text format: family name -> {help, type, samples: [(name, labels, value)]}."""
    fams: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            current = fams.setdefault(name, {"samples": []})
            current["help"] = line.split(" ", 3)[3] if len(line.split(" ", 3)) > 3 else ""
        elif line.startswith("# TYPE "):
            _, _, name, type_ = line.split()
            current = fams.setdefault(name, {"samples": []})
            current["type"] = type_
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
            assert m, f"unparseable sample line: {line!r}"
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            owner = _owner(m.group(1), fams)
            assert owner is not None, f"sample {m.group(1)} has no preceding HELP/TYPE"
            fams[owner]["samples"].append((m.group(1), labels, float(m.group(4))))
    return fams


def _owner(sample: str, fams: dict[str, dict[str, Any]]) -> str | None:
    if sample in fams:
        return sample
    for suffix in ("_bucket", "_sum", "_count", "_created"):
        base = sample.removesuffix(suffix)
        if base != sample and fams.get(base, {}).get("type") in ("histogram", "summary"):
            return base
    return None


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for fam in families(text).values():
        out.extend((labels, value) for n, labels, value in fam["samples"] if n == name)
    return out


def exporter_part(body: bytes) -> bytes:
    """The exporter's own families: everything but the process/python metrics."""
    return b"\n".join(
        line for line in body.split(b"\n") if not re.match(rb"(# (HELP|TYPE) )?(process_|python_)", line)
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ready_and_polled(
    exporter: Any, source: str = "tv", keys: tuple[str, ...] = ("a", "b", "c")
) -> None:
    await wait_for(exporter.store.ready)
    await wait_for(lambda: all(exporter.store.sources[source].targets[k].attempted for k in keys))


# ---- /metrics: format -------------------------------------------------------------------


async def test_every_family_has_help_and_type_and_only_counters_end_in_total(
    vendor, vendor_url, write_config, running
):
    """HELP and TYPE on every family; `_total` on counters and only on counters; units in names."""
    vendor.faults["b"] = "500"
    exporter, client = await running(write_config([tv_source(vendor_url, app_metrics=True)]))
    await ready_and_polled(exporter)
    _, text = await scrape(client)
    fams = families(text)
    assert "livestream_concurrent_viewers" in fams and "livestream_likes_total" in fams
    for name, fam in fams.items():
        assert fam.get("help"), f"{name} has no HELP text"
        assert fam.get("type") in ("gauge", "counter", "histogram", "summary", "untyped"), name
        if fam["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} does not end in _total"
        else:
            assert not name.endswith("_total"), f"{fam['type']} {name} ends in _total"
            assert all(not s[0].endswith("_total") for s in fam["samples"]), name
        if re.search(r"(duration|timestamp|interval)", name):
            assert re.search(r"_seconds(_total)?$", name), f"{name}: time without the _seconds unit"
        assert not re.search(r"(_ms|_milliseconds|_minutes)(_|$)", name), name


async def test_promtool_check_metrics_is_clean(vendor, vendor_url, write_config, running):
    """`promtool check metrics` prints nothing on our exposition."""
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not installed")
    vendor.faults["b"] = "500"
    exporter, client = await running(write_config([tv_source(vendor_url, app_metrics=True)]))
    await ready_and_polled(exporter)
    _, text = await scrape(client)
    proc = await asyncio.create_subprocess_exec(
        tool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), 30)
    report = (out + err).decode()
    assert proc.returncode == 0, report
    assert report.strip() == "", report


async def test_gzip_when_asked(vendor, vendor_url, write_config, running):
    """`Accept-Encoding: gzip` gets a gzip body with the same text."""
    exporter, client = await running(write_config([tv_source(vendor_url)], interval="1h"))
    await ready_and_polled(exporter, keys=("a",))
    plain_r, plain = await scrape(client)
    assert "Content-Encoding" not in plain_r.headers
    async with (
        aiohttp.ClientSession(auto_decompress=False) as raw,
        raw.get(client.make_url("/metrics"), headers={"Accept-Encoding": "gzip"}) as r,
    ):
        assert r.status == 200
        assert r.headers["Content-Encoding"] == "gzip"
        body = await r.read()
    assert body[:2] == b"\x1f\x8b", "not a gzip stream"
    unzipped = gzip.decompress(body)
    assert exporter_part(unzipped) == exporter_part(plain.encode())
    # one gzip member (some clients decode only the first one)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert d.decompress(body) == unzipped and d.eof and d.unused_data == b""


async def test_openmetrics_when_negotiated(vendor, vendor_url, write_config, running):
    """OpenMetrics negotiation gives its content type and exactly one trailing `# EOF`."""
    exporter, client = await running(write_config([tv_source(vendor_url)]))
    await ready_and_polled(exporter)
    r, text = await scrape(client, Accept=OPENMETRICS)
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith("# EOF\n")
    assert text.count("# EOF") == 1
    assert "# TYPE livestream_exporter_api_requests counter" in text
    assert "livestream_exporter_api_requests_total{" in text
    # and the default is the classic text format
    r, plain = await scrape(client)
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    assert "# EOF" not in plain
    # both parse, with the same families and samples
    assert _series(om_parse(text)) == _series(text_parse(plain))


PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("br, gzip;q=0.8", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, identity", False),
        ("x-gzip", False),
        ("notgzip", False),
        ("identity", False),
        ("*;q=0", False),
        ("gzip;q=0.5, identity;q=1", False),
        ("", False),
    ],
)
async def test_gzip_follows_the_q_values(vendor, vendor_url, write_config, running, accept_encoding, gzipped):
    exporter, client = await running(write_config([tv_source(vendor_url)], interval="1h"))
    await ready_and_polled(exporter, keys=("a",))
    async with (
        aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) as raw,
        raw.get(client.make_url("/metrics"), headers={"Accept-Encoding": accept_encoding}) as r,
    ):
        assert r.status == 200
        assert (r.headers.get("Content-Encoding") == "gzip") is gzipped
        assert (await r.read())[:2] == b"\x1f\x8b" if gzipped else True
        assert r.headers["Vary"] == "Accept, Accept-Encoding"


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (OPENMETRICS, True),
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text;q=0", False),
        ("application/openmetrics-text;version=1.0.0;q=0,text/plain;q=0.5", False),
        ("text/plain;q=0.9, application/openmetrics-text;q=0.5", False),
        ("text/plain, application/openmetrics-text", True),
        ("*/*", False),
        ("", False),
    ],
)
async def test_openmetrics_follows_the_q_values(
    vendor, vendor_url, write_config, running, accept, openmetrics
):
    exporter, client = await running(write_config([tv_source(vendor_url)], interval="1h"))
    await ready_and_polled(exporter, keys=("a",))
    r, text = await scrape(client, Accept=accept)
    assert r.headers["Content-Type"].startswith("application/openmetrics-text") is openmetrics
    assert text.endswith("# EOF\n") is openmetrics
    assert r.headers["Vary"] == "Accept, Accept-Encoding"


def _series(fams: Any) -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    """The exporter's families (not the process metrics) as name -> sorted (sample, labels)."""
    return {
        f.name: sorted((s.name, sorted(s.labels.items())) for s in f.samples)
        for f in fams
        if not f.name.startswith(("process_", "python_"))
    }


# ---- /metrics: the exporter's self-metrics ---------------------------------------------


async def test_self_metrics_carry_provider_and_source(vendor, vendor_url, write_config, running):
    """every exporter self-metric is present with provider/source labels."""
    exporter, client = await running(write_config([tv_source(vendor_url)]))
    await ready_and_polled(exporter)
    _, text = await scrape(client)
    fams = families(text)
    src = {"provider": "testvendor", "source": "tv"}

    def labelled(name: str, type_: str, extra: set[str] = frozenset()) -> list[tuple[dict[str, str], float]]:  # type: ignore[assignment]
        assert name in fams, f"{name} missing from /metrics"
        assert fams[name]["type"] == type_, (name, fams[name]["type"])
        got = [(lab, v) for n, lab, v in fams[name]["samples"] if n == name or n.startswith(name + "_")]
        assert got, f"{name} has no samples"
        for lab, _ in got:
            assert {k: lab.get(k) for k in src} == src, (name, lab)
            assert extra <= set(lab), (name, lab)
        return got

    reqs = labelled("livestream_exporter_api_requests_total", "counter", {"endpoint", "code"})
    assert any(lab["endpoint"] == "stream" and lab["code"] == "200" and v >= 3 for lab, v in reqs), reqs
    hist = labelled("livestream_exporter_api_request_duration_seconds", "histogram", {"endpoint"})
    names = {n for n, _, _ in fams["livestream_exporter_api_request_duration_seconds"]["samples"]}
    assert names == {
        "livestream_exporter_api_request_duration_seconds_bucket",
        "livestream_exporter_api_request_duration_seconds_sum",
        "livestream_exporter_api_request_duration_seconds_count",
    }
    assert any(lab.get("le") == "+Inf" for lab, _ in hist)
    labelled("livestream_exporter_throttled_total", "counter")
    labelled("livestream_exporter_rate_limit_waits_total", "counter")
    ((_, rps),) = labelled("livestream_exporter_rate_limit_requests_per_second", "gauge")
    assert rps == pytest.approx(10.0)  # testvendor's tightest default window: 600 per 60 s
    ((_, interval),) = labelled("livestream_exporter_poll_interval_seconds", "gauge")
    assert interval >= 0.2
    ((_, ntargets),) = labelled("livestream_exporter_targets", "gauge")
    assert ntargets == 3

    assert samples(text, "livestream_exporter_build_info") == [
        ({"version": __version__, "python_version": platform.python_version()}, 1.0)
    ]
    assert samples(text, "livestream_exporter_config_last_reload_successful") == [({}, 1.0)]
    ((_, ts),) = samples(text, "livestream_exporter_config_last_reload_success_timestamp_seconds")
    assert ts > 1.6e9
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"):
        assert samples(text, name), f"{name} missing"


async def test_api_requests_code_timeout_and_error(vendor, vendor_url, write_config, running):
    """`code` is "timeout" when the vendor answers too late, "error" when it cannot be reached."""
    vendor.faults["a"] = "slow"
    vendor.slow_seconds = 2.0
    cfg = write_config(
        [
            tv_source(vendor_url, targets=["a"]),
            tv_source(f"http://127.0.0.1:{closed_port()}", name="dead", targets=["a"]),
        ],
        timeout="200ms",
    )
    exporter, client = await running(cfg)
    await wait_for(lambda: exporter.store.sources["tv"].stats.requests[("stream", "timeout")] > 0)
    await wait_for(lambda: exporter.store.sources["dead"].stats.requests[("stream", "error")] > 0)
    _, text = await scrape(client)
    reqs = samples(text, "livestream_exporter_api_requests_total")
    codes = {(lab["source"], lab["code"]) for lab, _ in reqs}
    assert ("tv", "timeout") in codes, reqs
    assert ("dead", "error") in codes, reqs
    assert not any(lab["code"] == "200" for lab, _ in reqs)
    ups = {lab["source"]: v for lab, v in samples(text, "livestream_target_up")}
    assert ups == {"tv": 0.0, "dead": 0.0}


async def test_metrics_are_rendered_once_per_change(vendor, vendor_url, write_config, running):
    """Scrapes while nothing changed render nothing: they serve the cached bytes; a poll that
    lands makes the next scrape render once more."""
    exporter, client = await running(write_config([tv_source(vendor_url, targets=["a"])], interval="1h"))
    await ready_and_polled(exporter, keys=("a",))
    cache = client.server.app[CACHE]
    first = exporter_part((await scrape(client))[1].encode())
    renders = cache.renders
    for _ in range(3):
        assert exporter_part((await scrape(client))[1].encode()) == first
    assert cache.renders == renders, "a scrape with nothing changed rendered the store again"
    assert b'stream="tv/a"} 100.0' in first

    vendor.viewers["a"] = 123.0
    runner = exporter.runners["tv"]
    await runner.poll_batch(runner.targets())
    third = exporter_part((await scrape(client))[1].encode())
    assert cache.renders == renders + 1
    assert b'livestream_concurrent_viewers{provider="testvendor",source="tv",stream="tv/a"} 123.0' in third


# ---- pages, readiness and reload --------------------------------------------------------


async def test_healthy_and_reload_method(vendor, vendor_url, write_config, running):
    """/-/healthy is 200; /-/reload only accepts POST (GET is 405)."""
    _, client = await running(write_config([tv_source(vendor_url)]), enable_lifecycle=True)
    r = await client.get("/-/healthy")
    assert r.status == 200
    r = await client.get("/-/reload")
    assert r.status == 405


async def test_reload_over_http_is_forbidden_without_enable_lifecycle(
    vendor, vendor_url, write_config, running
):
    """As in Prometheus: POST /-/reload answers 403 unless --web.enable-lifecycle, and
    reloads nothing (a form on any web page could otherwise post to it)."""
    config = write_config([tv_source(vendor_url)])
    exporter, client = await running(config)
    await ready_and_polled(exporter)
    write_config([tv_source(vendor_url, targets=["a", "b", "c", "d"])])
    r = await client.post("/-/reload", data={"x": "1"})
    assert r.status == 403
    assert "--web.enable-lifecycle" in await r.text()
    assert "d" not in exporter.store.sources["tv"].targets


async def test_ready_once_every_source_polled(vendor, vendor_url, write_config, running):
    """/-/ready is 200 once every source has attempted its first poll (even a failing one)."""
    cfg = write_config(
        [tv_source(vendor_url), tv_source(f"http://127.0.0.1:{closed_port()}", name="dead", targets=["a"])]
    )
    exporter, client = await running(cfg)
    await wait_for(exporter.store.ready)
    r = await client.get("/-/ready")
    assert r.status == 200


async def test_post_reload_adds_a_target(vendor, vendor_url, write_config, running):
    """POST /-/reload re-reads the file; a target added there is polled and exported."""
    exporter, client = await running(write_config([tv_source(vendor_url)]), enable_lifecycle=True)
    await ready_and_polled(exporter)
    vendor.viewers["d"] = 444.0
    write_config([tv_source(vendor_url, targets=["a", "b", "c", "d"])])
    r = await client.post("/-/reload")
    assert r.status == 200, await r.text()
    await wait_for(lambda: exporter.store.sources["tv"].targets["d"].up)
    _, text = await scrape(client)
    assert 'livestream_concurrent_viewers{provider="testvendor",source="tv",stream="tv/d"} 444.0' in text
    assert samples(text, "livestream_exporter_config_last_reload_successful") == [({}, 1.0)]


async def test_post_reload_invalid_file_keeps_old_config(vendor, vendor_url, write_config, running, logs):
    """an invalid new file is rejected (500, the error), logged; the old config keeps polling."""
    cfg = write_config([tv_source(vendor_url)])
    exporter, client = await running(cfg, enable_lifecycle=True)
    await ready_and_polled(exporter)
    _, before = await scrape(client)
    ((_, ts_before),) = samples(before, "livestream_exporter_config_last_reload_success_timestamp_seconds")

    bad = yaml.safe_load(cfg.read_text())
    bad["sources"][0]["bogus_key"] = 1
    cfg.write_text(yaml.safe_dump(bad))
    r = await client.post("/-/reload")
    body = await r.text()
    assert r.status == 500
    assert "sources[0] (tv).bogus_key" in body and "unknown key" in body, body
    assert any("level=error" in line and "reload failed" in line for line in logs), logs

    polled = len(vendor.log)
    await wait_for(lambda: len([e for e in vendor.log[polled:] if e == ("stream", "a")]) >= 1)
    assert exporter.store.sources["tv"].targets["a"].up
    _, after = await scrape(client)
    assert samples(after, "livestream_exporter_config_last_reload_successful") == [({}, 0.0)]
    assert samples(after, "livestream_exporter_config_last_reload_success_timestamp_seconds") == [
        ({}, ts_before)
    ]
    assert 'stream="tv/a"} 100.0' in after


async def test_custom_telemetry_path(vendor, vendor_url, write_config, running):
    """--web.telemetry-path moves the metrics; the landing page links there."""
    exporter, client = await running(write_config([tv_source(vendor_url)]), telemetry_path="/x/stats")
    await ready_and_polled(exporter)
    r, text = await scrape(client, "/x/stats")
    assert r.status == 200 and "livestream_concurrent_viewers{" in text
    r = await client.get("/metrics")
    assert r.status == 404
    page = await (await client.get("/")).text()
    assert "http://h/x/stats" in {urljoin("http://h/", h) for h in re.findall(r'href="([^"]*)"', page)}


async def test_reload_that_cannot_start_rolls_back(vendor, vendor_url, write_config, running, monkeypatch):
    """A configuration that validates but fails while its runners are built does not leave the
    exporter without runners: reload() reports the error, reload_successful is 0 and the old
    sources keep polling."""
    cfg = write_config([tv_source(vendor_url)])
    exporter, client = await running(cfg)
    await ready_and_polled(exporter)
    real = daemon.SourceRunner

    def runner(**kw: Any) -> Any:
        if kw["source"].name == "broken":
            raise RuntimeError("cannot start this source")
        return real(**kw)

    monkeypatch.setattr(daemon, "SourceRunner", runner)
    write_config([tv_source(vendor_url), tv_source(vendor_url, name="broken", targets=["x"])])
    error = await exporter.reload()
    assert error is not None and "could not be started" in error and "RuntimeError" in error, error
    assert [s.name for s in exporter.config.sources] == ["tv"]
    assert set(exporter.runners) == {"tv"}
    polled = len(vendor.log)
    await wait_for(lambda: {("stream", k) for k in "abc"} <= set(vendor.log[polled:]), within=5)
    _, text = await scrape(client)
    assert samples(text, "livestream_exporter_config_last_reload_successful") == [({}, 0.0)]
    for k in "abc":
        assert f'livestream_target_up{{provider="testvendor",source="tv",stream="tv/{k}"}} 1.0' in text
    assert 'source="broken"' not in text


async def test_ready_after_discovery_before_the_first_target_slot(vendor, vendor_url, write_config, running):
    """A successful discovery counts as the source's first poll: /-/ready is 200 before the first
    target's slot (a quarter of a 60 s interval here)."""
    cfg = write_config([tv_source(vendor_url, targets=[], discover=True, interval="60s")])
    exporter, client = await running(cfg)
    await wait_for(lambda: ("list", "") in vendor.log)
    await wait_for(exporter.store.ready, within=3)
    r = await client.get("/-/ready")
    assert r.status == 200, await r.text()
    assert [e for e in vendor.log if e[0] == "stream"] == [], "a target slot already came"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


async def test_basic_auth_and_headers(vendor, vendor_url, write_config, running, tmp_path):
    """web config basic_auth_users (bcrypt) guards every page; its headers are sent."""
    web_file = tmp_path / "web.yaml"
    web_file.write_text(
        yaml.safe_dump(
            {
                "basic_auth_users": {"prom": _hash("right-pass")},
                "http_server_config": {"headers": {"X-Frame-Options": "deny", "X-Custom": "yes"}},
            }
        )
    )
    web_config = LiveWebConfig(str(web_file), exlog.get_logger())
    _, client = await running(write_config([tv_source(vendor_url)]), web_config=web_config)

    for path in ("/metrics", "/", "/-/healthy"):
        r = await client.get(path)
        assert r.status == 401, path
        assert r.headers["WWW-Authenticate"].startswith("Basic"), r.headers
    r = await client.get("/metrics", headers=basic("prom", "wrong-pass"))
    assert r.status == 401
    r = await client.get("/metrics", headers=basic("nobody", "right-pass"))
    assert r.status == 401
    r = await client.get("/metrics", headers={"Authorization": "Basic !!not-base64"})
    assert r.status == 401
    r = await client.get("/metrics", headers=basic("prom", "right-pass"))
    assert r.status == 200
    assert "livestream_exporter_build_info" in await r.text()
    assert r.headers["X-Frame-Options"] == "deny"
    assert r.headers["X-Custom"] == "yes"


async def test_basic_auth_takes_long_passwords_as_go_does_and_any_case_of_the_scheme(
    vendor, vendor_url, write_config, running, tmp_path
):
    """A password over bcrypt's 72 bytes once gave 500 with a traceback.  Go's bcrypt (node_exporter)
    and htpasswd use its first 72 bytes, so a hash made by either must work here too; the scheme
    is case-insensitive (RFC 7617)."""
    long_password = "p" * 72 + "-and-then-some"
    web_file = tmp_path / "web.yaml"
    hashed = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"prom": hashed}}))
    web_config = LiveWebConfig(str(web_file), exlog.get_logger())
    _, client = await running(write_config([tv_source(vendor_url)]), web_config=web_config)
    r = await client.get("/-/healthy", headers=basic("prom", long_password))
    assert r.status == 200
    r = await client.get("/-/healthy", headers=basic("prom", "x" * 200))
    assert r.status == 401
    token = basic("prom", long_password)["Authorization"].split(" ", 1)[1]
    for scheme in ("basic", "BASIC", "bAsIc"):
        r = await client.get("/-/healthy", headers={"Authorization": f"{scheme} {token}"})
        assert r.status == 200, scheme
    r = await client.get("/-/healthy", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 401


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_basic_auth_and_telemetry_path_through_the_cli(vendor_url, write_config, tmp_path):
    """the real CLI serves TLS from the web config, with basic auth, on a custom telemetry path."""
    cert, key = _self_signed(tmp_path)
    web_file = tmp_path / "web.yaml"
    web_file.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
                "basic_auth_users": {"prom": _hash("pw")},
                "http_server_config": {"headers": {"Strict-Transport-Security": "max-age=1"}},
            }
        )
    )
    trust = ssl.create_default_context(cafile=str(cert))
    cfg = write_config([tv_source(vendor_url)])
    async with run_exporter(
        tmp_path,
        "--web.config.file",
        str(web_file),
        "--web.telemetry-path",
        "/probe",
        config=cfg,
        ssl_context=trust,
        auth=("prom", "pw"),
    ) as p:
        status, text = await p.get("/probe")
        assert status == 200 and "livestream_concurrent_viewers{" in text
        assert (await p.get("/probe", auth=None))[0] == 401
        assert (await p.get("/metrics"))[0] == 404
        async with (
            aiohttp.ClientSession() as s,
            s.get(p.base + "/-/healthy", ssl=trust, headers=basic("prom", "pw")) as r,
        ):
            assert r.status == 200
            assert r.headers["Strict-Transport-Security"] == "max-age=1"
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served on a TLS port
            async with aiohttp.ClientSession() as s:
                await (await s.get(p.base.replace("https://", "http://") + "/-/healthy")).read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # and the cert is what we gave it
            async with aiohttp.ClientSession() as s:
                await s.get(p.base + "/-/healthy", ssl=ssl.create_default_context())


@pytest.mark.parametrize(
    ("web", "expected"),
    [
        ({"basic_auth_user": {"u": "x"}}, "basic_auth_user: unknown key"),
        ({"basic_auth_users": {"prom": "plaintext"}}, "basic_auth_users.prom: must be a bcrypt hash"),
        (
            {"tls_server_config": {"cert_file": "/nonexistent/c.pem", "key_file": "/nonexistent/k.pem"}},
            "tls_server_config: cannot load the certificate or key",
        ),
    ],
    ids=["unknown-key", "not-bcrypt", "unreadable-cert"],
)
def test_invalid_web_config_exits_2(web, expected, write_config, tmp_path, capsys):
    """an invalid --web.config.file is a configuration error: one readable line, exit 2."""
    web_file = tmp_path / "web.yaml"
    web_file.write_text(yaml.safe_dump(web))
    cfg = write_config([tv_source("http://127.0.0.1:9")])
    try:
        code = main(
            [
                "--config.file",
                str(cfg),
                "--web.config.file",
                str(web_file),
                "--web.listen-address",
                "127.0.0.1:0",
            ]
        )
    finally:  # main() pointed the logs at the captured stderr
        exlog.setup("info", "logfmt", stream=sys.__stderr__)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{web_file}: {expected}" in err, err
    assert "Traceback" not in err


def _bcrypt_seconds(hashed: str) -> float:
    start = time.perf_counter()
    bcrypt.checkpw(b"not-it", hashed.encode())
    return time.perf_counter() - start


async def test_wrong_passwords_do_not_block_other_requests(vendor_url, write_config, tmp_path):
    """bcrypt checks run off the event loop, so wrong passwords (cost 12: about 0.2 s of CPU
    each) stall neither other requests nor the polling: a request with the (cached) right
    password is answered while they go on."""
    hashed = bcrypt.hashpw(b"right-pass", bcrypt.gensalt(rounds=12)).decode()
    one_check = _bcrypt_seconds(hashed)
    web_file = tmp_path / "web.yaml"
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"prom": hashed}}))
    cfg = write_config([tv_source(vendor_url)])
    args = ("--web.config.file", str(web_file))
    async with run_exporter(tmp_path, *args, config=cfg, auth=("prom", "right-pass")) as p:
        wrong = [asyncio.create_task(p.get("/metrics", auth=("prom", f"wrong-{i}"))) for i in range(6)]
        await asyncio.sleep(0.1)  # they reached the exporter and its bcrypt checks are running
        start = time.perf_counter()
        status, _ = await p.get("/-/healthy")
        took = time.perf_counter() - start
        in_flight = sum(not t.done() for t in wrong)
        assert status == 200
        assert took < one_check, f"an authorized request waited {took:.2f}s for other requests' bcrypt"
        assert in_flight > 0, "the wrong passwords were not in flight any more"
        assert [s for s, _ in await asyncio.gather(*wrong)] == [401] * 6


CHECKPW_SPY = """
import sys
import bcrypt
_checkpw = bcrypt.checkpw
def _spy(password, hashed):
    print("bcrypt.checkpw called", file=sys.stderr, flush=True)
    return _checkpw(password, hashed)
bcrypt.checkpw = _spy
"""


async def test_an_unknown_user_costs_a_bcrypt_check_too(vendor_url, write_config, tmp_path):
    """An unknown user name is refused only after a bcrypt check, so the time of a 401 does not
    tell which user names exist."""
    web_file = tmp_path / "web.yaml"
    web_file.write_text(yaml.safe_dump({"basic_auth_users": {"prom": _hash("right-pass")}}))
    cfg = write_config([tv_source(vendor_url)])
    args = ("--web.config.file", str(web_file))
    async with run_exporter(
        tmp_path, *args, config=cfg, auth=("prom", "right-pass"), prelude=CHECKPW_SPY
    ) as p:
        checks = lambda: p.stderr.count("bcrypt.checkpw called")  # noqa: E731
        assert checks() == 1  # the right password, once: then it is cached
        assert (await p.get("/metrics"))[0] == 200
        assert checks() == 1
        assert (await p.get("/metrics", auth=("nobody", "right-pass")))[0] == 401
        assert checks() == 2, "an unknown user was refused without a bcrypt check"
        assert (await p.get("/metrics", auth=("prom", "wrong-pass")))[0] == 401
        assert checks() == 3
