"""The one registry of providers: name -> provider class.

A provider module registers its class with `@register`; nothing else lists providers.
The configuration layer sees a provider only through `ProviderSpec`, what loading and
planning a source needs; the providers layer holds the full class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Protocol, TypeVar

from exporter.config.schema import SourceBase
from exporter.model.windows import Window


class ProviderSpec(Protocol):
    name: ClassVar[str]

    @classmethod
    def source_model(cls) -> type[SourceBase]:
        """The provider's source model: SourceBase with its credentials, targets and keys."""
        ...

    @classmethod
    def rate_limits(cls) -> Mapping[str, tuple[Window, ...]]:
        """Bucket -> windows; "default" is what `rate_limit:` in the config overrides."""
        ...

    @classmethod
    def base_url_for(cls, source: SourceBase) -> str | None:
        """The default URL for a source that sets no `base_url` (may depend on e.g. region)."""
        ...


P = TypeVar("P", bound=type[ProviderSpec])

PROVIDERS: dict[str, type[ProviderSpec]] = {}


def register(cls: P) -> P:
    """Class decorator of a provider; tests use it for their own provider too."""
    PROVIDERS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    PROVIDERS.pop(name, None)


def get_spec(name: str) -> type[ProviderSpec]:
    return PROVIDERS[name]
