"""Targets from outside the configuration: watched files and an HTTP endpoint, against real
files, a real local HTTP server and the simulator, on the fake clock."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from exporter.engine import targetlists
from exporter.engine.scheduler import PollScheduler
from exporter.model.clock import SystemClock
from exporter.simulator import Simulator, create_app
from tests.conftest import sim_sources, wait_for
from tests.pollhelpers import Rig, value
from tests.simrig import Rigs, SimWorld


class Polling:
    """The daemon's loops over a rig's runners, kept running while a test moves fake time."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.scheduler = PollScheduler(rig.clock)
        for runner in rig.runners.values():
            self.scheduler.add(runner)

    async def run(self, seconds: float) -> None:
        clock = self.rig.clock
        end = clock.monotonic() + seconds
        await wait_for(lambda: clock.monotonic() >= end, within=60.0, interval=0.001)


@pytest.fixture
async def polling() -> Any:
    started: list[Polling] = []

    def start(rig: Rig) -> Polling:
        started.append(Polling(rig))
        return started[-1]

    yield start
    for p in started:
        await p.scheduler.shutdown()


#: a file change is picked up within a check and a settle; twice that, as the fake clock
#: jumps ahead while a file is read in its thread
PICKUP = 2 * (targetlists.FILE_CHECK_SECONDS + targetlists.SETTLE_SECONDS) + 1


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    """Where the target files go (apart from the test's config.yaml)."""
    d = tmp_path / "targets"
    d.mkdir()
    return d


SESSIONS = ["session-algebra", "session-history", "session-physics", "session-chemistry", "session-biology"]


def write_list(path: Path, sessions: list[str], **extra: Any) -> None:
    path.write_text(yaml.safe_dump([{"live_event_session_id": s, **extra} for s in sessions]))


def fermion(world: SimWorld, **over: Any) -> dict[str, Any]:
    (source,) = sim_sources(world.root, "fermion", interval="10s", batch_size=1, **over)
    return source


def polled(rig: Rig, name: str) -> set[str]:
    return {k for k, t in rig.store.sources[name].targets.items() if t.last_success_mono is not None}


def lists(rig: Rig, origin: str) -> tuple[float | None, float | None, float | None]:
    samples = rig.scrape()
    labels = {"provider": "fermion", "source": "demo-fermion", "origin": origin}
    return (
        value(samples, "livestream_exporter_target_source_up", **labels),
        value(samples, "livestream_exporter_target_source_targets", **labels),
        value(samples, "livestream_exporter_target_source_last_success_timestamp_seconds", **labels),
    )


