"""Targets from files and an HTTP endpoint, per source, kept apart by origin.

Each file matched by `targets_files` and the `targets_url` is one origin with its own list.
A new good list replaces that origin's list; anything else (unreadable, half-written,
invalid, a stream label another origin uses, an HTTP error) keeps the previous list, logs
one line naming the origin and the key path, and marks the origin down.  A file that no
longer exists takes its targets with it at once.

Files are watched with inotify where the kernel has it (a rescan follows any change in a
watched directory) and checked every `FILE_CHECK_SECONDS` anyway.  A changed file is read
only once it has stayed the same for `SETTLE_SECONDS`: a file rewritten in place (truncated,
then written) is never read half-way.  The URL is fetched once per `refresh_interval`, and
never more often: that is its whole budget.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import ctypes.util
import glob
import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import structlog

from exporter.config.files import MAX_CREDENTIAL_BYTES, FileProblem, read_text_file
from exporter.config.problems import ConfigError
from exporter.config.schema import SourceBase, TargetsURL
from exporter.config.targetlists import parse_target_list, read_target_file, render_problems
from exporter.engine.stats import TargetListStats
from exporter.model.clock import Clock, Overtime, within
from exporter.model.offloop import READ_TIMEOUT_SECONDS, OffLoopTimeout, off_loop
from exporter.model.samples import Origin, Target

#: how often files are looked at without inotify (and, with it, as a safety net)
FILE_CHECK_SECONDS = 5.0
#: a changed file is read once it has not changed for this long
SETTLE_SECONDS = 1.0
#: file reads in threads of their own (a hung mount must not freeze the loop); tests on the
#: fake clock read inline, where the clock cannot jump ahead while a thread reads
OFF_LOOP = True
#: the biggest target list a URL may answer
MAX_URL_BODY = 16 * 1024 * 1024

_Stamp = tuple[int, int, int]
T = TypeVar("T")
#: what `--config.check` says of a pattern no file matches (not an error: files may come later)
NO_MATCH = "no file matches yet"


@dataclass
class _Origin:
    """One file's or the URL's list."""

    targets: tuple[Target[Any], ...] = ()
    stamp: _Stamp | None = None
    error: str | None = None


class TargetLists:
    """The external targets of one source.  `on_change` is called whenever the merged list
    changes; `taken(origin)` says which stream labels and keys the rest of the source uses."""

    def __init__(
        self,
        source: SourceBase,
        *,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger,
        stats: dict[str, TargetListStats],
        on_change: Callable[[], None],
        taken: Callable[[str], dict[str, str]],
        inotify: bool = True,
    ) -> None:
        self.source = source
        self.clock = clock
        self.log = log
        self.stats = stats
        self.on_change = on_change
        self.taken = taken
        self.origins: dict[str, _Origin] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._use_inotify = inotify
        self._inotify: _Inotify | None = None
        self._loaded = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        #: a changed file's stamp and when it was first seen so (it is read once it holds still)
        self._seen: dict[str, tuple[_Stamp | None, float]] = {}
        stats.clear()

    # -- what the runner sees ---------------------------------------------------------------
    def targets(self) -> list[Target[Any]]:
        """Every origin's targets, files in name order, then the URL; each key once."""
        seen: set[str] = set()
        out: list[Target[Any]] = []
        for origin in sorted(self.origins, key=lambda o: (o == self._url_origin, o)):
            for t in self.origins[origin].targets:
                if t.key not in seen:
                    seen.add(t.key)
                    out.append(t)
        return out

    @property
    def _url_origin(self) -> str | None:
        return self.source.targets_url.url if self.source.targets_url else None

    async def loaded(self) -> None:
        """Until every origin was tried once (the first cycle waits for it)."""
        await self._loaded.wait()

    def preload(self) -> None:
        """Read the files now, blocking (for `--config.check`, which plans with them)."""
        for path in matching_files(self.source.targets_files):
            try:
                specs = read_target_file(path, self.source.provider)
            except (FileProblem, ConfigError):
                continue
            self._accept(path, tuple(Target.of(s, Origin.FILE) for s in specs), None)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        if self.source.targets_files:
            self._tasks.append(loop.create_task(self._watch_files()))
        if self.source.targets_url is not None:
            self._tasks.append(loop.create_task(self._poll_url(self.source.targets_url)))
        if self._use_inotify and self.source.targets_files:
            self._inotify = _Inotify.open()
        if self._inotify is not None:
            for directory in self._directories():
                self._inotify.watch(directory)
            loop.add_reader(self._inotify.fd, self._on_inotify)

    async def stop(self) -> None:
        if self._inotify is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _on_inotify(self) -> None:
        if self._inotify is not None and self._inotify.drain():
            self._wake.set()

    # -- files ------------------------------------------------------------------------------
    def _directories(self) -> list[str]:
        return sorted({os.path.dirname(os.path.abspath(p)) or "/" for p in self.source.targets_files})

    async def _watch_files(self) -> None:
        try:
            await self._watch_files_loop()
        except Exception:
            self.log.exception("target files: watching failed")
            raise

    async def _watch_files_loop(self) -> None:
        first = True
        while True:
            pending = await self._scan_files(settle=not first)
            if first and self.source.targets_url is None:
                self._loaded.set()
            first = False
            wait = SETTLE_SECONDS if pending else FILE_CHECK_SECONDS
            self._wake.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep(wait))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    async def _scan_files(self, *, settle: bool = True) -> bool:
        """Read what changed; whether a change is still settling.  The first scan reads
        every file at once: at start there is nothing to protect."""
        try:
            paths, stamps = await _blocking(self._stat_all, seconds=READ_TIMEOUT_SECONDS, what="target files")
        except OffLoopTimeout as e:
            self.log.warning("target files not checked", reason=str(e))
            return False
        changed = False
        for gone in [o for o in self.origins if o != self._url_origin and o not in paths]:
            del self.origins[gone]
            self.stats.pop(gone, None)
            self.log.info("target file removed; its targets go", file=gone)
            changed = True
        settling = False
        for path in paths:
            stamp = stamps.get(path)
            state = self.origins.get(path)
            if state is not None and state.stamp == stamp:
                continue
            # changed since last seen: read it once it has held still for SETTLE_SECONDS
            seen = self._seen.get(path)
            now = self.clock.monotonic()
            if not settle or state is None:
                # a new file (or one renamed into place) is read at once, so that a rename
                # never drops its targets in between; files changed in place settle first
                changed |= await self._read_file(path, stamp)
                continue
            if seen is None or seen[0] != stamp:
                self._seen[path] = (stamp, now)
                settling = True
                continue
            if now - seen[1] < SETTLE_SECONDS - 1e-9:
                settling = True
                continue
            changed |= await self._read_file(path, stamp)
        if changed:
            self.on_change()
        return settling

    def _stat_all(self) -> tuple[list[str], dict[str, _Stamp | None]]:
        paths = matching_files(self.source.targets_files)
        stamps: dict[str, _Stamp | None] = {}
        for p in paths:
            try:
                st = os.stat(p)
                stamps[p] = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                stamps[p] = None
        return paths, stamps

    async def _read_file(self, path: str, stamp: _Stamp | None) -> bool:
        provider = self.source.provider
        try:
            specs = await _blocking(
                lambda: read_target_file(path, provider), seconds=READ_TIMEOUT_SECONDS, what=f"reading {path}"
            )
        except (FileProblem, OffLoopTimeout) as e:
            return self._failed(path, str(e), stamp)
        except ConfigError as e:
            return self._failed(path, f"{path}: {render_problems(e)}", stamp)
        return self._accept(path, tuple(Target.of(s, Origin.FILE) for s in specs), stamp)

    # -- the URL ----------------------------------------------------------------------------
    async def _poll_url(self, cfg: TargetsURL) -> None:
        while True:
            changed = await self._fetch(cfg)
            self._loaded.set()
            if changed:
                self.on_change()
            await self.clock.sleep(cfg.refresh_interval)

    async def _fetch(self, cfg: TargetsURL) -> bool:
        url = cfg.url
        try:
            headers = await _blocking(
                lambda: _auth_headers(cfg), seconds=READ_TIMEOUT_SECONDS, what="url secrets"
            )
            body = await self._within(cfg.timeout, self._get(url, headers))
            specs = parse_target_list(body, url, self.source.provider, as_json=True)
        except ConfigError as e:
            return self._failed(url, f"{url}: {render_problems(e)}", None)
        except (_URLProblem, FileProblem, OffLoopTimeout) as e:
            return self._failed(url, f"{url}: {e}", None)
        return self._accept(url, tuple(Target.of(s, Origin.URL) for s in specs), None)

    async def _get(self, url: str, headers: dict[str, str]) -> str:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        try:
            async with self._session.get(url, headers=headers, allow_redirects=True) as resp:
                if resp.status != 200:
                    raise _URLProblem(f"HTTP {resp.status}")
                ctype = resp.headers.get("Content-Type", "")
                if "json" not in ctype.lower():
                    raise _URLProblem(f"not JSON (Content-Type {ctype or 'missing'})")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > MAX_URL_BODY:
                        raise _URLProblem(f"answer larger than {MAX_URL_BODY} bytes")
                    chunks.append(chunk)
        except aiohttp.ClientError as e:
            raise _URLProblem(f"request failed ({type(e).__name__})") from None
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError:
            raise _URLProblem("answer is not UTF-8") from None

    async def _within(self, seconds: float, work: Awaitable[str]) -> str:
        try:
            return await within(self.clock, seconds, work)
        except Overtime:
            raise _URLProblem(f"no answer within {seconds:g}s") from None

    # -- either -----------------------------------------------------------------------------
    def _accept(self, origin: str, targets: tuple[Target[Any], ...], stamp: _Stamp | None) -> bool:
        taken = self.taken(origin)
        for t in targets:
            other = taken.get(t.stream)
            if other is not None and other != t.key:
                return self._failed(
                    origin, f"{origin}: stream label {t.stream!r} is already used by target {other!r}", stamp
                )
        state = self.origins.setdefault(origin, _Origin())
        changed = state.targets != targets
        if state.error is not None:
            self.log.info("target list good again", origin=origin, targets=len(targets))
        state.targets, state.stamp, state.error = targets, stamp, None
        self.stats[origin] = TargetListStats(up=True, last_success=self.clock.time(), targets=len(targets))
        return changed

    def _failed(self, origin: str, reason: str, stamp: _Stamp | None) -> bool:
        state = self.origins.setdefault(origin, _Origin())
        if state.error != reason:
            self.log.warning("target list not taken; keeping the previous one", origin=origin, reason=reason)
        state.error = reason
        state.stamp = stamp  # not again until it changes
        previous = self.stats.get(origin)
        self.stats[origin] = TargetListStats(
            up=False, last_success=previous.last_success if previous else None, targets=len(state.targets)
        )
        return False


