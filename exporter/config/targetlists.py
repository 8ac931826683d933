"""Target lists from outside the configuration: a file or an HTTP answer holding a list of
target objects, with exactly the keys the source's `targets:` accepts.

The problems read like the configuration's: `origin: [2].media: Input should be ...`.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, create_model

from exporter.config.files import MAX_CONFIG_BYTES, read_text_file
from exporter.config.loader import strict_yaml
from exporter.config.problems import ConfigError, key_path, pydantic_problems
from exporter.config.registry import get_spec
from exporter.config.schema import Strict, TargetBase


@cache
def _list_model(provider: str) -> type[BaseModel]:
    """A model holding `targets:` as the provider's source model declares it."""
    annotation: Any = get_spec(provider).source_model().model_fields["targets"].annotation
    model: type[BaseModel] = create_model("TargetList", __base__=Strict, targets=(annotation, ...))
    return model


def parse_target_list(
    text: str, origin: str, provider: str, *, as_json: bool = False
) -> tuple[TargetBase, ...]:
    """The targets in `text` (YAML, or JSON when `as_json`); ConfigError naming `origin`."""
    try:
        raw = json.loads(text) if as_json else strict_yaml(text)
    except (ValueError, yaml.YAMLError) as e:
        what = "JSON" if as_json else "YAML"
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(origin, [("", f"invalid {what}: {at}{problem}")]) from None
    if not isinstance(raw, list):
        # an empty or half-written file is not "no targets": that is `[]`
        raise ConfigError(origin, [("", "must be a list of targets (`[]` for none)")])
    model = _list_model(provider)
    try:
        parsed = model.model_validate({"targets": raw})
    except ValidationError as e:
        problems = [(p.removeprefix("targets"), m) for p, m in pydantic_problems(e, [], model)]
        raise ConfigError(origin, problems) from None
    targets: tuple[TargetBase, ...] = parsed.targets  # type: ignore[attr-defined]
    problems = []
    keys: dict[str, int] = {}
    labels: dict[str, int] = {}
    for i, t in enumerate(targets):
        if t.key() in keys:
            problems.append((key_path([i]), f"duplicate target {t.key()!r} (also [{keys[t.key()]}])"))
        elif t.stream_label() in labels:
            problems.append(
                (
                    key_path([i, "name"]),
                    f"stream label {t.stream_label()!r} is already used by [{labels[t.stream_label()]}]",
                )
            )
        keys.setdefault(t.key(), i)
        labels.setdefault(t.stream_label(), i)
    if problems:
        raise ConfigError(origin, problems)
    return targets


def is_json(path: str) -> bool:
    return path.lower().endswith(".json")


def read_target_file(path: str, provider: str) -> tuple[TargetBase, ...]:
    """The targets of the file at `path` (JSON when it ends in .json, else YAML), blocking;
    FileProblem or ConfigError naming the file."""
    text = read_text_file(path, max_bytes=MAX_CONFIG_BYTES)
    return parse_target_list(text, path, provider, as_json=is_json(path))


def render_problems(error: ConfigError) -> str:
    """One line for a log: `origin: [2].media: ...; [3]: ...`."""
    return "; ".join(f"{p}: {m}" if p else m for p, m in error.problems)
