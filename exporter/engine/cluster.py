"""Replicas that share their sources through Redis: membership, ownership, leases, shared state.

Each replica heartbeats into one sorted set (member -> expiry on Redis' clock, so replica
clocks never matter) and reads back who is alive.  Every target belongs to one live member,
chosen by rendezvous (highest-random-weight) hashing on (source, target): every replica
computes the same owner from the same member list, and a member joining or leaving moves
only the targets it wins or held, about 1/N of them.  Discovery and app-level requests
need one replica per source: the one holding the source's lease, renewed with each
heartbeat.  The leaseholder shares what discovery found, and the effective interval it
planned, in the source's state hash, so every replica polls the same list at the same pace.

When Redis cannot be reached, a replica keeps what it knew: the last member list (so it
keeps exactly the targets it owned), its leases, the last shared list.  The budget then
falls back to this replica's share (see `SharedLimiter`), and it rejoins by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from exporter.config.schema import ClusterConfig
from exporter.engine.stats import ClusterStats
from exporter.model.clock import Clock

#: how often a heartbeat renews membership and leases, as a fraction of their TTL
HEARTBEATS_PER_TTL = 3
#: a Redis call taking longer than this counts as Redis being unreachable
REDIS_TIMEOUT_SECONDS = 1.0
#: the shared discovered list outlives a leaseholder by far: a new one starts from it
STATE_TTL_SECONDS = 86400

#: the start of every script: `now` in milliseconds on Redis' clock, the one every replica shares
LUA_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_HEARTBEAT = (
    LUA_NOW
    + """
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local holders = {}
for i = 2, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if not holder then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ttl)
    holder = ARGV[1]
  elseif holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  holders[i - 1] = holder
end
return {now, members, holders}
"""
)

_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
"""