async def _blocking(fn: Callable[[], T], *, seconds: float, what: str) -> T:
    return await off_loop(fn, seconds=seconds, what=what) if OFF_LOOP else fn()


class _URLProblem(Exception):
    pass


def _auth_headers(cfg: TargetsURL) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if cfg.bearer_token_file:
        token = read_text_file(cfg.bearer_token_file, max_bytes=MAX_CREDENTIAL_BYTES).strip()
        headers["Authorization"] = f"Bearer {token}"
    elif cfg.basic_auth is not None:
        password = read_text_file(cfg.basic_auth.password_file, max_bytes=MAX_CREDENTIAL_BYTES).rstrip("\r\n")
        pair = f"{cfg.basic_auth.username}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return headers


# -- inotify --------------------------------------------------------------------------------

_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_FROM, _IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
_IN_CREATE, _IN_DELETE, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
_MASK = (
    _IN_MODIFY
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
)
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000


class _Inotify:
    """The kernel's file change notices for a few directories (Linux), through libc."""

    def __init__(self, libc: Any, fd: int) -> None:
        self._libc, self.fd = libc, fd

    @classmethod
    def open(cls) -> _Inotify | None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return None
        return cls(libc, fd) if fd >= 0 else None

    def watch(self, directory: str) -> None:
        self._libc.inotify_add_watch(self.fd, os.fsencode(directory), _MASK)  # missing: polled only

    def drain(self) -> bool:
        """Read every pending notice; whether there was any."""
        seen = False
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return seen
            except OSError:
                return seen
            if not data:
                return seen
            seen = seen or len(data) >= struct.calcsize("iIII")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def matching_files(patterns: Sequence[str]) -> list[str]:
    """The regular files the globs match, sorted, each once."""
    return sorted({p for pattern in patterns for p in glob.glob(pattern) if os.path.isfile(p)})


def count_file_targets(source: SourceBase) -> list[tuple[str, int | str]]:
    """For `--config.check`: each matched file and its number of targets, or its problem."""
    out: list[tuple[str, int | str]] = []
    for pattern in source.targets_files:
        matched = matching_files([pattern])
        if not matched:
            out.append((pattern, NO_MATCH))
        for path in matched:
            try:
                out.append((path, len(read_target_file(path, source.provider))))
            except FileProblem as e:
                out.append((path, str(e)))
            except ConfigError as e:
                out.append((path, render_problems(e)))
    return out
