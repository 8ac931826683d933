"""The provider registry: the one list of vendors that config validation and dispatch use.

Adding a vendor means adding its module to `_MODULES`; nothing else names providers.
"""

from __future__ import annotations

import importlib

from exporter.providers.base import Provider

PROVIDERS: dict[str, type[Provider]] = {}

_MODULES: tuple[str, ...] = ("gjirafa", "swiftfederation", "fermion", "cloudflare", "tencent")


def register(cls: type[Provider]) -> type[Provider]:
    """Class decorator; tests use it for their own provider too."""
    PROVIDERS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    PROVIDERS.pop(name, None)


def get_provider(name: str) -> type[Provider]:
    return PROVIDERS[name]


for _module in _MODULES:
    importlib.import_module(f"exporter.providers.{_module}")
