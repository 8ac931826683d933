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
import math
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
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

# KEYS: members, vanished, then each source's lease; ARGV: replica, TTL ms, how long a
# vanished member's budget stays reserved (ms), then per lease whether this replica may take
# it if nobody holds it.  Members that expired move to `vanished` (a member that left on
# purpose does not).  Returns {now, members with their expiry, vanished, lease holders}.
_HEARTBEAT = (
    LUA_NOW
    + """
local ttl = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES')
for i = 1, #expired, 2 do redis.call('ZADD', KEYS[2], expired[i + 1], expired[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - reserve)
redis.call('PEXPIRE', KEYS[1], ttl * 4)
redis.call('PEXPIRE', KEYS[2], reserve + ttl * 4)
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local vanished = redis.call('ZRANGE', KEYS[2], 0, -1)
local holders = {}
for i = 3, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if not holder then
    if ARGV[i + 1] == '1' then
      redis.call('SET', KEYS[i], ARGV[1], 'PX', ttl)
      holder = ARGV[1]
    else
      holder = ''
    end
  elseif holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  holders[i - 2] = holder
end
return {now, members, vanished, holders}
"""
)

_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 3, #KEYS do
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
    learn within a second or two that Redis is gone.  One retry, at once, for a pooled
    connection that Redis has closed."""
    return Redis.from_url(
        settings.redis_url,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        decode_responses=True,
        health_check_interval=0,
    )


class Cluster:
    """This replica's view of the cluster, kept current by a heartbeat task.

    Two member lists: `members`, the live replicas, among which the targets are split; and
    `budget_members`, which also holds the replicas that vanished (stopped heartbeating
    without leaving) less than `outage_grace` ago.  A vanished replica may only be cut off
    from Redis, polling on with its share of every budget, so its share stays reserved
    until it must have stopped: a replica that has not reached Redis for `outage_grace`
    polls nothing.  A replica that leaves on purpose (SIGTERM) frees its share at once.
    """

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
        self.outage_grace = settings.outage_grace
        self.stats = ClusterStats(replica=self.replica, members=(self.replica,))
        #: replicas that vanished less than `outage_grace` ago: their budget share is reserved
        self.reserved: tuple[str, ...] = ()
        self._sources: tuple[str, ...] = ()
        self._settle = 0.0
        self._heartbeat = self.redis.register_script(_HEARTBEAT)
        self._leave = self.redis.register_script(_LEAVE)
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._joined = asyncio.Event()
        #: holder of each source's lease, as the last heartbeat saw it ("" for nobody)
        self.holders: dict[str, str] = {}
        #: until then (monotonic), members known before Redis went away stay members: after a
        #: restart of Redis they register again one by one, within one heartbeat
        self._grace_until = -1.0
        #: when a heartbeat last reached Redis (monotonic), for the fence
        self._last_beat = -math.inf
        #: before then this replica polls nothing: every other member must have seen it join
        self._active_at = math.inf
        self._next_beat = self.ttl / HEARTBEATS_PER_TTL
        #: seconds to add to the monotonic clock to get Redis' clock (ms / 1000)
        self.redis_offset: float | None = None
        self._down_logged = False
        self._was_polling = False
        self._bugs: set[str] = set()

    # -- keys ---------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def source_key(self, source: str, *parts: str) -> str:
        """A key of one source (the budget scripts touch only keys of one source)."""
        return ":".join((self.prefix, f"{{{source}}}", *parts))

    # -- membership ---------------------------------------------------------------------
    @property
    def members(self) -> tuple[str, ...]:
        return self.stats.members

    @property
    def budget_members(self) -> tuple[str, ...]:
        return tuple(sorted({*self.stats.members, *self.reserved}))

    @property
    def redis_up(self) -> bool:
        return self.stats.redis_up

    @property
    def polling(self) -> bool:
        """Whether this replica polls its targets now: it has joined, every member has
        seen it, and it has not been cut off from Redis for `outage_grace`."""
        now = self.clock.monotonic()
        return now >= self._active_at and (self.stats.redis_up or now - self._last_beat < self.outage_grace)

    def on_change(self, listener: Callable[[], None]) -> None:
        """`listener` runs whenever the member list, a lease or Redis' reachability changes."""
        self._listeners.append(listener)

    def off_change(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def joined(self) -> None:
        """Returns once this replica has reached Redis (at once afterwards)."""
        await self._joined.wait()

    def set_sources(self, names: Iterable[str], *, settle: float = 0.0) -> None:
        """The sources whose leases this replica competes for (all configured ones), and how
        long a request of theirs can occupy a window (the longest window, the timeout and
        its margin): a vanished replica's part of the budgets stays reserved that much
        longer than `outage_grace`, until its last requests have left every window."""
        self._sources = tuple(sorted(names))
        self._settle = settle

    def leads(self, source: str) -> bool:
        return source in self.stats.leading and self.polling

    def leader(self, source: str) -> str | None:
        """The replica sending the source's discovery and app-level requests, if known."""
        return self.holders.get(source) or None

    def start(self) -> None:
        """Heartbeat from now on.  A replica that has never reached Redis cannot know how many
        others share the budget, so its runners wait for `joined` before their first poll."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster heartbeat")

    async def _run(self) -> None:
        """Beat until stopped; a bug in one beat (or in a listener) is logged, never fatal:
        a replica whose heartbeat stopped would poll on while the others take its targets."""
        while True:
            try:
                await self.beat()
                self.check_polling()
            except Exception as e:
                if type(e).__name__ not in self._bugs:
                    self._bugs.add(type(e).__name__)
                    self.log.error("cluster heartbeat failed unexpectedly", exc_info=e)
            await self.clock.sleep(self._next_beat)

    async def beat(self) -> None:
        """One heartbeat: renew membership and leases, read the members back."""
        sources = self._sources
        leases = [self.source_key(s, "lease") for s in sources]
        now = self.clock.monotonic()
        grace = now < self._grace_until or (self._joined.is_set() and not self.stats.redis_up)
        known = set(self.stats.members)
        # right after Redis came back, a free lease goes to its previous holder first
        claims = []
        for s in sources:
            previous = self.holders.get(s, "")
            mine = not grace or previous in ("", self.replica) or previous not in known
            claims.append("1" if mine else "0")
        try:
            now_ms, members, vanished, holders = await self._heartbeat(
                keys=[self.key("members"), self.key("vanished"), *leases],
                args=[
                    self.replica,
                    round(self.ttl * 1000),
                    round((self.outage_grace + self._settle) * 1000),
                    *claims,
                ],
            )
        except (RedisError, OSError) as e:
            self.lost(e)
            return
        after = self.clock.monotonic()
        self.redis_offset = int(now_ms) / 1000 - (now + after) / 2
        if self._joined.is_set() and not self.stats.redis_up:
            self._grace_until = after + self.ttl
        fenced = self._joined.is_set() and after - self._last_beat >= self.outage_grace
        if not self._joined.is_set() or fenced:
            # joining (again): every other member sees this one within its next heartbeat
            self._active_at = after + self.ttl / HEARTBEATS_PER_TTL + 2 * REDIS_TIMEOUT_SECONDS
        self._last_beat = after
        expiries = {str(m): int(float(e)) for m, e in zip(members[::2], members[1::2], strict=True)}
        seen = set(expiries)
        if after < self._grace_until:
            seen.update(self.stats.members)
        # the next beat when the first other member's entry expires, so a dead replica's
        # targets move within the TTL (and never later than a third of it)
        others = [e for m, e in expiries.items() if m != self.replica]
        soonest = (min(others) - int(now_ms)) / 1000 + 0.05 if others else math.inf
        self._next_beat = max(0.05, min(self.ttl / HEARTBEATS_PER_TTL, soonest))
        self.reserved = tuple(sorted(str(m) for m in vanished if str(m) not in seen))
        self.holders = self.stats.leaders = {s: str(h) for s, h in zip(sources, holders, strict=True)}
        leading = frozenset(s for s, h in self.holders.items() if h == self.replica)
        if self._joined.is_set() and not self.stats.redis_up:
            # the pool's idle connections are from before (a restarted Redis closed them):
            # without them, the first requests after this beat do not fail once more
            await self.redis.connection_pool.disconnect(inuse_connections=False)
        self._update(tuple(sorted(seen)), leading)
        self._up()

    def check_polling(self) -> None:
        """Tell the runners when this replica starts or stops polling: once every member has
        seen it join, and when it has been cut off from Redis for `outage_grace` (the others
        may have taken its targets and its share of every budget by then)."""
        polling = self.polling
        if not polling:
            self.stats.leading = frozenset()  # its leases are no longer its to use
        if polling == self._was_polling:
            return
        self._was_polling = polling
        if not polling and self._joined.is_set():
            self.log.error(
                "Redis unreachable for longer than outage_grace: this replica stops polling until it"
                " reaches Redis again",
                outage_grace_seconds=self.outage_grace,
            )
        self._notify()

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
            try:
                listener()
            except Exception as e:
                if type(e).__name__ not in self._bugs:
                    self._bugs.add(type(e).__name__)
                    self.log.error("cluster change listener failed", exc_info=e)

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
        """Leave at once (the others take over, budget shares included, without waiting for
        the TTL), then close."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        leases = [self.source_key(s, "lease") for s in self._sources]
        with contextlib.suppress(RedisError, OSError):
            await self._leave(keys=[self.key("members"), self.key("vanished"), *leases], args=[self.replica])
        await self.redis.aclose()

    # -- shared state of a source -------------------------------------------------------
    async def publish(
        self, source: str, *, discovered: list[dict[str, Any]] | None, pages: int, interval: float
    ) -> None:
        """The leaseholder's discovered list (None: the source does not discover), how many
        pages discovery takes, and its plan."""
        fields: dict[str | bytes, str | bytes | int | float] = {
            "interval": repr(interval),
            "pages": str(pages),
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

    async def shared(self, source: str) -> SharedState:
        """The source's shared discovered list, page count and interval, as far as Redis has them."""
        try:
            state = await self.redis.hgetall(self.source_key(source, "state"))
        except (RedisError, OSError) as e:
            self.lost(e)
            return SharedState()
        try:
            discovered = json.loads(state["discovered"]) if "discovered" in state else None
            return SharedState(
                discovered=discovered if isinstance(discovered, list) else None,
                pages=int(state["pages"]) if "pages" in state else None,
                interval=float(state["interval"]) if "interval" in state else None,
            )
        except (ValueError, TypeError):
            # written by another version, or damaged: plan alone until the leaseholder rewrites it
            return SharedState()


@dataclass(frozen=True)
class SharedState:
    """What a source's leaseholder shares with the other replicas."""

    discovered: list[dict[str, Any]] | None = None
    pages: int | None = None
    interval: float | None = None
