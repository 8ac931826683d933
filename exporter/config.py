"""YAML -> frozen, validated configuration.

Loading happens in three passes so that every error can name the file and the key path:
1. YAML with duplicate keys refused;
2. `${ENV}` expanded in every string and `k_file` credentials read into `k`;
3. pydantic models with `extra="forbid"`: the shared shape here, and the provider's own
   source model (looked up in the provider registry) for each entry of `sources`.

Defaults live on the models and nowhere else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from exporter.durations import format_duration, parse_duration
from exporter.ratelimit import Window


class ConfigError(Exception):
    """One or more readable problems, each `file: key.path: what is wrong`."""

    def __init__(self, file: str, problems: Sequence[tuple[str, str]]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        lines = []
        for path, msg in self.problems:
            lines.append(f"{self.file}: {path}: {msg}" if path else f"{self.file}: {msg}")
        return "\n".join(lines)


#: longer durations make no sense for polling and overflow the scheduler's clock arithmetic
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


class TargetBase(Strict):
    """Keys every target has; providers add theirs."""

    name: str | None = Field(default=None, min_length=1)

    def key(self) -> str:
        """What identifies the target at the vendor, unique within a source."""
        raise NotImplementedError

    def default_stream(self) -> str:
        """The `stream` label when `name` is not set (CONTRACT.md section 2)."""
        return self.key()

    def stream_label(self) -> str:
        return self.name or self.default_stream()


class CredentialsBase(Strict):
    def secrets(self) -> Iterator[str]:
        for value in self.__dict__.values():
            if isinstance(value, SecretStr) and value.get_secret_value():
                yield value.get_secret_value()


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class SourceBase(Strict):
    """Keys every source has; each provider subclasses it with its credentials and targets."""

    name: str
    provider: str
    base_url: str | None = None
    interval: Duration | None = None
    rate_limit: tuple[RateLimit, ...] | None = Field(default=None, min_length=1)
    credentials: CredentialsBase
    targets: tuple[TargetBase, ...] = ()

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
        return bool(getattr(self, "discover", False))


@dataclass(frozen=True)
class Config:
    file: str
    global_: GlobalConfig
    sources: tuple[SourceBase, ...]

    def secrets(self) -> set[str]:
        """Every credential value, for the log and page redactors."""
        out: set[str] = set()
        for s in self.sources:
            out.update(s.credentials.secrets())
        return out

    def warnings(self) -> list[str]:
        """Valid but probably unintended: sources sharing one vendor account's credentials.

        Vendors count requests per credential, while each source keeps its own budget, so
        two sources on the same credentials can together exceed the vendor's limit.
        """
        seen: dict[tuple[str, str, frozenset[str]], str] = {}
        out = []
        for s in self.sources:
            key = (s.provider, self.base_url_of(s), frozenset(s.credentials.secrets()))
            if key in seen:
                out.append(
                    f"sources {seen[key]} and {s.name} use the same {s.provider} credentials: the vendor"
                    " counts their requests together, so lower their rate_limit to share its budget"
                )
            else:
                seen[key] = s.name
        return out

    def interval_of(self, source: SourceBase) -> float:
        return source.interval or self.global_.interval

    def windows_of(self, source: SourceBase) -> dict[str, tuple[Window, ...]]:
        from exporter.providers import get_provider

        buckets = dict(get_provider(source.provider).default_rate_limits)
        if source.rate_limit:
            buckets["default"] = tuple(r.window() for r in source.rate_limit)
        return buckets

    def base_url_of(self, source: SourceBase) -> str:
        from exporter.providers import get_provider

        url = source.base_url or get_provider(source.provider).base_url_for(source)
        assert url is not None  # validated at load
        return url


# ---- pass 1: YAML ----------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice, which PyYAML would silently overwrite."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# ---- pass 2: ${ENV} and *_file ------------------------------------------------------------

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _path(parts: Sequence[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _expand_env(
    node: Any, path: list[str | int], env: Mapping[str, str], problems: list[tuple[str, str]]
) -> Any:
    if isinstance(node, dict):
        return {k: _expand_env(v, [*path, k], env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, [*path, i], env, problems) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in env:
                problems.append((_path(path), f"environment variable ${{{name}}} is not defined"))
                return ""
            return env[name]

        return _ENV_RE.sub(sub, node)
    return node


def _read_credential_files(
    creds: dict[str, Any], path: list[str | int], problems: list[tuple[str, str]]
) -> dict[str, Any]:
    out = dict(creds)
    for key in [k for k in creds if isinstance(k, str) and k.endswith("_file")]:
        base = key[: -len("_file")]
        where = _path([*path, key])
        if base in creds:
            problems.append((where, f"give either {base} or {key}, not both"))
            continue
        file = creds[key]
        if not isinstance(file, str) or not file:
            problems.append((where, "must be a file path"))
            continue
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as e:
            problems.append((where, f"cannot read {file}: {e.strerror or e}"))
            continue
        except UnicodeDecodeError:
            problems.append((where, f"cannot read {file}: not UTF-8 text"))
            continue
        del out[key]
        value = text.rstrip("\r\n")
        if not value:
            problems.append((where, f"{file} is empty"))
            continue
        out[base] = value
    return out


# ---- pass 3: models ---------------------------------------------------------------------


def _pydantic_problems(
    err: ValidationError, prefix: list[str | int], model: type[BaseModel]
) -> list[tuple[str, str]]:
    out = []
    errors = err.errors(include_input=False, include_url=False)
    for e in errors:
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        msg = e["msg"]
        if e["type"] == "too_short" and any(
            len(o["loc"]) > len(e["loc"]) and o["loc"][: len(e["loc"])] == e["loc"] for o in errors
        ):
            continue  # pydantic counts a list with a bad entry as empty: the entry's error says it all
        if e["type"] == "too_short":
            msg = "must not be empty"
        elif e["type"] in ("model_type", "dict_type"):
            msg = "must be a mapping of keys to values"
        elif e["type"] in ("tuple_type", "list_type"):
            msg = "must be a list"
        elif e["type"] == "extra_forbidden":
            msg = "unknown key" + _valid_keys(model, loc[:-1])
        elif e["type"] == "missing":
            msg = "missing required key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append((_path([*prefix, *loc]), msg))
    return out


def _valid_keys(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """' (valid keys: a, b)' for the model found at `loc` inside `model`, best effort."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = current.model_fields if isinstance(current, type) and issubclass(current, BaseModel) else {}
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return ""
        current = _model_in(field.annotation)
        if current is None:
            return ""
    if isinstance(current, type) and issubclass(current, BaseModel):
        keys = [f.alias or n for n, f in current.model_fields.items()]
        return f" (valid keys: {', '.join(keys)})"
    return ""


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


