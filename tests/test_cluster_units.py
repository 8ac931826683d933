"""The pieces of the cluster on their own: ownership, settings, and the shared budget in a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from exporter.config.loader import Config, load_config, with_cluster_url
from exporter.config.problems import ConfigError
from exporter.config.schema import ClusterConfig
from exporter.engine.cluster import Cluster, owner
from exporter.engine.sharedlimiter import DEADLINE_MARGIN, SharedLimiter, split
from exporter.model.clock import SYSTEM_CLOCK, FakeClock
from exporter.model.windows import Window
from exporter.process.settings import parse_args
from exporter.simulator.limits import max_in_window
from tests.clusterrig import RedisServer
from tests.tooling import config_check

LOG = structlog.get_logger()

# -- ownership ------------------------------------------------------------------------------


def _owners(members: list[str], keys: list[str]) -> dict[str, str]:
    return {k: owner(members, "src", k) for k in keys}


def test_a_joining_member_takes_about_one_nth_of_the_targets_and_only_moves_those() -> None:
    keys = [f"stream-{i}" for i in range(10_000)]
    before = _owners(["a", "b", "c"], keys)
    after = _owners(["a", "b", "c", "d"], keys)
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "d" for k in moved), "a target moved between members that stayed"
    assert 0.22 < len(moved) / len(keys) < 0.28
    counts = {m: sum(1 for o in after.values() if o == m) for m in "abcd"}
    assert max(counts.values()) / min(counts.values()) < 1.1


def test_a_leaving_member_hands_on_only_its_own_targets() -> None:
    keys = [f"stream-{i}" for i in range(5_000)]
    before = _owners(["a", "b", "c"], keys)
    after = _owners(["a", "c"], keys)
    assert all(before[k] == after[k] for k in keys if before[k] != "b")


def test_every_replica_computes_the_same_owner_whatever_the_order_of_members() -> None:
    keys = [f"k{i}" for i in range(500)]
    assert _owners(["x", "y", "z"], keys) == _owners(["z", "x", "y"], keys)


# -- settings -------------------------------------------------------------------------------

SOURCE = """
sources:
  - name: fm
    provider: fermion
    credentials: {api_key: abc}
    targets: [{live_event_session_id: s1}]