def default_replica_id() -> str:
    """Host name (a pod's name on Kubernetes) and a random suffix: a restarted replica is a
    new member, so its predecessor's entry simply expires."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def weight(member: str, source: str, key: str) -> int:
    """The rendezvous weight of `member` for the target `key` of `source`."""
    digest = hashlib.blake2b(f"{member}\0{source}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(members: Iterable[str], source: str, key: str) -> str:
    """The member that wins (source, key): the highest weight, ties to the smaller name."""
    return max(members, key=lambda m: (weight(m, source, key), m))


def connect(settings: ClusterConfig) -> Redis:
    """One client for the replica, failing fast: a request that waits for the budget must
    learn within a second or two that Redis is gone.  One retry, at once, because the first
    command after Redis restarted meets a pooled connection that Redis has closed."""
    return Redis.from_url(
        settings.redis_url,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
        health_check_interval=0,
    )


class Cluster:
    """This replica's view of the cluster, kept current by a heartbeat task."""

    def __init__(
        self,
        settings: ClusterConfig,
        *,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger,
        replica: str | None = None,
        redis: Redis | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.replica = replica or default_replica_id()
        self.log = log.bind(replica=self.replica)
        self.redis = redis or connect(settings)
        self.prefix = settings.key_prefix
        self.ttl = settings.heartbeat_ttl
        self.stats = ClusterStats(replica=self.replica, members=(self.replica,))
        self._sources: tuple[str, ...] = ()
        self._heartbeat = self.redis.register_script(_HEARTBEAT)
        self._leave = self.redis.register_script(_LEAVE)
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._joined = asyncio.Event()
        #: holder of each source's lease, as the last heartbeat saw it
        self.holders: dict[str, str] = {}
        #: until then (monotonic), members known before Redis went away stay members: after a
        #: restart of Redis they register again one by one, within one heartbeat
        self._grace_until = -1.0
        #: seconds to add to the monotonic clock to get Redis' clock (ms / 1000)
        self.redis_offset: float | None = None
        self._down_logged = False

    # -- keys ---------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def source_key(self, source: str, *parts: str) -> str:
        """A key of one source; the braces keep a source's keys in one Redis Cluster slot,
        so one script may touch all of them."""
        return ":".join((self.prefix, f"{{{source}}}", *parts))

    # -- membership ---------------------------------------------------------------------
    @property
    def members(self) -> tuple[str, ...]:
        return self.stats.members

    @property
    def redis_up(self) -> bool:
        return self.stats.redis_up

    def on_change(self, listener: Callable[[], None]) -> None:
        """`listener` runs whenever the member list, a lease or Redis' reachability changes."""
        self._listeners.append(listener)

    def off_change(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def joined(self) -> None:
        """Returns once this replica has reached Redis (at once afterwards)."""
        await self._joined.wait()

    def set_sources(self, names: Iterable[str]) -> None:
        """The sources whose leases this replica competes for (all configured ones)."""
        self._sources = tuple(sorted(names))

    def owns(self, source: str, key: str) -> bool:
        return owner(self.stats.members, source, key) == self.replica

    def leads(self, source: str) -> bool:
        return source in self.stats.leading

    def leader(self, source: str) -> str | None:
        """The replica sending the source's discovery and app-level requests, if known."""
        return self.holders.get(source)

    def start(self) -> None:
        """Heartbeat from now on.  A replica that has never reached Redis cannot know how many
        others share the budget, so its runners wait for `joined` before their first poll."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster heartbeat")

    async def _run(self) -> None:
        every = self.ttl / HEARTBEATS_PER_TTL
        while True:
            await self.beat()
            await self.clock.sleep(every)

    async def beat(self) -> None:
        """One heartbeat: renew membership and leases, read the members back."""
        leases = [self.source_key(s, "lease") for s in self._sources]
        try:
            sent = self.clock.monotonic()
            now_ms, members, holders = await self._heartbeat(
                keys=[self.key("members"), *leases], args=[self.replica, round(self.ttl * 1000)]
            )
        except (RedisError, OSError) as e:
            self.lost(e)
            return
        now = self.clock.monotonic()
        self.redis_offset = int(now_ms) / 1000 - (sent + now) / 2
        if self._joined.is_set() and not self.stats.redis_up:
            self._grace_until = now + self.ttl
        seen = set(members)
        if now < self._grace_until:
            seen.update(self.stats.members)
        self.holders = self.stats.leaders = {s: str(h) for s, h in zip(self._sources, holders, strict=True)}
        leading = frozenset(s for s, h in self.holders.items() if h == self.replica)
        self._update(tuple(sorted(seen)), leading)
        self._up()

    def _update(self, members: tuple[str, ...], leading: frozenset[str]) -> None:
        if self.replica not in members:
            members = tuple(sorted((*members, self.replica)))
        if members == self.stats.members and leading == self.stats.leading:
            return
        if members != self.stats.members:
            self.log.info(
                "cluster members changed",
                members=len(members),
                joined=len(set(members) - set(self.stats.members)),
                left=len(set(self.stats.members) - set(members)),
            )
        self.stats.members = members
        self.stats.leading = leading
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _up(self) -> None:
        if not self.stats.redis_up:
            if self._down_logged:
                self.log.info("Redis reachable again: the cluster shares its budgets again")
            self._down_logged = False
            self.stats.redis_up = True
            self._notify()
        self._joined.set()

    def lost(self, error: BaseException) -> None:
        """Redis did not answer: keep the last view, say so once."""
        if self.stats.redis_up or not self._down_logged:
            self._down_logged = True
            self.log.warning(
                "Redis unreachable: polling the targets this replica owned with its share of each budget",
                error=type(error).__name__,
                members=len(self.stats.members),
            )
        if self.stats.redis_up:
            self.stats.redis_up = False
            self._notify()

    async def stop(self) -> None:
        """Leave at once (the others take over without waiting for the TTL), then close."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        leases = [self.source_key(s, "lease") for s in self._sources]
        with contextlib.suppress(RedisError, OSError):
            await self._leave(keys=[self.key("members"), *leases], args=[self.replica])
        await self.redis.aclose()

    # -- shared state of a source -------------------------------------------------------
    async def publish(self, source: str, *, discovered: list[dict[str, Any]] | None, interval: float) -> None:
        """The leaseholder's discovered list (None: the source does not discover) and plan."""
        fields: dict[str | bytes, str | bytes | int | float] = {
            "interval": repr(interval),
            "by": self.replica,
        }
        if discovered is not None:
            fields["discovered"] = json.dumps(discovered, separators=(",", ":"), sort_keys=True)
        key = self.source_key(source, "state")
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
                pipe.expire(key, STATE_TTL_SECONDS)
                await pipe.execute()
        except (RedisError, OSError) as e:
            self.lost(e)

    async def shared(self, source: str) -> tuple[list[dict[str, Any]] | None, float | None]:
        """The source's shared discovered list and effective interval, when Redis has them."""
        try:
            state = await self.redis.hgetall(self.source_key(source, "state"))
        except (RedisError, OSError) as e:
            self.lost(e)
            return None, None
        discovered = state.get("discovered")
        interval = state.get("interval")
        return (
            json.loads(discovered) if discovered is not None else None,
            float(interval) if interval is not None else None,
        )