class _Top(Strict):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    sources: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("sources", mode="before")
    @classmethod
    def _entries(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, item in enumerate(v):
                if not isinstance(item, dict):
                    raise ValueError(
                        f"entry {i} must be a mapping with name, provider, credentials and targets"
                    )
        return v


def load_config(file: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate `file`; raise ConfigError naming the file and key paths."""
    name = str(file)
    env = os.environ if env is None else env
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(name, [("", f"cannot read the configuration: {e.strerror or e}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(name, [("", "cannot read the configuration: not UTF-8 text")]) from None
    return parse_config(text, name, env)


def parse_config(text: str, name: str, env: Mapping[str, str]) -> Config:
    from exporter.providers import PROVIDERS

    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(name, [("", f"invalid YAML: {at}{problem}")]) from None
    if raw is None:
        raise ConfigError(name, [("", "the file is empty; it needs at least one entry under sources")])
    if not isinstance(raw, dict):
        raise ConfigError(name, [("", "the top level must be a mapping with global and sources")])

    problems: list[tuple[str, str]] = []
    raw = _expand_env(raw, [], env, problems)
    if problems:
        raise ConfigError(name, problems)
    try:
        top = _Top.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(name, _pydantic_problems(e, [], _Top)) from None

    sources: list[SourceBase] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(top.sources):
        where: list[str | int] = ["sources", i]
        provider_name = entry.get("provider")
        if provider_name not in PROVIDERS:
            valid = ", ".join(sorted(PROVIDERS))
            msg = "missing required key" if provider_name is None else f"unknown provider {provider_name!r}"
            problems.append((_path([*where, "provider"]), f"{msg} (valid: {valid})"))
            continue
        provider = PROVIDERS[provider_name]
        file_problems: list[tuple[str, str]] = []
        if isinstance(entry.get("credentials"), dict):
            entry = {  # noqa: PLW2901 - the entry with its k_file credentials read
                **entry,
                "credentials": _read_credential_files(
                    entry["credentials"], [*where, "credentials"], file_problems
                ),
            }
        problems.extend(file_problems)
        try:
            source = provider.Source.model_validate(entry)
        except ValidationError as e:
            # a `k_file` that failed already has its message; skip the echoes about k and k_file
            said = {p for p, _ in file_problems}
            problems.extend(
                p
                for p in _pydantic_problems(e, where, provider.Source)
                if p[0] not in said and f"{p[0]}_file" not in said
            )
            continue
        if source.name in seen:
            problems.append(
                (
                    _path([*where, "name"]),
                    f"duplicate source name {source.name!r} (also sources[{seen[source.name]}])",
                )
            )
        seen.setdefault(source.name, i)
        if source.base_url is None and provider.base_url_for(source) is None:
            problems.append(
                (
                    _path([*where, "base_url"]),
                    f"missing required key: provider {provider_name} has no default URL",
                )
            )
        problems.extend(_check_targets(source, where))
        sources.append(source)

    if problems:
        raise ConfigError(name, problems)
    return Config(file=name, global_=top.global_, sources=tuple(sources))


def _check_targets(source: SourceBase, where: list[str | int]) -> Iterator[tuple[str, str]]:
    keys: dict[str, int] = {}
    streams: dict[str, int] = {}
    for j, t in enumerate(source.targets):
        if t.key() in keys:
            yield (
                _path([*where, "targets", j]),
                f"duplicate target {t.key()!r} (also targets[{keys[t.key()]}])",
            )
        elif t.stream_label() in streams:
            yield (
                _path([*where, "targets", j, "name"]),
                f"stream label {t.stream_label()!r} is already used by targets[{streams[t.stream_label()]}]",
            )
        keys.setdefault(t.key(), j)
        streams.setdefault(t.stream_label(), j)
    if not source.targets and not source.discovery_enabled():
        yield (
            _path([*where, "targets"]),
            "no targets: list at least one, or set discover: true where the provider has it",
        )


def describe(config: Config, plans: Mapping[str, tuple[float, float, int]]) -> str:
    """What `--config.check` prints: sources, targets, effective intervals and budgets."""
    lines = [f"{config.file}: configuration is valid, {len(config.sources)} source(s)"]
    for s in config.sources:
        interval, effective, n = plans[s.name]
        budgets = "; ".join(
            f"{b}: {' and '.join(str(w) for w in ws)}" for b, ws in config.windows_of(s).items()
        )
        note = (
            ""
            if effective <= interval
            else f" (lengthened from {format_duration(interval)} by the rate limit)"
        )
        lines.append(f"source {s.name} (provider {s.provider}) {config.base_url_of(s)}")
        lines.append(
            f"  interval {format_duration(effective)}{note}, requests per cycle {n}, budget {budgets}"
        )
        if s.discovery_enabled():
            lines.append("  discovery: on (targets are added and removed as the vendor lists them)")
        for t in s.targets:
            lines.append(f"  target {t.key()} -> stream={t.stream_label()!r}")
    lines.extend(f"warning: {w}" for w in config.warnings())
    return "\n".join(lines)
