"""Readable configuration errors: `file: key.path: what is wrong`, one line per problem."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError


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


def key_path(parts: Sequence[str | int]) -> str:
    """['sources', 0, 'targets', 1, 'name'] -> 'sources[0].targets[1].name'."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def pydantic_problems(
    err: ValidationError, prefix: Sequence[str | int], model: type[BaseModel]
) -> list[tuple[str, str]]:
    """pydantic's errors as (key path, message), in the words of the rest of the loader."""
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
            msg = "missing required key" + _needs(model, loc)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append((key_path([*prefix, *loc]), msg))
    return out


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> Any:
    """The model found at `loc` inside `model`, or None."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = current.model_fields if isinstance(current, type) and issubclass(current, BaseModel) else {}
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return None
        current = _model_in(field.annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _valid_keys(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """' (valid keys: a, b)' for the model found at `loc` inside `model`, best effort."""
    found = _model_at(model, loc)
    if found is None:
        return ""
    keys = [f.alias or n for n, f in found.model_fields.items()]
    return f" (valid keys: {', '.join(keys)})"


def _needs(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """What a missing key must hold: ': needs api_key (or api_key_file)' for a missing block,
    ' (or api_key_file)' for a missing credential."""
    keys = [p for p in loc if isinstance(p, str)]
    if not keys:
        return ""
    in_credentials = "credentials" in keys[:-1]
    if in_credentials:
        return f" (or {keys[-1]}_file)"
    parent = _model_at(model, loc[:-1])
    fields = parent.model_fields if parent is not None else {}
    field = fields.get(keys[-1]) or next((f for f in fields.values() if f.alias == keys[-1]), None)
    block = _model_in(field.annotation) if field is not None else None
    if block is None:
        return ""
    required = [f.alias or n for n, f in block.model_fields.items() if f.is_required()]
    if keys[-1] == "credentials":
        required = [f"{k} (or {k}_file)" for k in required]
    return f": needs {_and(required)}" if required else ""


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
