"""Settings objects <-> plain data (what crosses process boundaries: never pickle).

``to_plain`` turns a settings dataclass into msgpack-safe data: dataclasses
become field dicts, enums their values, tuples and sets lists, numpy arrays
and scalars lists and numbers. ``from_plain`` rebuilds the typed object from
that data using the class's type hints, so a worker process can recreate a
unit's settings without anything executable crossing the wire.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from ..protocol.errors import SettingsValidationError


def to_plain(value: Any) -> Any:
    """Plain (msgpack-safe) data for a settings value."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_plain(v) for v in value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return to_plain(tolist())
    return repr(value)


def from_plain(tp: Any, data: Any, path: str = "") -> Any:
    """Rebuild a value of annotation ``tp`` from plain data (the inverse of to_plain).

    Raises SettingsValidationError naming the field path when ``data`` does
    not fit.
    """
    if tp is Any or tp is object:
        return data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_plain(arg, data, path)
            except SettingsValidationError:
                continue
        raise _bad(path, tp, data)
    if origin is typing.Literal:
        # strict: True is not 1 and 1.0 is not 1 here
        if any(type(data) is type(arg) and data == arg for arg in args):
            return data
        raise _bad(path, tp, data)
    if origin in (list, tuple, set, frozenset):
        if not isinstance(data, (list, tuple)):
            raise _bad(path, tp, data)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(data):
                raise _bad(path, tp, data)
            return tuple(from_plain(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, data)))
        item = args[0] if args else Any
        items = [from_plain(item, v, f"{path}[{i}]") for i, v in enumerate(data)]
        return origin(items) if origin is not list else items
    if origin is dict:
        if not isinstance(data, dict):
            raise _bad(path, tp, data)
        val_tp = args[1] if len(args) == 2 else Any
        return {k: from_plain(val_tp, v, f"{path}.{k}") for k, v in data.items()}
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            if isinstance(data, tp):
                return data
            try:
                return tp(data)
            except ValueError:
                raise _bad(path, tp, data) from None
        if dataclasses.is_dataclass(tp):
            return _dataclass_from_plain(tp, data, path)
        if tp is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if tp is int and isinstance(data, bool):
            raise _bad(path, tp, data)
        if isinstance(data, tp):
            return data
        raise _bad(path, tp, data)
    return data  # an annotation we cannot check (e.g. a TypeVar): take it as it is


def _dataclass_from_plain(tp: type, data: Any, path: str) -> Any:
    if isinstance(data, tp):
        return data
    if not isinstance(data, dict):
        raise _bad(path, tp, data)
    hints = typing.get_type_hints(tp)
    kwargs = {}
    names = set()
    for f in dataclasses.fields(tp):
        if not f.init:
            continue  # not settable: a key naming it is reported as unknown below
        names.add(f.name)
        if f.name in data:
            kwargs[f.name] = from_plain(hints.get(f.name, Any), data[f.name], f"{path}.{f.name}".lstrip("."))
    unknown = sorted(set(data) - names)
    if unknown:
        raise SettingsValidationError(f"{tp.__name__} has no field(s) {', '.join(unknown)}",
                                      {"path": path, "unknown": unknown})
    try:
        return tp(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SettingsValidationError(f"{path or tp.__name__}: {exc}", {"path": path}) from None


def _bad(path: str, tp: Any, data: Any) -> SettingsValidationError:
    expected = getattr(tp, "__name__", None) or str(tp)
    return SettingsValidationError(
        f"{path or 'value'}: expected {expected}, got {type(data).__name__} {data!r:.60}",
        {"path": path, "expected": expected, "got": type(data).__name__},
    )


def at_path(value: Any, path: str) -> Any:
    """The part of a plain settings value at a dotted field path (None where it does not exist)."""
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
