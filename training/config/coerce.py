"""Generic conversion of YAML values to the types a dataclass schema declares.

:func:`build` turns a nested mapping into nested frozen dataclasses, converting every value to
its annotated type (``int``, ``float``, ``bool``, ``str``, ``Path``, ``Literal``, tuples, dicts,
optionals, nested dataclasses); :func:`set_dotted` applies one ``section.key=value`` override
to the raw mapping, checking each part of the key against the schema. Every error is a
:class:`ConfigError` naming the dotted key, with the closest known key for a typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from hemoscan.errors import HemoscanError


class ConfigError(HemoscanError):
    """A training config is unusable; the message names the dotted key and the problem."""


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to the annotated type ``tp``, or a ConfigError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if tp is float:
        # PyYAML reads ``1e-3`` (no dot) as a string: accept numbers written either way
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list, tuple)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(str(value)).expanduser()
    if tp is Any:
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args
        return {coerce(k, kt, key): coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(f"{key}: unsupported type {type_name(tp)}")  # a bug in this module


def unknown_key(key: str, known: Sequence[str]) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = (
        f"; did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?"
        if close
        else ""
    )
    return ConfigError(f"{key}: unknown key{hint} (known: {', '.join(known)})")


def build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in raw:
        if k not in names:
            raise unknown_key(f"{prefix}.{k}" if prefix else str(k), names)
    args = {k: coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in raw.items()}
    return cls(**args)



INDEXED = re.compile(r"^(\w+)\[(\d+)\]$")


def set_dotted(raw: dict[str, Any], key: str, value: Any, schema: type) -> None:
    """Set ``raw[a][b]...`` for ``key = "a.b..."``, checking every part against ``schema``
    (a dataclass).

    A dataset list entry is addressed by index, ``data.train[0].root``; ``[n]`` with ``n``
    the list's length appends an entry. Keys inside an entry are checked when it is read.
    """
    parts = key.split(".")
    cls: Any = schema
    node: Any = raw
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if cls is None:  # inside a free-form dataset entry
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{here}: expected a mapping, got {node!r}")
            continue
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"{key}: {'.'.join(parts[:depth])} has no sub-keys")
        names = [f.name for f in dataclasses.fields(cls)]
        m = INDEXED.match(part)
        name = m.group(1) if m else part
        if name not in names:
            raise unknown_key(here, names)
        if m:
            if typing.get_origin(typing.get_type_hints(cls)[name]) is not tuple:
                raise ConfigError(f"{here}: {name} is not a list")
            items = node.get(name)
            items = list(items) if isinstance(items, (list, tuple)) else []
            index = int(m.group(2))
            if index > len(items):
                raise ConfigError(f"{here}: {name} has {len(items)} entries; index {index} "
                                  f"is out of range (use [{len(items)}] to add one)")  # fmt: skip
            if index == len(items):
                items.append({} if not last else value)
            node[name] = items
            if last:
                items[index] = value
                return
            if not isinstance(items[index], dict):
                raise ConfigError(f"{here}: expected a mapping, got {items[index]!r}")
            node, cls = items[index], None
            continue
        if last:
            node[part] = value
            return
        cls = typing.get_type_hints(cls)[part]
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{here}: expected a mapping in the config file, got {child!r}")
        node = child


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-3"`` -> ``("optim.lr", "1e-3")``; the value is read as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: cannot read value {value!r}: {e}") from None
    return key, parsed
