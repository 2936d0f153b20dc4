"""Load frozen dataclasses from YAML with strict type checks, and describe them for `--help`.

A config class is a frozen dataclass whose fields carry a one-line help string in
`field(metadata={"help": ...})`; sections are nested dataclasses. Loading rejects unknown keys (with a
"did you mean" suggestion), missing required keys and values of the wrong type. Each error names the dotted
key, the expected type and the value, so a typo in a long YAML file fails before any compute is spent.

Accepted types: `bool`, `int` (never a bool), `float` (an int, or text such as '1e-3', is accepted), `str`, `Literal[...]`,
`X | None`, `tuple[X, ...]`, `tuple[X, Y]`, `list[X]`, `dict[str, X]` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from pretrain.errors import ConfigError

T = TypeVar("T")

# YAML 1.1 (PyYAML) reads exponent floats without a dot, such as 1e-3, as text, so such strings are accepted
# for float fields.
_EXPONENT_FLOAT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def config_field(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING):
    """Declare a config field with its help text; a field without a default is a required key."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"help": help})


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> T:
    """Read a YAML file (or nothing when `path` is None), apply `section.key=value` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml_mapping(Path(path))
    for override in overrides:
        apply_override(data, override)
    return config_from_dict(cls, data)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file whose top level is a mapping (an empty file is an empty mapping)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {_one_line(error)}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must contain a mapping at the top level, got {_describe(loaded)}")
    return loaded


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set `section.key=value` in the nested mapping `data`; the value is parsed with `yaml.safe_load`."""
    dotted_key, separator, raw_value = override.partition("=")
    dotted_key = dotted_key.strip()
    if not separator or not dotted_key:
        raise ConfigError(f"invalid override {override!r}: expected section.key=value, e.g. optim.lr=0.001")
    parts = dotted_key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"invalid override {override!r}: empty name in key {dotted_key!r}")
    try:
        value = yaml.safe_load(raw_value)
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid override {override!r}: value is not valid YAML: {_one_line(error)}") from error

    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"invalid override {override!r}: {prefix} is a value, not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build the dataclass `cls` from a nested mapping, checking keys and types; `prefix` names the section."""
    section = prefix.rstrip(".") or "the config"
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a mapping of keys to values, got {_describe(data)}")

    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(str(key), prefix, list(fields)))

    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], prefix + name)
        elif dataclasses.is_dataclass(hints[name]) and field.default_factory is dataclasses.MISSING:
            # A missing section with required keys: report the first missing key, not the section.
            values[name] = config_from_dict(hints[name], {}, prefix + name + ".")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {prefix + name}: {field.metadata.get('help', '')}")
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Convert a config dataclass to plain dicts, lists and scalars, ready for `yaml.safe_dump` or a checkpoint."""
    return _plain(dataclasses.asdict(config))


def describe_config(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """List (dotted key, type, default, help) for every leaf field, sections expanded in declaration order."""
    rows: list[tuple[str, str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        field_type = hints[field.name]
        if dataclasses.is_dataclass(field_type):
            rows.extend(describe_config(field_type, prefix + field.name + "."))
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        rows.append((prefix + field.name, type_name(field_type), default, field.metadata.get("help", "")))
    return rows


def format_config_help(cls: type) -> str:
    """Render `describe_config` as indented text for an argparse epilog."""
    lines = []
    for key, type_text, default, help_text in describe_config(cls):
        default_text = "required" if default is dataclasses.MISSING else f"default {_plain(default)!r}"
        lines.append(f"  {key} ({type_text}; {default_text})")
        lines.append(f"      {help_text}")
    return "\n".join(lines)


def type_name(field_type: Any) -> str:
    """Name a type annotation the way the error messages and help text show it."""
    origin = typing.get_origin(field_type)
    arguments = typing.get_args(field_type)
    if origin is Literal:
        return " | ".join(repr(choice) for choice in arguments)
    if origin in (Union, types.UnionType):
        names = [type_name(argument) for argument in arguments if argument is not type(None)]
        suffix = " or null" if type(None) in arguments else ""
        return " or ".join(names) + suffix
    if origin is tuple:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return f"list of {type_name(arguments[0])}"
        return f"list of {len(arguments)} ({', '.join(type_name(argument) for argument in arguments)})"
    if origin is list:
        return f"list of {type_name(arguments[0])}"
    if origin is dict:
        return f"mapping of {type_name(arguments[0])} to {type_name(arguments[1])}"
    if dataclasses.is_dataclass(field_type):
        return "section"
    return getattr(field_type, "__name__", str(field_type))


def _convert(field_type: Any, value: Any, key: str) -> Any:
    """Check `value` against `field_type` and return it in the field's Python form (lists become tuples)."""
    origin = typing.get_origin(field_type)
    arguments = typing.get_args(field_type)

    if field_type is Any:
        return value
    if dataclasses.is_dataclass(field_type):
        return config_from_dict(field_type, value, key + ".")
    if origin in (Union, types.UnionType):
        return _convert_union(field_type, arguments, value, key)
    if origin is Literal:
        # Compare types as well as values so that True does not pass as the choice 1.
        if any(type(value) is type(choice) and value == choice for choice in arguments):
            return value
        raise ConfigError(f"{key} must be one of {type_name(field_type)}, got {value!r}")
    if origin is tuple:
        return _convert_tuple(field_type, arguments, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, field_type, value)
        return [_convert(arguments[0], item, f"{key}[{index}]") for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(key, field_type, value)
        return {
            _convert(arguments[0], name, f"{key} key"): _convert(arguments[1], item, f"{key}.{name}")
            for name, item in value.items()
        }
    if field_type is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(key, field_type, value)
    if field_type is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(key, field_type, value)
    if field_type is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)
        raise _type_error(key, field_type, value)
    if field_type is str:
        if isinstance(value, str):
            return value
        raise ConfigError(
            f"{key} must be str, got {_describe(value)}; quote the value if a number or date was meant as text"
        )
    raise TypeError(f"config field {key} has an unsupported annotation {field_type!r}")


def _convert_union(field_type: Any, arguments: tuple, value: Any, key: str) -> Any:
    if value is None:
        if type(None) in arguments:
            return None
        raise _type_error(key, field_type, value)
    for argument in arguments:
        if argument is type(None):
            continue
        try:
            return _convert(argument, value, key)
        except ConfigError:
            continue
    raise _type_error(key, field_type, value)


def _convert_tuple(field_type: Any, arguments: tuple, value: Any, key: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise _type_error(key, field_type, value)
    if len(arguments) == 2 and arguments[1] is Ellipsis:
        return tuple(_convert(arguments[0], item, f"{key}[{index}]") for index, item in enumerate(value))
    if len(value) != len(arguments):
        raise ConfigError(f"{key} must have {len(arguments)} items ({type_name(field_type)}), got {value!r}")
    return tuple(
        _convert(argument, item, f"{key}[{index}]") for index, (argument, item) in enumerate(zip(arguments, value))
    )


def _type_error(key: str, field_type: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key} must be {type_name(field_type)}, got {_describe(value)}")


def _unknown_key_message(key: str, prefix: str, valid: list[str]) -> str:
    message = f"unknown key {prefix + key!r}"
    suggestions = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if suggestions:
        message += f" (did you mean {prefix + suggestions[0]!r}?)"
    where = f"in {prefix.rstrip('.')}" if prefix else "at the top level"
    return f"{message}; valid keys {where}: {', '.join(valid)}"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
