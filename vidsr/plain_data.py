"""Frozen option and plan dataclasses as plain JSON- and TOML-ready data, and back.

:func:`plain_data` writes fractions as ``"n/d"``, paths as strings and tuples as lists;
:func:`from_plain` reads them back by the dataclass's type hints, so a value read from
JSON compares equal to the one written. A field typed as a union of dataclasses
(``ExecutorPlan``) is told apart by the ``kind`` each member declares.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Union


def plain_data(value: Any) -> Any:
    """``value`` with dataclasses and mappings as dicts (string keys), tuples as lists,
    fractions as ``"n/d"`` and paths as strings."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, Path):
        return str(value)
    return value


def from_plain(kind: Any, data: Any) -> Any:
    """``data`` (from :func:`plain_data`) read back as a value of type ``kind``."""
    if data is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        return _from_union(typing.get_args(kind), data)
    if origin is Literal or kind is Any:
        return _frozen(data) if kind is Any else data
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], item) for item in data)
        return tuple(from_plain(arg, item) for arg, item in zip(args, data, strict=True))
    if origin in (Mapping, dict) or kind in (Mapping, dict):
        args = typing.get_args(kind) or (str, Any)
        return {key: from_plain(args[1], value) for key, value in data.items()}
    if kind is Fraction:
        return Fraction(data)
    if kind is Path:
        return Path(data)
    if kind is float and isinstance(data, int):
        return float(data)
    if isinstance(kind, type) and is_dataclass(kind):
        hints = typing.get_type_hints(kind, vars(sys.modules[kind.__module__]))
        return kind(**{f.name: from_plain(hints[f.name], data[f.name])
                       for f in fields(kind) if f.init and f.name in data})
    return data


def _from_union(members: tuple[Any, ...], data: Any) -> Any:
    present = [m for m in members if m is not type(None)]
    if len(present) == 1:
        return from_plain(present[0], data)
    if isinstance(data, Mapping) and "kind" in data:
        for member in present:
            if getattr(member, "kind", None) == data["kind"]:
                return from_plain(member, data)
        raise ValueError(f"no member of {present} has kind {data['kind']!r}")
    for member in present:  # scalars: the first type the value already is
        if isinstance(member, type) and isinstance(data, member):
            return data
    return from_plain(present[0], data)


def _frozen(data: Any) -> Any:
    """Untyped data (a network's hyperparameters) as frozen values keep it: lists as
    tuples."""
    if isinstance(data, list):
        return tuple(_frozen(item) for item in data)
    if isinstance(data, dict):
        return {key: _frozen(value) for key, value in data.items()}
    return data
