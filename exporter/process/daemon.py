"""The running exporter: configuration, runners, store, and reload.

Reload builds the new configuration completely before touching the running one, so an
invalid file changes nothing but `livestream_exporter_config_last_reload_successful`.
It reads the files in a thread of its own with a deadline: a credential file on a hung
mount fails the reload instead of freezing the event loop.
Only the sources whose configuration changed are restarted: an unchanged source keeps
its HTTP session, its polls in flight and its schedule.  A changed source that keeps its
name and provider keeps its counters, its budget's history and its last values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from exporter.config.loader import Config, load_config
from exporter.config.problems import ConfigError
from exporter.config.schema import ClusterConfig, SourceBase
from exporter.engine.cluster import Cluster
from exporter.engine.runner import SourceMemory, SourceRunner
from exporter.engine.scheduler import PollScheduler
from exporter.engine.sharedlimiter import occupancy
from exporter.model.clock import SYSTEM_CLOCK, Clock
from exporter.model.offloop import READ_TIMEOUT_SECONDS, OffLoopTimeout, off_loop
from exporter.model.redaction import REDACTOR
from exporter.store.exposition import ReloadStatus
from exporter.store.store import Store

#: what decides whether a source must be restarted on reload
_Identity = tuple[SourceBase, float, float, float, ClusterConfig | None]


def _identity(config: Config, source: SourceBase) -> _Identity:
    """The source's model and the global and cluster settings it runs with."""
    return (
        source,
        config.interval_of(source),
        config.global_.timeout,
        config.global_.stale_after,
        config.cluster,
    )


class Exporter:
    def __init__(
        self,
        config_file: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        log: structlog.typing.FilteringBoundLogger,
        loader: Callable[[str], Config] = load_config,
    ) -> None:
        self.config_file = config_file
        self.clock = clock
        self.log = log
        self.store = Store()
        self.reload_status = ReloadStatus()
        self.config: Config | None = None
        self._loader = loader
        self._scheduler = PollScheduler(clock)
        self._memory: dict[str, SourceMemory] = {}
        self._identities: dict[str, _Identity] = {}
        self._lock = asyncio.Lock()
        #: this replica's membership of a cluster (config.cluster), None alone
        self.cluster: Cluster | None = None
        self._stopping = False
        #: the reload running now, cancelled by stop()
        self._reloading: asyncio.Task[object] | None = None
        self._names: list[str] = []
        self._settle = 0.0

    @property
    def runners(self) -> dict[str, SourceRunner]:
        return self._scheduler.runners

    def load(self, *, warn: bool = True) -> Config:
        config = self._loader(self.config_file)
        REDACTOR.set_secrets(config.secrets())
        if warn:
            self._warn(config)
        return config

    def _warn(self, config: Config) -> None:
        for warning in config.warnings():
            self.log.warning("configuration warning", reason=warning)

    async def start(self, config: Config) -> None:
        async with self._lock:
            await self._apply(config)

    async def reload(self) -> str | None:
        """Reload the configuration file; None when it worked, else the readable error."""
        if self._stopping:
            return "the exporter is shutting down"
        async with self._lock:
            if self._stopping:
                return "the exporter is shutting down"
            self._reloading = asyncio.current_task()
            try:
                return await self._reload()
            finally:
                self._reloading = None

    async def _reload(self) -> str | None:
        try:
            config = await off_loop(
                lambda: self._loader(self.config_file),
                seconds=READ_TIMEOUT_SECONDS,
                what=f"reading {self.config_file} and its credential files",
            )
        except (ConfigError, OffLoopTimeout) as e:
            if isinstance(e, OffLoopTimeout):
                e = ConfigError(self.config_file, [("", str(e))])
            self.reload_status.successful = False
            self.store.bump()
            self.log.error("configuration reload failed; keeping the running configuration", reason=str(e))
            return str(e)
        previous = self.config
        self._warn(config)
        REDACTOR.set_secrets(config.secrets() | (previous.secrets() if previous else set()))
        try:
            restarted = await self._apply(config)
        except Exception as e:
            # valid on paper, but it could not be started: go back to what ran before
            self.reload_status.successful = False
            self.store.bump()
            self.log.error(
                "configuration reload failed while starting it; restoring the running configuration",
                exc_type=type(e).__name__,
                reason=str(e),
            )
            if previous is not None:
                await self._apply(previous, record=False)
                REDACTOR.set_secrets(previous.secrets())
            return f"{self.config_file}: the configuration could not be started: {type(e).__name__}: {e}"
        REDACTOR.set_secrets(config.secrets())
        self.log.info("configuration reloaded", sources=len(config.sources), restarted=restarted)
        return None

    async def _apply(self, config: Config, *, record: bool = True) -> int:
        """Run `config`: start new and changed sources, stop removed ones; how many (re)started."""
        wanted = {s.name: _identity(config, s) for s in config.sources}
        self._names = list(wanted)
        self._settle = max(
            (occupancy(config.windows_of(s), config.global_.timeout) for s in config.sources), default=0.0
        )
        stale = [n for n in self._scheduler.runners if self._identities.get(n) != wanted.get(n)]
        await self._scheduler.remove(*stale)
        for name in stale:
            self._identities.pop(name, None)
        await self._join(config.cluster)
        memories = {s.name: SourceMemory.carried(s, self._memory.get(s.name)) for s in config.sources}
        self._memory = memories
        self.store.keep_sources((s.name, s.provider, memories[s.name].stats) for s in config.sources)
        started = 0
        for source in config.sources:
            if source.name in self._scheduler.runners:
                continue
            runner = SourceRunner(
                config=config,
                source=source,
                sink=self.store,
                memory=memories[source.name],
                clock=self.clock,
                log=self.log,
                cluster=self.cluster,
            )
            self._scheduler.add(runner)
            self._identities[source.name] = wanted[source.name]
            started += 1
        self.config = config
        if record:
            self.reload_status.successful = True
            self.reload_status.last_success = self.clock.time()
            self.store.bump()
        return started

    async def _join(self, settings: ClusterConfig | None) -> None:
        """Join, leave or change the cluster (its runners have been stopped: their identity
        includes the cluster settings)."""
        if self.cluster is not None and self.cluster.settings == settings:
            self.cluster.set_sources(self._names, settle=self._settle)
            return
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None
            self.store.cluster = None
        if settings is not None:
            self.cluster = Cluster(settings, clock=self.clock, log=self.log)
            self.cluster.set_sources(self._names, settle=self._settle)
            self.cluster.on_change(self.store.bump)
            self.store.cluster = self.cluster.stats
            self.cluster.start()

    async def stop(self) -> None:
        """Stop polling; a reload under way is cancelled, and none starts afterwards.  A
        replica leaves its cluster at once, so the others take its targets over now."""
        self._stopping = True
        if self._reloading is not None:
            self._reloading.cancel()
        async with self._lock:
            await self._scheduler.shutdown()
            if self.cluster is not None:
                await self.cluster.stop()