@pytest.fixture(autouse=True)
def _poll_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the fake clock, files are checked by time (inotify notices arrive in real time)."""
    monkeypatch.setattr(targetlists._Inotify, "open", classmethod(lambda cls: None))
    monkeypatch.setattr(targetlists, "OFF_LOOP", False)


async def test_files_add_remove_and_rename_targets(
    world: SimWorld, rigs: Rigs, lists_dir: Path, polling: Any
) -> None:
    a, b, c = lists_dir / "a.yaml", lists_dir / "b.yaml", lists_dir / "c.yaml"
    write_list(a, ["session-history"])
    source = fermion(
        world,
        targets=[{"live_event_session_id": "session-algebra"}],
        targets_files=[str(lists_dir / "*.yaml")],
    )
    rig = rigs.build([source])
    p = polling(rig)
    name = source["name"]
    await p.run(12.0)
    assert polled(rig, name) == {"session-algebra", "session-history"}
    assert lists(rig, str(a))[:2] == (1.0, 1.0)
    assert rig.store.sources[name].targets["session-history"].target.origin == "file"

    write_list(b, ["session-physics", "session-chemistry"])
    await p.run(10.0 + PICKUP)
    assert polled(rig, name) >= {"session-physics", "session-chemistry"}, (
        "new targets not polled in one interval"
    )
    assert lists(rig, str(b))[:2] == (1.0, 2.0)

    os.rename(b, c)  # an atomic replacement, as a careful writer does
    a.unlink()
    await p.run(PICKUP)
    targets = rig.store.sources[name].targets
    assert "session-history" not in targets, "the removed file's target kept its series"
    assert {"session-physics", "session-chemistry"} <= set(targets)
    assert lists(rig, str(a)) == (None, None, None) and lists(rig, str(b)) == (None, None, None)
    assert lists(rig, str(c))[:2] == (1.0, 2.0)
    assert (
        value(
            rig.scrape(),
            "livestream_concurrent_viewers",
            provider="fermion",
            source=name,
            stream="session-history",
        )
        is None
    )


async def test_bad_files_keep_the_previous_list(
    world: SimWorld, rigs: Rigs, lists_dir: Path, logs: list[str], polling: Any
) -> None:
    """Half-written, invalid YAML, a schema violation, a label another place uses, a
    directory: each keeps the file's previous targets, marks it down and logs one line
    naming the file and the key path; a good file brings it back."""
    f = lists_dir / "sessions.yaml"
    write_list(f, ["session-history", "session-physics"])
    source = fermion(
        world,
        targets=[{"live_event_session_id": "session-algebra", "name": "algebra"}],
        targets_files=[str(lists_dir / "*.yaml")],
    )
    rig = rigs.build([source])
    p = polling(rig)
    name = source["name"]
    await p.run(12.0)
    assert polled(rig, name) == {"session-algebra", "session-history", "session-physics"}
    _, _, good_since = lists(rig, str(f))
    wait = PICKUP

    bad = {
        "half-written": "- live_event_session_id: session-history\n- live_event_sess",
        "empty (truncated)": "",
        "invalid YAML": "- {live_event_session_id: [unclosed\n",
        "unknown key": "- {live_event_session_id: session-history, room: 1}\n",
        "label in use": "- {live_event_session_id: session-biology, name: algebra}\n",
    }
    expected = {
        "half-written": "[1]: must be a mapping",
        "empty (truncated)": "must be a list of targets",
        "invalid YAML": "invalid YAML",
        "unknown key": "[0].room: unknown key",
        "label in use": "stream label 'algebra' is already used",
    }
    for case, text in bad.items():
        logs.clear()
        f.write_text(text)
        await p.run(wait)
        assert {"session-history", "session-physics"} <= set(rig.store.sources[name].targets), case
        up, n, since = lists(rig, str(f))
        assert (up, n, since) == (0.0, 2.0, good_since), case
        lines = [line for line in logs if "target list not taken" in line]
        assert len(lines) == 1, (case, logs)
        assert str(f) in lines[0] and expected[case] in lines[0], (case, lines[0])
    write_list(f, ["session-chemistry"])
    await p.run(wait + 10.0)
    assert lists(rig, str(f))[:2] == (1.0, 1.0)
    assert "session-history" not in rig.store.sources[name].targets


async def test_a_file_rewritten_slowly_in_place_never_flaps(
    world: SimWorld, rigs: Rigs, lists_dir: Path, polling: Any
) -> None:
    """Truncated, then written a line at a time: read only once it holds still, so the
    targets it keeps are never dropped in between."""
    f = lists_dir / "sessions.yaml"
    write_list(f, ["session-history", "session-physics"])
    source = fermion(world, targets_files=[str(f)])
    rig = rigs.build([source])
    p = polling(rig)
    name = source["name"]
    await p.run(12.0)
    lines = yaml.safe_dump(
        [{"live_event_session_id": s} for s in ["session-history", "session-physics", "session-chemistry"]]
    ).splitlines(keepends=True)
    f.write_text("")
    seen: list[set[str]] = []
    for line in lines:
        await p.run(targetlists.SETTLE_SECONDS / 3)
        seen.append(set(rig.store.sources[name].targets))
        with f.open("a") as out:
            out.write(line)
    await p.run(PICKUP)
    assert all({"session-history", "session-physics"} <= s for s in seen), seen
    assert "session-chemistry" in rig.store.sources[name].targets


async def test_more_targets_from_a_file_lengthen_the_interval(
    world: SimWorld, rigs: Rigs, lists_dir: Path, polling: Any
) -> None:
    """300 sessions at once under 60 requests a minute: the plan lengthens to 5 minutes, as
    it does for configured targets."""
    keys = world.sim.add_streams("fermion", 300)
    f = lists_dir / "many.json"
    f.write_text(json.dumps([{"live_event_session_id": k} for k in keys]))
    source = fermion(world, targets=[], targets_files=[str(f)])
    rig = rigs.build([source])
    p = polling(rig)
    await p.run(30.0)
    assert rig.runner.interval == pytest.approx(300.0, rel=0.05)
    assert len(rig.store.sources[source["name"]].targets) == 300
    assert (
        value(rig.scrape(), "livestream_exporter_targets", provider="fermion", source=source["name"]) == 300
    )


class ListServer:
    """A CMS answering the target list, with whatever failure a test asks for."""

    def __init__(self, sessions: list[str]) -> None:
        self.sessions = sessions
        self.mode = "ok"
        self.auth: list[str | None] = []
        self.released = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.auth.append(request.headers.get("Authorization"))
        if self.mode == "500":
            return web.Response(status=500, text="oops")
        if self.mode == "html":
            return web.Response(text="<html>login</html>", content_type="text/html")
        if self.mode == "invalid":
            return web.Response(text='[{"live_event_session_id": ', content_type="application/json")
        if self.mode == "slow":
            await self.released.wait()
        return web.json_response([{"live_event_session_id": s} for s in self.sessions])


async def test_a_url_is_refreshed_and_its_failures_keep_the_list(
    world: SimWorld, rigs: Rigs, aiohttp_server: Any, lists_dir: Path, logs: list[str], polling: Any
) -> None:
    cms = ListServer(["session-history"])
    app = web.Application()
    app.router.add_get("/sessions", cms.handle)
    server = await aiohttp_server(app)
    url = str(server.make_url("/sessions"))
    token = lists_dir / "token"
    token.write_text("s3cret-token\n")
    source = fermion(
        world,
        targets=[],
        targets_url={"url": url, "refresh_interval": "30s", "timeout": "5s", "bearer_token_file": str(token)},
    )
    rig = rigs.build([source])
    p = polling(rig)
    name = source["name"]
    await p.run(12.0)
    assert polled(rig, name) == {"session-history"}
    assert cms.auth[-1] == "Bearer s3cret-token"
    assert lists(rig, url)[:2] == (1.0, 1.0)

    cms.sessions = ["session-history", "session-physics"]
    await p.run(30.0 + 10.0)
    assert polled(rig, name) == {"session-history", "session-physics"}
    fetches = len(cms.auth)

    for mode, reason in [
        ("500", "HTTP 500"),
        ("html", "not JSON"),
        ("invalid", "invalid JSON"),
        ("slow", "no answer within 5s"),
    ]:
        cms.mode = mode
        logs.clear()
        await p.run(40.0)
        assert set(rig.store.sources[name].targets) == {"session-history", "session-physics"}, mode
        assert lists(rig, url)[:2] == (0.0, 2.0), mode
        assert any(reason in line and url in line for line in logs), (mode, logs)
    assert len(cms.auth) - fetches <= 160 / 30 + 1, "asked more often than once per refresh_interval"
    assert "s3cret-token" not in "".join(logs)
    cms.released.set()
    cms.mode = "ok"
    cms.sessions = ["session-chemistry"]
    await p.run(30.0 + 10.0)
    assert set(rig.store.sources[name].targets) == {"session-chemistry"}
    assert lists(rig, url)[:2] == (1.0, 1.0)


async def test_the_same_target_from_two_places_is_one_target(
    world: SimWorld, rigs: Rigs, lists_dir: Path, polling: Any
) -> None:
    write_list(lists_dir / "a.yaml", ["session-history", "session-algebra"])
    write_list(lists_dir / "b.yaml", ["session-history"])
    source = fermion(
        world,
        targets=[{"live_event_session_id": "session-algebra"}],
        targets_files=[str(lists_dir / "*.yaml")],
    )
    rig = rigs.build([source])
    p = polling(rig)
    await p.run(12.0)
    assert sorted(rig.store.sources[source["name"]].targets) == ["session-algebra", "session-history"]
    assert [t.key for t in rig.runner.targets()] == ["session-algebra", "session-history"]


def test_config_check_counts_the_targets_of_each_file(lists_dir: Path) -> None:
    write_list(lists_dir / "a.yaml", ["s1", "s2", "s3"])
    (lists_dir / "b.yaml").write_text("- {live_event_session_id: s4, colour: red}\n")
    config = lists_dir.parent / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {
                        "name": "classes",
                        "provider": "fermion",
                        "credentials": {"api_key": "k"},
                        "targets_files": [str(lists_dir / "*.yaml"), str(lists_dir / "none/*.json")],
                        "targets_url": {"url": "https://cms.example/sessions"},
                    }
                ]
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config), "--config.check"],
        capture_output=True,
        text=True,
        check=False,
    )
    out = result.stdout
    assert f"  targets file {lists_dir / 'a.yaml'}: 3 targets" in out, out
    assert f"  targets file {lists_dir / 'b.yaml'}: [0].colour: unknown key" in out, out
    assert f"  targets file {lists_dir / 'none/*.json'}: no file matches yet" in out, out
    assert "  targets url https://cms.example/sessions (every 1m; not fetched by the check)" in out, out
    assert result.returncode == 2, "a file that cannot be used must fail the check"


async def test_inotify_sees_a_new_file_at_once(
    lists_dir: Path, write_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real time, the real kernel: with inotify a new file is read within about the settle
    time, not after the next periodic check."""
    monkeypatch.undo()  # inotify back
    monkeypatch.setattr(targetlists, "FILE_CHECK_SECONDS", 60.0)
    monkeypatch.setattr(targetlists, "SETTLE_SECONDS", 0.2)
    from exporter.engine.targetlists import _Inotify  # noqa: PLC0415

    if _Inotify.open() is None:
        pytest.skip("no inotify on this system")
    sim = Simulator(seed=1)
    runner = web.AppRunner(create_app(sim))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    root = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        (source,) = sim_sources(
            root,
            "fermion",
            interval="1s",
            batch_size=1,
            targets=[],
            targets_files=[str(lists_dir / "*.yaml")],
        )
        from tests.pollhelpers import build_rig  # noqa: PLC0415

        rig = build_rig(write_config([source]), SystemClock())
        task = asyncio.create_task(rig.runner.run_cycle())
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        start = loop.time()
        write_list(lists_dir / "new.yaml", ["session-history"])
        await wait_for(lambda: "session-history" in rig.store.sources[source["name"]].targets, within=5.0)
        assert loop.time() - start < 3.0
        await task
        await rig.close()
    finally:
        await runner.cleanup()