"""


def _load(tmp_path: Path, cluster: str) -> Config:
    f = tmp_path / "config.yaml"
    f.write_text(SOURCE + cluster)
    return load_config(f, env={})


@pytest.mark.parametrize(
    ("cluster", "problem"),
    [
        (
            "cluster: {redis_url: http://redis:6379}",
            "cluster.redis_url: must be a redis://, rediss:// or unix:// URL",
        ),
        (
            "cluster: {redis_url: redis://r:6379, heartbeat_ttl: 500ms}",
            "cluster.heartbeat_ttl: must be at least 3s",
        ),
        ("cluster: {redis_url: redis://r:6379, replicas: 3}", "cluster.replicas: unknown key"),
        (
            "cluster: {redis_url: redis://r, redis_password_file: /nonexistent/pw}",
            "cluster.redis_password_file:",
        ),
        ("cluster: {}", "cluster.redis_url: missing"),
        ("cluster: {redis_url: 'redis://:pa/ss-secret@r:6379'}", "cluster.redis_url: is not a valid URL"),
    ],
)
def test_cluster_settings_are_checked_with_their_key_path(tmp_path: Path, cluster: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, cluster)
    assert problem in str(e.value)


def test_the_redis_password_comes_from_its_file_and_is_a_secret(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret-redis-pw\n")
    config = _load(
        tmp_path,
        f"cluster: {{redis_url: 'redis://:url-pw-77@r:6379/0', redis_password_file: {tmp_path / 'pw'}}}",
    )
    assert config.cluster is not None
    assert config.cluster.redis_password.get_secret_value() == "s3cret-redis-pw"
    assert {"s3cret-redis-pw", "url-pw-77"} <= config.secrets()


def test_the_flag_overrides_the_file_and_keeps_its_other_settings(tmp_path: Path) -> None:
    config = _load(tmp_path, "cluster: {redis_url: redis://a:1/0, heartbeat_ttl: 7s}")
    flagged = with_cluster_url(config, "rediss://b:2/1")
    assert flagged.cluster is not None
    assert (flagged.cluster.redis_url, flagged.cluster.heartbeat_ttl) == ("rediss://b:2/1", 7.0)
    with pytest.raises(ConfigError, match=r"--cluster\.redis-url"):
        with_cluster_url(config, "tcp://b:2")


# -- the shared budget in a real Redis --------------------------------------------------------


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def _settings(url: str, password: str | None = None) -> ClusterConfig:
    extra = {"redis_password": password} if password else {}
    return ClusterConfig.model_validate({"redis_url": url, "heartbeat_ttl": "3s", **extra})


async def _replica(
    redis: RedisServer, name: str, windows: list[Window], answer_timeout: float
) -> tuple[Cluster, SharedLimiter]:
    cluster = Cluster(_settings(redis.url, RedisServer.PASSWORD), clock=SYSTEM_CLOCK, log=LOG, replica=name)
    cluster.set_sources(["src"])
    cluster.start()
    await asyncio.wait_for(cluster.joined(), 5)
    limiter = SharedLimiter(
        {"default": windows}, SYSTEM_CLOCK, cluster=cluster, source="src", timeout=answer_timeout
    )
    return cluster, limiter


async def test_two_replicas_never_exceed_the_window_together(redis: RedisServer) -> None:
    windows = [Window(4, 1.0)]
    replicas = [await _replica(redis, n, windows, answer_timeout=1.0) for n in ("a", "b")]
    sent: list[float] = []

    async def hammer(limiter: SharedLimiter) -> None:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            ticket = await limiter.acquire()
            sent.append(time.monotonic())
            await asyncio.sleep(0.01)  # the answer
            limiter.release(ticket)

    await asyncio.gather(*(hammer(lim) for _, lim in replicas))
    for cluster, limiter in replicas:
        await limiter.close()
        await cluster.stop()
    assert max_in_window(sent, 1.0) <= 4
    assert len(sent) >= 8, "the budget was not used"


async def test_a_dead_replicas_requests_hold_their_place_until_their_deadline(
    redis: RedisServer,
) -> None:
    windows = [Window(2, 0.5)]
    dead_cluster, dead = await _replica(redis, "dead", windows, answer_timeout=0.5)
    live_cluster, live = await _replica(redis, "live", windows, answer_timeout=0.5)
    start = time.monotonic()
    for _ in range(2):
        await dead.acquire()  # never released: the replica died with them in flight
    ticket = await live.acquire()
    waited = time.monotonic() - start
    live.release(ticket)
    await live.close()
    for cluster in (live_cluster, dead_cluster):
        await cluster.stop()
    # they count as in flight until the timeout and the margin, then for one window
    assert waited >= 0.5 + DEADLINE_MARGIN + 0.5 - 0.05


# -- without Redis: this replica's share -------------------------------------------------------


def _offline(clock: FakeClock, windows: list[Window]) -> SharedLimiter:
    cluster = Cluster(_settings("redis://127.0.0.1:1/0"), clock=clock, log=LOG, replica="me")
    return SharedLimiter({"default": windows}, clock, cluster=cluster, source="src", timeout=1.0)


async def test_without_redis_a_replica_sends_at_most_its_part_of_the_window() -> None:
    clock = FakeClock()
    limiter = _offline(clock, [Window(10, 1.0)])
    limiter.set_allowed({"default": split([Window(10, 1.0)], {"me": 9, "other": 12})["me"]})  # 4.3 of 10: 4
    sent = []
    end = clock.monotonic() + 5.0
    while clock.monotonic() < end:
        ticket = await limiter.acquire()
        sent.append(clock.monotonic())
        limiter.release(ticket)
    assert max_in_window(sent, 1.0) == 4


async def test_without_redis_a_share_that_just_grew_is_not_trusted_for_a_window() -> None:
    clock = FakeClock()
    limiter = _offline(clock, [Window(10, 1.0)])
    limiter.set_allowed({"default": (Window(3, 1.0),)})
    clock.advance(60)
    limiter.set_allowed(
        {"default": (Window(6, 1.0),)}
    )  # a member left: its requests may still be in the window
    assert [w.requests for w in limiter.windows_now("default")] == [3]
    clock.advance(1.0 + 1.0 + DEADLINE_MARGIN)  # a window and a request's deadline later
    assert [w.requests for w in limiter.windows_now("default")] == [6]


def test_the_flag_cannot_cluster_the_demo() -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(["--demo", "--cluster.redis-url", "redis://r:6379/0"])
    assert e.value.code == 2


def test_config_check_names_the_cluster_without_its_password(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text(SOURCE)
    r = config_check(f, extra_args=["--cluster.redis-url", "redis://:pw-in-url-9@r:6379/0"])
    assert r.returncode == 0, r.stderr
    assert "cluster: replicas share every budget through redis://" in r.stdout
    assert "pw-in-url-9" not in r.stdout + r.stderr


def test_the_parts_of_a_window_add_up_to_exactly_the_window_and_follow_the_work() -> None:
    windows = [Window(250, 10.0), Window(1200, 300.0)]
    parts = {"a": 340, "b": 332, "c": 333}
    split_up = split(windows, parts)
    for i, w in enumerate(windows):
        assert sum(split_up[m][i].requests for m in parts) == w.requests
    assert [w.requests for w in split_up["a"]] == [84, 406]
    # a member without work gets nothing; every replica computes the same split
    assert split([Window(1, 1.0)], {"b": 1, "a": 1, "c": 0}) == split(
        [Window(1, 1.0)], {"c": 0, "a": 1, "b": 1}
    )
    assert split([Window(5, 1.0)], {"a": 2, "idle": 0})["idle"] == (Window(0, 1.0),)


# -- this replica's membership -----------------------------------------------------------------


async def test_a_new_member_polls_only_once_every_other_member_has_seen_it(redis: RedisServer) -> None:
    clock = FakeClock(autojump=False)
    cluster = Cluster(_settings(redis.url, RedisServer.PASSWORD), clock=clock, log=LOG, replica="new")
    cluster.set_sources(["src"])
    await cluster.beat()
    assert cluster.redis_up and not cluster.polling
    clock.advance(cluster.ttl / 3 + 2 * 1.0 + 0.01)
    assert cluster.polling
    await cluster.stop()


async def test_a_member_cut_off_for_the_outage_grace_stops_polling_until_it_is_back(
    redis: RedisServer,
) -> None:
    clock = FakeClock(autojump=False)
    settings = ClusterConfig.model_validate(
        {
            "redis_url": redis.url,
            "redis_password": RedisServer.PASSWORD,
            "heartbeat_ttl": "3s",
            "outage_grace": "1m",
        }
    )
    cluster = Cluster(settings, clock=clock, log=LOG, replica="me")
    cluster.set_sources(["src"])
    await cluster.beat()
    clock.advance(10)
    assert cluster.polling
    await cluster.beat()  # the last heartbeat that reaches Redis
    redis.stop()
    await cluster.beat()  # Redis is gone: keep polling with the parts of the budgets
    assert not cluster.redis_up and cluster.polling
    clock.advance(59)
    assert cluster.polling
    clock.advance(2)
    assert not cluster.polling
    cluster.check_polling()
    assert cluster.stats.leading == frozenset()  # it no longer shows the lease it cannot use
    redis.start()
    await cluster.beat()
    assert cluster.redis_up and not cluster.polling  # the others must see it join again first
    clock.advance(cluster.ttl / 3 + 2.01)
    assert cluster.polling
    await cluster.stop()


async def test_a_reload_during_a_heartbeat_changes_the_sources_of_the_next_one(redis: RedisServer) -> None:
    cluster = Cluster(_settings(redis.url, RedisServer.PASSWORD), clock=SYSTEM_CLOCK, log=LOG, replica="me")
    cluster.set_sources(["a"])
    beat = asyncio.ensure_future(cluster.beat())
    await asyncio.sleep(0)
    cluster.set_sources(["a", "b", "c"])
    await beat
    assert set(cluster.holders) == {"a"}
    await cluster.beat()
    assert cluster.holders == {"a": "me", "b": "me", "c": "me"}
    await cluster.stop()


async def test_a_replica_that_vanished_keeps_its_budget_reserved_but_not_one_that_left(
    redis: RedisServer,
) -> None:
    members = [
        Cluster(_settings(redis.url, RedisServer.PASSWORD), clock=SYSTEM_CLOCK, log=LOG, replica=n)
        for n in "abc"
    ]
    for c in members:
        await c.beat()
    await members[2].stop()  # c leaves on purpose
    crashed = members[1]
    await crashed.redis.aclose()  # b stops heartbeating without leaving
    await asyncio.sleep(3.1)
    await members[0].beat()
    assert members[0].members == ("a",)
    assert members[0].budget_members == ("a", "b")
    await members[0].stop()
