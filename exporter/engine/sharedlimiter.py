"""One budget per source for every replica: the windows of `limiter` enforced in Redis.

The rule is the single process's (a request occupies each window of its bucket from its
send until its answer, plus the window), kept in two sorted sets per bucket: the requests
in flight (ticket -> deadline) and the latest completions (ticket -> time).  One Lua script
checks every window and takes the place atomically, on Redis' clock (`TIME`), so neither
the replicas' clocks nor races between them matter.  A replica that dies with requests in
flight cannot release them: each carries a deadline (the request timeout and a margin),
after which it counts as finished then.  A vendor's "slow down" becomes the source's
shared `paused_until`, which every replica's next request waits for.

Each replica also holds itself, always, to its part of each window: the window's requests
divided in proportion to the members' requests per cycle (their owned targets, and the
leases), by largest remainder, counted over its own requests in its local buckets.  The
parts of all replicas add up to exactly the window, so when Redis cannot be reached a
replica simply goes on with its part: no window can be exceeded, even one that straddles
the outage, because every request before it was within the sender's part too.  A replica
that vanished (it may only be cut off from Redis) keeps its part reserved for
`outage_grace`, after which it has stopped polling.  The shared windows are what holds
while parts move (a replica left, or joined): its requests still occupy Redis' windows.
A part that grew less than a window (and a request timeout) ago is not trusted during an
outage: the smaller one applies until then.  When Redis is back, the replica first writes
its requests of the outage into the shared windows (idempotently, by ticket), then shares
again.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from redis.exceptions import RedisError

from exporter.engine.cluster import LUA_NOW, REDIS_TIMEOUT_SECONDS, Cluster
from exporter.engine.limiter import WAIT_TOLERANCE, SourceLimiter, Ticket
from exporter.model.clock import Clock
from exporter.model.windows import Window

#: a request past its timeout by this much is finished for the shared windows, answered or not
DEADLINE_MARGIN = 2.0
#: how soon to ask Redis again while every place is taken by requests in flight
RECHECK_SECONDS = 0.1
#: how soon a replica without Redis looks again whether it is back, while it waits
DEGRADED_RECHECK_SECONDS = 0.5

# KEYS: in flight, done, paused_until; ARGV: ticket, deadline ms after now, key lifetime
# ms, then requests and per (ms) of each window.  Returns {granted, wait ms (-1: until an
# answer), paused (1) or not, Redis' now in ms}.
_ACQUIRE = (
    LUA_NOW
    + """
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then return {0, paused - now, 1, now} end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES')
for i = 1, #expired, 2 do redis.call('ZADD', KEYS[2], expired[i + 1], expired[i]) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
local inflight = redis.call('ZCARD', KEYS[1])
local ready = now
local keep = 0
for i = 4, #ARGV, 2 do
  local requests = tonumber(ARGV[i])
  local per = tonumber(ARGV[i + 1])
  if requests > keep then keep = requests end
  local room = requests - inflight
  if room <= 0 then return {0, -1, 0, now} end
  local entry = redis.call('ZREVRANGE', KEYS[2], room - 1, room - 1, 'WITHSCORES')
  if #entry > 0 then
    local leaves = tonumber(entry[2]) + per + 1
    if leaves > ready then ready = leaves end
  end
end
if ready > now then return {0, ready - now, 0, now} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local n = redis.call('ZCARD', KEYS[2])
if n > keep then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - keep - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1, 0, 0, now}
"""
)

# KEYS: in flight, done; ARGV: ticket, key lifetime ms.  The answer arrived: the request
# stays in the windows from now (a little after the real answer: on the safe side).
_RELEASE = (
    LUA_NOW
    + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return now
"""
)

# KEYS: paused_until; ARGV: pause ms.  Every replica waits until the latest pause ends.
_PAUSE = (
    LUA_NOW
    + """
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000) end
return now
"""
)

