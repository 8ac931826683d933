"""YAML -> frozen, validated configuration.

Loading happens in three passes so that every error can name the file and the key path:
1. YAML with duplicate keys refused;
2. `${ENV}` expanded in every string and `k_file` credentials read into `k`;
3. pydantic models with `extra="forbid"`: the shared shape, and the provider's own
   source model (found in the provider registry) for each entry of `sources`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from exporter.config.files import MAX_CONFIG_BYTES, MAX_CREDENTIAL_BYTES, FileProblem, read_text_file
from exporter.config.problems import ConfigError, key_path, pydantic_problems
from exporter.config.registry import PROVIDERS, get_spec
from exporter.config.schema import ClusterConfig, GlobalConfig, SourceBase, Strict
from exporter.model.windows import Window


@dataclass(frozen=True)
class Config:
    file: str
    global_: GlobalConfig
    sources: tuple[SourceBase, ...]
    cluster: ClusterConfig | None = None

    def secrets(self) -> set[str]:
        """Every credential value, for the log and page redactors."""
        out: set[str] = set()
        for s in self.sources:
            out.update(s.credentials.secrets())
        if self.cluster is not None:
            out.update(self.cluster.secrets())
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
        buckets = dict(get_spec(source.provider).rate_limits())
        if source.rate_limit:
            buckets["default"] = tuple(r.window() for r in source.rate_limit)
        return buckets

    def base_url_of(self, source: SourceBase) -> str:
        url = source.base_url or get_spec(source.provider).base_url_for(source)
        if url is None:  # refused at load
            raise ValueError(f"source {source.name} has no base_url")
        return url


def with_cluster_url(config: Config, url: str | None) -> Config:
    """`config` with `--cluster.redis-url` in force (over the file's cluster.redis_url)."""
    if url is None:
        return config
    try:
        cluster = ClusterConfig.model_validate({"redis_url": url})
    except ValidationError as e:
        raise ConfigError("--cluster.redis-url", pydantic_problems(e, [], ClusterConfig)) from None
    if config.cluster is not None:
        cluster = config.cluster.model_copy(update={"redis_url": cluster.redis_url})
    return replace(config, cluster=cluster)


# ---- pass 1: YAML ----------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice, which PyYAML would silently overwrite."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):  # `? [a, b]`: a list or a mapping as a key
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def strict_yaml(text: str) -> Any:
    """YAML safely loaded, a key given twice refused (yaml.YAMLError)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


# ---- pass 2: ${ENV} and *_file ------------------------------------------------------------

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
                problems.append((key_path(path), f"environment variable ${{{name}}} is not defined"))
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
        where = key_path([*path, key])
        if base in creds:
            problems.append((where, f"give either {base} or {key}, not both"))
            continue
        file = creds[key]
        if not isinstance(file, str) or not file:
            problems.append((where, "must be a file path"))
            continue
        try:
            text = read_text_file(file, max_bytes=MAX_CREDENTIAL_BYTES)
        except FileProblem as e:
            problems.append((where, str(e)))
            continue
        del out[key]
        value = text.rstrip("\r\n")
        if not value:
            problems.append((where, f"{file} is empty"))
            continue
        out[base] = value
    return out


# ---- pass 3: models ---------------------------------------------------------------------


class _Top(Strict):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    sources: list[dict[str, Any]] = Field(min_length=1)
    cluster: ClusterConfig | None = None

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
        text = read_text_file(name, max_bytes=MAX_CONFIG_BYTES)
    except FileProblem as e:
        raise ConfigError(
            name, [("", str(e).replace(f"cannot read {name}", "cannot read the configuration"))]
        ) from None
    return parse_config(text, name, env)


def parse_config(text: str, name: str, env: Mapping[str, str]) -> Config:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(name, [("", f"invalid YAML: {at}{problem}")]) from None
    except RecursionError:
        raise ConfigError(name, [("", "invalid YAML: nested too deeply")]) from None
    if raw is None:
        raise ConfigError(name, [("", "the file is empty; it needs at least one entry under sources")])
    if not isinstance(raw, dict):
        raise ConfigError(name, [("", "the top level must be a mapping with global and sources")])

    problems: list[tuple[str, str]] = []
    try:
        raw = _expand_env(raw, [], env, problems)
    except RecursionError:  # `&a [*a]`: an alias inside its own anchor never ends
        raise ConfigError(
            name, [("", "invalid YAML: a value contains itself (an alias inside its anchor)")]
        ) from None
    if isinstance(raw.get("cluster"), dict):
        raw = {**raw, "cluster": _read_credential_files(raw["cluster"], ["cluster"], problems)}
    if problems:
        raise ConfigError(name, _named(problems, raw))
    try:
        top = _Top.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(name, _named(pydantic_problems(e, [], _Top), raw)) from None

    sources: list[SourceBase] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(top.sources):
        found: list[tuple[str, str]] = []
        if not isinstance(entry.get("provider"), str | None):  # a list or a mapping: no provider's name
            valid = ", ".join(sorted(PROVIDERS))
            problems.append(
                (key_path(["sources", i, "provider"]), f"must be a provider name (valid: {valid})")
            )
            continue
        source = _source(i, entry, seen, found)
        problems.extend(found)
        if source is not None:
            sources.append(source)

    if problems:
        raise ConfigError(name, _named(problems, raw))
    return Config(file=name, global_=top.global_, sources=tuple(sources), cluster=top.cluster)


def _source(
    i: int, entry: dict[str, Any], seen: dict[str, int], found: list[tuple[str, str]]
) -> SourceBase | None:
    """The i-th source, checked; its problems go to `found`."""
    where: list[str | int] = ["sources", i]
    provider_name = entry.get("provider")
    if provider_name not in PROVIDERS:
        valid = ", ".join(sorted(PROVIDERS))
        msg = "missing required key" if provider_name is None else f"unknown provider {provider_name!r}"
        found.append((key_path([*where, "provider"]), f"{msg} (valid: {valid})"))
        return None
    provider = PROVIDERS[provider_name]
    file_problems: list[tuple[str, str]] = []
    if isinstance(entry.get("credentials"), dict):
        entry = {
            **entry,
            "credentials": _read_credential_files(
                entry["credentials"], [*where, "credentials"], file_problems
            ),
        }
    found.extend(file_problems)
    try:
        source = provider.source_model().model_validate(entry)
    except ValidationError as e:
        # a `k_file` that failed already has its message; skip the echoes about k and k_file
        said = {p for p, _ in file_problems}
        found.extend(
            p
            for p in pydantic_problems(e, where, provider.source_model())
            if p[0] not in said and f"{p[0]}_file" not in said
        )
        return None
    if source.name in seen:
        found.append(
            (
                key_path([*where, "name"]),
                f"duplicate source name {source.name!r} (also sources[{seen[source.name]}])",
            )
        )
    seen.setdefault(source.name, i)
    if source.base_url is None and provider.base_url_for(source) is None:
        found.append(
            (
                key_path([*where, "base_url"]),
                f"missing required key: provider {provider_name} has no default URL",
            )
        )
    found.extend(_check_targets(source, where))
    return source


def _named(problems: list[tuple[str, str]], raw: dict[Any, Any]) -> list[tuple[str, str]]:
    """`sources[0].x` -> `sources[0] (cf-main).x`: an index alone is hard to find in a long file."""
    entries = raw.get("sources")
    names = {
        i: e["name"]
        for i, e in enumerate(entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"]
    }
    out = []
    for path, message in problems:
        m = re.match(r"sources\[(\d+)\]", path)
        if m and int(m.group(1)) in names:
            out.append((f"{m.group(0)} ({names[int(m.group(1))]}){path[m.end() :]}", message))
        else:
            out.append((path, message))
    return out


def _check_targets(source: SourceBase, where: list[str | int]) -> Iterator[tuple[str, str]]:
    keys: dict[str, int] = {}
    streams: dict[str, int] = {}
    for j, t in enumerate(source.targets):
        if t.key() in keys:
            yield (
                key_path([*where, "targets", j]),
                f"duplicate target {t.key()!r} (also targets[{keys[t.key()]}])",
            )
        elif t.stream_label() in streams:
            yield (
                key_path([*where, "targets", j, "name"]),
                f"stream label {t.stream_label()!r} is already used by targets[{streams[t.stream_label()]}]",
            )
        keys.setdefault(t.key(), j)
        streams.setdefault(t.stream_label(), j)
    if not source.targets and not source.discovery_enabled() and not source.external_targets():
        yield (
            key_path([*where, "targets"]),
            "no targets: list at least one, give targets_files or targets_url, "
            "or set discover: true where the provider has it",
        )
