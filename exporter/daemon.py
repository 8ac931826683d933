"""The running exporter: configuration, runners, store, and reload.

Reload builds the new configuration completely before touching the running one, so an
invalid file changes nothing but `livestream_exporter_config_last_reload_successful`.
A source that keeps its name and provider keeps its counters and last values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from exporter.clock import SYSTEM_CLOCK, Clock
from exporter.config import Config, ConfigError, load_config
from exporter.logging import REDACTOR
from exporter.metrics import ReloadStatus
from exporter.scheduler import PollScheduler, SourceRunner, new_state
from exporter.state import Store


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
        self._scheduler = PollScheduler()
        self._lock = asyncio.Lock()

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
        async with self._lock:
            try:
                config = self._loader(self.config_file)
            except ConfigError as e:
                self.reload_status.successful = False
                self.store.bump()
                self.log.error(
                    "configuration reload failed; keeping the running configuration", reason=str(e)
                )
                return str(e)
            previous = self.config
            self._warn(config)
            REDACTOR.set_secrets(config.secrets() | (previous.secrets() if previous else set()))
            try:
                await self._apply(config)
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
            self.log.info("configuration reloaded", sources=len(config.sources))
            return None

    async def _apply(self, config: Config, *, record: bool = True) -> None:
        old = dict(self.store.sources)
        await self._scheduler.stop_runners()
        states = [new_state(s, config.global_.stale_after, old.get(s.name)) for s in config.sources]
        self.store.set_sources(states)
        runners = []
        for source, state in zip(config.sources, states, strict=True):
            if old.get(source.name) is not state:
                state.attempted = False
            runners.append(
                SourceRunner(
                    config=config,
                    source=source,
                    store=self.store,
                    state=state,
                    clock=self.clock,
                    log=self.log,
                )
            )
        self._scheduler.start(runners)
        self.config = config
        if record:
            self.reload_status.successful = True
            self.reload_status.last_success = self.clock.time()
            self.store.bump()

    async def stop(self) -> None:
        await self._scheduler.shutdown()
