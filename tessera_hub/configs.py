"""Typed configs from JSON-style dicts, one way for every config: a run's settings (flags, --config files,
presets: pipelines.cli) and a saved model's config.json (SavedModel). Each value is checked against its field's
type where it enters, so a wrong type or a non-finite number is an error naming the field, never a model
trained or built on it."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

_TYPE_NAMES = {int: "an integer", float: "a finite number", str: "text", bool: "true or false"}


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """`X | None` → (X, True); anything else → (it, False)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def checked_value(annotation: Any, optional: bool, value: Any, name: str) -> Any:
    """`value` checked against a field's type (lists become tuples; non-finite numbers are refused); ValueError
    naming `name`, the value and what was expected."""
    if value is None and optional:
        return None
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}={value!r}: expected a list of {_TYPE_NAMES.get(args[0], args[0])} values")
        variadic = len(args) == 2 and args[1] is Ellipsis
        if not variadic and len(value) != len(args):
            raise ValueError(f"{name}={list(value)}: expected {len(args)} values")
        return tuple(checked_value(args[0] if variadic else args[i], False, v, f"{name}[{i}]")
                     for i, v in enumerate(value))
    if annotation not in _TYPE_NAMES:
        return value  # a type without a JSON form of its own; the dataclass checks it
    if annotation is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif annotation is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    else:
        fits = isinstance(value, annotation)
    if not fits:
        raise ValueError(f"{name}={value!r}: expected {_TYPE_NAMES[annotation]}" + (" or null" if optional else ""))
    return value


def config_from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build a (nested) config dataclass from a JSON-style dict: each value checked against its field's type,
    nested dataclasses from nested dicts; unknown keys and missing required fields are errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{where.rstrip('.') or cls.__name__}={data!r}: expected a JSON object of settings")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config fields {[where + k for k in unknown]}; expected some of {sorted(names)}")
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        annotation, optional = unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(annotation):
            values[f.name] = config_from_dict(annotation, data.get(f.name) or {}, f"{where}{f.name}.")
        elif f.name in data:
            values[f.name] = checked_value(annotation, optional, data[f.name], where + f.name)
    missing = [where + f.name for f in dataclasses.fields(cls)
               if f.init and f.name not in values and field_default(f) is dataclasses.MISSING]
    if missing:
        raise ValueError(f"missing required settings {missing}: give them as flags or in --config")
    try:
        return cls(**values)
    except TypeError as err:  # a check in __post_init__ meeting a value it cannot compare
        raise ValueError(f"{cls.__name__}: {err}") from None


def check_config_types(config: Any, where: str = "") -> None:
    """Every field of a built (nested) config dataclass checked against its type: for configs built by their own
    `from_dict` (a tokenizer's flat config.json), after the fact."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        annotation, optional = unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(annotation) and dataclasses.is_dataclass(value):
            check_config_types(value, f"{where}{f.name}.")
        else:
            checked_value(annotation, optional, value, where + f.name)


def read_json_object(path: Path, name: str | None = None) -> dict:
    """The JSON object in `path`; one-line ValueError naming the file (as `name`, if given) when it is not one."""
    name = name or str(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{name}: expected a JSON object, got {type(data).__name__}")
    return data
