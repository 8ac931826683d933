"""`livestream-exporter --demo`: every metric family the exporter exposes appears, with its
TYPE and labels, and one vendor failing leaves the other sources' targets up.

The first test runs the real console script in a subprocess; the last ones run the
exporter in process (real scheduler, real clock) against the simulator on loopback.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import VENDORS, Simulator
from tests.conftest import promtool, sim_sources
from tests.exporter_process import ROOT, ExporterProcess, _wait_ok, free_port

STREAM = frozenset({"provider", "source", "stream"})
SOURCE = frozenset({"provider", "source"})

#: every metric family the exporter exposes: name -> (TYPE, the labels each of its samples carries exactly)
FAMILIES: dict[str, tuple[str, frozenset[str]]] = {
    # per stream
    "livestream_concurrent_viewers": ("gauge", STREAM),
    "livestream_peak_concurrent_viewers": ("gauge", STREAM),
    "livestream_unique_viewers": ("gauge", STREAM),
    "livestream_viewers_total": ("counter", STREAM),
    "livestream_messages_total": ("counter", STREAM),
    "livestream_instructor_messages_total": ("counter", STREAM),
    "livestream_polls_total": ("counter", STREAM),
    "livestream_likes_total": ("counter", STREAM),
    "livestream_gifts_total": ("counter", STREAM),
    "livestream_gift_coins_total": ("counter", STREAM),
    "livestream_gift_senders": ("gauge", STREAM),
    "livestream_viewer_seconds_total": ("counter", STREAM),
    "livestream_ingest_seconds_total": ("counter", STREAM),
    "livestream_duration_seconds": ("gauge", STREAM),
    "livestream_started_timestamp_seconds": ("gauge", STREAM),
    "livestream_ended_timestamp_seconds": ("gauge", STREAM),
    "livestream_live": ("gauge", STREAM),
    "livestream_status": ("gauge", STREAM | {"status"}),
    "livestream_data_timestamp_seconds": ("gauge", STREAM),
    "livestream_stream_info": ("gauge", STREAM | {"name"}),  # at least these ("name, ...")
    # per source, app level
    "livestream_app_livestreams": ("gauge", SOURCE),
    "livestream_app_viewer_seconds_total": ("counter", SOURCE),
    "livestream_app_ingest_seconds_total": ("counter", SOURCE),
    # health, per target
    "livestream_target_up": ("gauge", STREAM),
    "livestream_target_last_success_timestamp_seconds": ("gauge", STREAM),
    "livestream_target_poll_duration_seconds": ("gauge", STREAM),
    # exporter, per source
    "livestream_exporter_api_requests_total": ("counter", SOURCE | {"endpoint", "code"}),
    "livestream_exporter_api_request_duration_seconds": ("histogram", SOURCE | {"endpoint"}),
    "livestream_exporter_throttled_total": ("counter", SOURCE),
    "livestream_exporter_rate_limit_waits_total": ("counter", SOURCE),
    "livestream_exporter_rate_limit_requests_per_second": ("gauge", SOURCE),
    "livestream_exporter_poll_interval_seconds": ("gauge", SOURCE),
    "livestream_exporter_targets": ("gauge", SOURCE),
    # process
    "livestream_exporter_build_info": ("gauge", frozenset({"version", "python_version"})),
    "livestream_exporter_config_last_reload_successful": ("gauge", frozenset()),
    "livestream_exporter_config_last_reload_success_timestamp_seconds": ("gauge", frozenset()),
    "process_cpu_seconds_total": ("counter", frozenset()),
    "process_resident_memory_bytes": ("gauge", frozenset()),
    "process_start_time_seconds": ("gauge", frozenset()),
}
#: families whose samples may carry more labels than listed
OPEN_LABELS = {"livestream_stream_info"}
#: how long a new user may wait for every family to show
APPEAR_WITHIN = 30.0


def exporter_command() -> str:
    """The installed console script, next to this interpreter (the project's venv) or on PATH."""
    beside = Path(sys.executable).parent / "livestream-exporter"
    found = str(beside) if beside.exists() else shutil.which("livestream-exporter")
    if found is None:
        pytest.fail("the livestream-exporter command is not installed (pip install -e .)")
    return found


async def spawn_demo(tmp_path: Path, *args: str, auth: tuple[str, str] | None = None) -> ExporterProcess:
    """`livestream-exporter --demo` on a free loopback port, its stderr in a file."""
    port = free_port()
    stderr_file = tmp_path / f"demo-{port}.stderr"
    with stderr_file.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            exporter_command(),
            "--demo",
            *args,
            "--web.listen-address",
            f"127.0.0.1:{port}",
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    return ExporterProcess(proc, f"http://127.0.0.1:{port}", stderr_file, auth=auth)


def shortfalls(text: str) -> list[str]:
    """What /metrics lacks against FAMILIES: missing families, wrong TYPE, wrong label names."""
    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
    families = {f.name: f for f in text_string_to_metric_families(text)}
    out = []
    for name, (typ, labels) in FAMILIES.items():
        base = name.removesuffix("_total") if typ == "counter" else name
        family = families.get(base)
        declared = types.get(name) or types.get(base)  # counters are declared with or without _total
        if family is None or declared != typ:
            out.append(f"{name}: TYPE {declared}, wanted {typ}")
            continue
        main = [s for s in family.samples if s.name in (name, name + "_bucket")]
        if not main:
            out.append(f"{name}: no samples")
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            got = set(sample.labels) - ({"le"} if sample.name.endswith("_bucket") else set())
            if got != labels and not (name in OPEN_LABELS and labels <= got):
                out.append(f"{name}: labels {sorted(got)}, wanted {sorted(labels)}")
                break
    return out


async def test_demo_shows_every_metric_family(tmp_path: Path) -> None:
    p = await spawn_demo(tmp_path)
    proc = p.proc
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await _wait_ok(p, "/-/ready", 20.0)
        missing: list[str] = ["not fetched yet"]
        text = ""
        while missing and loop.time() - started < APPEAR_WITHIN:
            text = await p.metrics()
            missing = shortfalls(text)
            if missing:
                await asyncio.sleep(0.5)
        assert missing == [], f"after {APPEAR_WITHIN:g}s:\n" + "\n".join(missing)

        families = {f.name: f for f in text_string_to_metric_families(text)}
        up = families["livestream_target_up"].samples
        assert {s.labels["provider"] for s in up} == set(VENDORS)
        for vendor in VENDORS:
            assert any(s.labels["provider"] == vendor and s.value == 1 for s in up), vendor

        tool = promtool()
        if tool is not None:
            check = await asyncio.create_subprocess_exec(
                tool,
                "check",
                "metrics",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            said, _ = await check.communicate(text.encode())
            assert check.returncode == 0 and said.strip() == b"", said.decode()

        code, took = await p.signal_and_wait(signal.SIGTERM, within=5.0)
        assert code == 0, p.stderr
        assert took < 5.0
        assert "Traceback" not in p.stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- one vendor failing ------------------------------------------------------------------------


def fast_first_cycle(sim: Simulator, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The demo sources, changed as each vendor of the simulator says (`quick_first_cycle`)
    so that every first cycle ends within about a second (the defaults spread some over up
    to 18 s), while staying within what the simulator enforces for the requests of this
    test's 15 s at most."""
    return [{**source, **sim.vendor(source["provider"]).quick_first_cycle} for source in sources]


def target_up(text: str) -> dict[str, dict[str, float]]:
    """source -> stream -> livestream_target_up."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "livestream_target_up":
            for s in family.samples:
                out.setdefault(s.labels["source"], {})[s.labels["stream"]] = s.value
    return out


@pytest.mark.parametrize("failing", VENDORS)
async def test_one_vendor_failing_leaves_the_others_up(
    simulator: Any, write_config: Any, running: Any, failing: str
) -> None:
    sim, root = simulator
    sim.inject(failing, "5xx", count=1_000_000)  # every request to that vendor, for good
    exporter, client = await running(write_config(fast_first_cycle(sim, sim_sources(root))))
    names = {s["provider"]: s["name"] for s in sim_sources(root)}

    def expected(provider: str) -> set[str]:
        targets = exporter.store.sources[names[provider]].targets.values()
        return {t.target.stream for t in targets if not t.gone}

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while True:
        text = await (await client.get("/metrics")).text()
        up = target_up(text)
        healthy = all(
            up.get(names[p], {}).keys() == expected(p) and expected(p) for p in VENDORS if p != failing
        )
        if healthy and up.get(names[failing]):
            break
        assert loop.time() < deadline, f"not every healthy target polled in time: {up}"
        await asyncio.sleep(0.1)

    for provider in VENDORS:
        values = up[names[provider]]
        if provider == failing:
            assert set(values.values()) == {0.0}, values
        else:
            assert set(values.values()) == {1.0}, (provider, values)
    # the failing source never succeeded: no stream values, only health and exporter series
    failing_series = {
        f.name
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.labels.get("source") == names[failing]
    }
    assert failing_series and all(
        n.startswith(("livestream_target_", "livestream_exporter_")) for n in failing_series
    ), failing_series
    assert f'source="{names[failing]}"' in text and 'code="503"' in text


async def test_demo_honours_the_web_config_file(tmp_path: Path) -> None:
    """A user trying basic auth (or TLS) with the demo gets it, and a missing file is an
    error, not a silent plain-HTTP demo."""
    missing = await asyncio.create_subprocess_exec(
        exporter_command(),
        "--demo",
        "--web.config.file",
        str(tmp_path / "absent.yaml"),
        "--web.listen-address",
        f"127.0.0.1:{free_port()}",
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(missing.communicate(), 20.0)
    assert missing.returncode == 2 and "absent.yaml" in err.decode()

    web_file = tmp_path / "web.yaml"
    hashed = bcrypt.hashpw(b"demo-pass", bcrypt.gensalt(rounds=4)).decode()
    web_file.write_text(f"basic_auth_users:\n  demo: '{hashed}'\n")
    p = await spawn_demo(tmp_path, "--web.config.file", str(web_file), auth=("demo", "demo-pass"))
    proc = p.proc
    try:
        await _wait_ok(p, "/-/healthy", 20.0)
        assert (await p.get("/metrics", auth=None))[0] == 401
        assert (await p.get("/metrics"))[0] == 200
    finally:
        proc.terminate()
        await proc.wait()
