"""The shape every configuration shares; providers subclass the bases with their own keys.

Models are frozen and refuse unknown keys; defaults live on the models and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from exporter.model.durations import parse_duration
from exporter.model.windows import Window

#: longer durations make no sense for polling and overflow clock arithmetic
MAX_DURATION = 7 * 86400.0


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"must be a duration string like 30s or 5m, not {type(value).__name__} {value!r}")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    if seconds > MAX_DURATION:
        raise ValueError("must be at most 1w")
    return seconds


Duration = Annotated[float, BeforeValidator(_duration)]
#: a credential: never empty (an empty key is a mis-mounted secret, not a configuration)
Secret = Annotated[SecretStr, Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, hide_input_in_errors=True)


class RateLimit(Strict):
    requests: int = Field(gt=0)
    per: Duration

    def window(self) -> Window:
        return Window(self.requests, self.per)


class GlobalConfig(Strict):
    interval: Duration = 30.0
    timeout: Duration = 10.0
    stale_after: Duration = 300.0


class ClusterConfig(Strict):
    """Replicas sharing each source's budget through Redis."""

    #: redis://host:6379/0, rediss:// for TLS, or unix:///path/to/socket
    redis_url: str
    #: read from redis_password_file (or given inline, like any secret)
    redis_password: Secret | None = None
    #: a replica that has not renewed its membership for this long has left
    heartbeat_ttl: Duration = 15.0
    #: how long a replica cut off from Redis polls on with its share of each budget (and how
    #: long the others keep a vanished replica's share reserved)
    outage_grace: Duration = 600.0
    #: every key the cluster writes starts with this (one Redis for several clusters)
    key_prefix: str = Field(default="livestream-exporter", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        # the message never repeats the URL: it may hold a password
        try:
            url = urlsplit(v)
            port = url.port
        except ValueError:
            raise ValueError("is not a valid URL (check the port, and %-encode a password's @ : /)") from None
        if url.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        if url.scheme == "unix" and not url.path:
            raise ValueError("a unix:// URL needs the socket's path")
        if url.scheme != "unix" and not url.hostname:
            raise ValueError("needs a host")
        del port
        return v

    @field_validator("heartbeat_ttl")
    @classmethod
    def _ttl(cls, v: float) -> float:
        # a heartbeat may take two Redis timeouts (a retry): three of them fit in the TTL
        if v < 3.0:
            raise ValueError("must be at least 3s")
        return v

    def secrets(self) -> set[str]:
        out = {self.redis_password.get_secret_value()} if self.redis_password else set()
        # a password written into the URL (redis://:secret@host) is a secret too, as written
        # and decoded
        password = urlsplit(self.redis_url).password
        if password:
            out.update((password, unquote(password)))
        return {v for v in out if v}


class TargetBase(Strict):
    """Keys every target has; providers add theirs."""

    name: str | None = Field(default=None, min_length=1)

    def key(self) -> str:
        """What identifies the target at the vendor, unique within a source."""
        raise NotImplementedError

    def default_stream(self) -> str:
        """The `stream` label when `name` is not set."""
        return self.key()

    def stream_label(self) -> str:
        return self.name or self.default_stream()


class CredentialsBase(Strict):
    def secrets(self) -> Iterator[str]:
        for value in self.__dict__.values():
            if isinstance(value, SecretStr) and value.get_secret_value():
                yield value.get_secret_value()


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_URL_RE = re.compile(r"^https?://[^/\s]+(/\S*)?$")


class BasicAuthFile(Strict):
    username: str = Field(min_length=1)
    password_file: str = Field(min_length=1)


class TargetsURL(Strict):
    """An HTTP(S) endpoint answering the source's target list as JSON (like Prometheus'
    http_sd_configs).  Its secrets come from files, read at each request, so a rotated
    token applies at the next refresh."""

    url: str
    refresh_interval: Duration = 60.0
    timeout: Duration = 10.0
    bearer_token_file: str | None = Field(default=None, min_length=1)
    basic_auth: BasicAuthFile | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _URL_RE.match(v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("refresh_interval")
    @classmethod
    def _refresh(cls, v: float) -> float:
        if v < 5.0:
            raise ValueError("must be at least 5s (the list is fetched once per refresh_interval)")
        return v

    @field_validator("basic_auth")
    @classmethod
    def _one_auth(cls, v: BasicAuthFile | None, info: Any) -> BasicAuthFile | None:
        if v is not None and info.data.get("bearer_token_file"):
            raise ValueError("give either bearer_token_file or basic_auth, not both")
        return v


class SourceBase(Strict):
    """Keys every source has; each provider subclasses it with its credentials and targets."""

    name: str
    provider: str
    base_url: str | None = None
    interval: Duration | None = None
    rate_limit: tuple[RateLimit, ...] | None = Field(default=None, min_length=1)
    #: requests of this source in flight at once; by default derived from the budget and the timeout
    max_in_flight: int | None = Field(default=None, ge=1, le=1000)
    credentials: CredentialsBase
    targets: tuple[TargetBase, ...] = ()
    #: paths or globs of YAML/JSON files, each a list of targets; watched and re-read on change
    targets_files: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    targets_url: TargetsURL | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must start with a letter or digit and hold only letters, digits and _ . : -")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    def discovery_enabled(self) -> bool:
        """Whether the source also tracks what the vendor lists (providers with `discover`)."""
        return False

    def external_targets(self) -> bool:
        """Whether targets also come from files or a URL."""
        return bool(self.targets_files) or self.targets_url is not None


class DiscoveringSource(SourceBase):
    """A source whose provider can list the vendor's streams (`discover: true`)."""

    discover: bool = False

    def discovery_enabled(self) -> bool:
        return self.discover
