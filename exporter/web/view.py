"""What the web server sees of the running exporter."""

from __future__ import annotations

from typing import Protocol

from exporter.model.clock import Clock
from exporter.store.exposition import ReloadStatus
from exporter.store.store import Store


class ExporterView(Protocol):
    store: Store
    clock: Clock
    reload_status: ReloadStatus
    config_file: str

    async def reload(self) -> str | None:
        """Reload the configuration; None when it worked, else the readable error."""
        ...