# KEYS: in flight, done; ARGV: key lifetime ms, how many completions to keep, then the
# number of completions, (ticket, time ms) pairs, then (ticket, deadline ms) pairs in
# flight.  NX: a ticket Redis already has is not counted twice.
_REPLAY = """
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  redis.call('ZADD', KEYS[2], 'NX', ARGV[i + 1], ARGV[i])
  i = i + 2
end
while i < #ARGV do
  if not redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i])
  end
  i = i + 2
end
local count = redis.call('ZCARD', KEYS[2])
local keep = tonumber(ARGV[2])
if count > keep then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, count - keep - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""


def occupancy(buckets: Mapping[str, Sequence[Window]], timeout: float) -> float:
    """How long one request can hold a place in the windows of `buckets`: until its
    deadline (the timeout and the margin), then for the longest window."""
    return max(w.per for ws in buckets.values() for w in ws) + timeout + DEADLINE_MARGIN


def split(windows: Sequence[Window], parts: Mapping[str, int]) -> dict[str, tuple[Window, ...]]:
    """Each member's windows: every window's requests divided in proportion to the members'
    parts (largest remainder, ties to the smaller name), so that they add up to exactly the
    window, and every replica computes the same split."""
    total = sum(n for n in parts.values() if n > 0)
    out: dict[str, list[Window]] = {m: [] for m in parts}
    for w in windows:
        quotas = {m: (w.requests * n / total if total and n > 0 else 0.0) for m, n in parts.items()}
        given = {m: math.floor(q) for m, q in quotas.items()}
        left = w.requests - sum(given.values()) if total else 0
        for m in sorted((m for m in parts if quotas[m] > 0), key=lambda m: (given[m] - quotas[m], m))[:left]:
            given[m] += 1
        for m in parts:
            out[m].append(Window(given[m], w.per))
    return {m: tuple(ws) for m, ws in out.items()}


class SharedLimiter(SourceLimiter):
    """The source's budget shared through Redis; its share of it while Redis is away."""

    def __init__(
        self,
        buckets: Mapping[str, Sequence[Window]],
        clock: Clock,
        *,
        cluster: Cluster,
        source: str,
        timeout: float,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        rng: Callable[[], float] | None = None,
        previous: SourceLimiter | None = None,
    ) -> None:
        kwargs = {"rng": rng} if rng is not None else {}
        super().__init__(
            buckets, clock, backoff_base=backoff_base, backoff_cap=backoff_cap, previous=previous, **kwargs
        )
        self.cluster = cluster
        self.source = source
        self.deadline = timeout + DEADLINE_MARGIN
        self._settle = occupancy(buckets, timeout)
        self._lifetime_ms = round(self._settle * 1000) + 60_000
        redis = cluster.redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._pause = redis.register_script(_PAUSE)
        self._replay = redis.register_script(_REPLAY)
        #: this replica's part of each bucket's windows (set by its runner), and what it was
        #: before it last grew (trusted instead during an outage until `_grown_until`)
        self.allowed: dict[str, tuple[Window, ...]] = {b: tuple(self.buckets[b].windows) for b in buckets}
        self._before_growth = dict(self.allowed)
        self._grown_until = -math.inf
        if isinstance(previous, SharedLimiter):
            self._before_growth = {b: previous._before_growth.get(b, w) for b, w in self.allowed.items()}
            self._grown_until = previous._grown_until
            self.allowed = {b: previous.allowed.get(b, w) for b, w in self.allowed.items()}
        #: tickets in flight (number -> id), and each bucket's latest completions with theirs
        self._flying: dict[int, str] = {}
        self._completed: dict[str, deque[tuple[float, str]]] = {
            b: deque(maxlen=max(w.requests for w in ws)) for b, ws in buckets.items()
        }
        if isinstance(previous, SharedLimiter):
            for b, entries in previous._completed.items():
                if b in self._completed:
                    self._completed[b].extend(entries)
        #: written into the shared windows since Redis last came back
        self._synced = False
        self._tasks: set[asyncio.Task[object]] = set()
        cluster.on_change(self._cluster_changed)

    def _cluster_changed(self) -> None:
        if not self.cluster.redis_up:
            self._synced = False
        self._changed.set()

    def set_allowed(self, allowed: Mapping[str, Sequence[Window]]) -> None:
        """This replica's part of each bucket's windows from now on."""
        new = {b: tuple(allowed.get(b, ())) or _closed(self.buckets[b].windows) for b in self.buckets}
        if any(_grew(self.allowed[b], new[b]) for b in new):
            now = self._clock.monotonic()
            before = self.allowed if now >= self._grown_until else self._before_growth
            self._before_growth = {b: _smaller(before[b], self.allowed[b]) for b in new}
            self._grown_until = now + self._settle
        self.allowed = new
        self._changed.set()

    def windows_now(self, bucket: str) -> tuple[Window, ...]:
        """The windows this replica holds itself to now: its part of the bucket's, or what
        it had before that grew, during an outage that began too soon after."""
        allowed = self.allowed[bucket]
        if not self.cluster.redis_up and self._clock.monotonic() < self._grown_until:
            return _smaller(allowed, self._before_growth[bucket])
        return allowed

    def _id(self, number: int) -> str:
        return f"{self.cluster.replica}:{number}"

    def _keys(self, bucket: str) -> list[str]:
        c = self.cluster
        return [
            c.source_key(self.source, "budget", bucket, "flying"),
            c.source_key(self.source, "budget", bucket, "done"),
            c.source_key(self.source, "paused"),
        ]

    async def acquire(self, bucket: str = "default") -> Ticket:
        b = self.buckets[bucket]
        waited = False
        async with self._lock:
            while True:
                number = next(self._numbers)
                now = self._clock.monotonic()
                ready = max(b.earliest(now, self.windows_now(bucket)), self._paused_until)
                if ready > now:
                    wait = ready - now
                    recheck = RECHECK_SECONDS if self.cluster.redis_up else DEGRADED_RECHECK_SECONDS
                elif not self.cluster.redis_up:
                    break
                else:
                    try:
                        shared_wait = await self._try_shared(number, bucket)
                    except (RedisError, OSError) as e:
                        self.cluster.lost(e)
                        continue
                    if shared_wait is None:
                        break
                    wait, recheck = shared_wait, RECHECK_SECONDS
                waited = waited or wait > WAIT_TOLERANCE
                await self._wait(min(wait, recheck))
            b.sent()
            self._flying[number] = self._id(number)
            self.sent += 1
        if waited:
            self.waits += 1
        return Ticket(bucket, number, waited)

    async def _try_shared(self, number: int, bucket: str = "default") -> float | None:
        """Take a place in Redis: None when taken, else how long to wait before asking again."""
        if not self._synced:
            await self._sync()
        windows = self.buckets[bucket].windows
        args: list[int | str] = [self._id(number), round(self.deadline * 1000), self._lifetime_ms]
        for w in windows:
            args += [w.requests, round(w.per * 1000)]
        granted, wait_ms, paused, _now = await self._acquire(keys=self._keys(bucket), args=args)
        if int(granted):
            return None
        wait = math.inf if int(wait_ms) < 0 else int(wait_ms) / 1000
        if int(paused):
            # another replica was told to slow down: this one's slots shift with the pause
            self._paused_until = max(self._paused_until, self._clock.monotonic() + wait)
        return wait

    async def _sync(self) -> None:
        """Write this replica's requests since it last shared into every bucket's windows."""
        offset = self.cluster.redis_offset
        if offset is None:
            return
        for name in self.buckets:
            done = self._completed[name]
            keys = self._keys(name)[:2]
            args: list[int | str] = [self._lifetime_ms, done.maxlen or 1, len(done)]
            for at, ticket in done:
                args += [ticket, round((at + offset) * 1000)]
            deadline = round((self._clock.monotonic() + offset + self.deadline) * 1000)
            for ticket in self._flying.values():
                args += [ticket, deadline]
            await self._replay(keys=keys, args=args)
        self._synced = True

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds`, or less if an answer or the cluster's state changes meanwhile."""
        self._changed.clear()
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        change = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((sleep, change), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            change.cancel()

    def release(self, ticket: Ticket) -> None:
        super().release(ticket)
        ident = self._flying.pop(ticket.number, None)
        if ident is None:
            return
        self._completed[ticket.bucket].append((self._clock.monotonic(), ident))
        if self.cluster.redis_up:
            keys = self._keys(ticket.bucket)[:2]
            self._spawn(self._release(keys=keys, args=[ident, self._lifetime_ms]))

    def backoff(self, retry_after: float | None = None) -> float:
        delay = super().backoff(retry_after)
        self._share_pause(self._paused_until - self._clock.monotonic())
        return delay

    def pause_for_window(self, bucket: str = "default") -> None:
        super().pause_for_window(bucket)
        self._share_pause(self._paused_until - self._clock.monotonic())

    def _share_pause(self, seconds: float) -> None:
        if seconds > 0 and self.cluster.redis_up:
            self._spawn(self._pause(keys=[self._keys("default")[2]], args=[round(seconds * 1000)]))

    def _spawn(self, call: object) -> None:
        async def run() -> None:
            try:
                await call  # type: ignore[misc]
            except (RedisError, OSError) as e:
                # the shared windows count the request until its deadline: on the safe side
                self.cluster.lost(e)

        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Let the last releases and pauses reach Redis (they are short), then stop."""
        self.cluster.off_change(self._cluster_changed)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2 * REDIS_TIMEOUT_SECONDS)
        for task in list(self._tasks):
            task.cancel()


def _closed(windows: Sequence[Window]) -> tuple[Window, ...]:
    return tuple(Window(0, w.per) for w in windows)


def _grew(old: Sequence[Window], new: Sequence[Window]) -> bool:
    return any(n.requests > o.requests for o, n in zip(old, new, strict=True))


def _smaller(a: Sequence[Window], b: Sequence[Window]) -> tuple[Window, ...]:
    return tuple(min(x, y, key=lambda w: w.requests) for x, y in zip(a, b, strict=True))
