"""Dataclass <-> plain-data conversion with type checking on the way in.

Wire messages are frozen dataclasses. On the wire each is a msgpack map of its
fields plus a ``kind`` tag (for :class:`Message` subclasses). Decoding checks
every field against its annotation, so a frame of valid msgpack but the wrong
shape is a :class:`DecodeError` naming the path, never a ``TypeError`` later.

Supported annotations: ``str int float bool bytes None Any``, ``X | None``,
``Literal[...]``, ``list[T]``, ``tuple[T, ...]``, ``dict[str, T]``, ``Enum``
subclasses (sent as their value), nested dataclasses, and :class:`Message`
subclasses used polymorphically (decoded by their ``kind`` tag).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import types
import typing
from typing import Any, ClassVar, Mapping

from .errors import DecodeError, LocalProtocolError


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """Base of every tagged wire message; subclasses set ``KIND``."""

    KIND: ClassVar[str] = ""


def to_wire(value: Any) -> Any:
    """Turn dataclasses, enums and tuples into msgpack-ready plain data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        kind = getattr(value, "KIND", "")
        if kind:
            out["kind"] = kind
        for f in dataclasses.fields(value):
            out[f.name] = to_wire(getattr(value, f.name))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, annotation, required) for each init field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        specs.append((f.name, hints[f.name], required))
    return tuple(specs)


@functools.cache
def _kinds_of(base: type) -> Mapping[str, type]:
    """Kind tag -> class for the catalogued messages that are ``base`` or below it."""
    from .catalog import KINDS  # the catalog imports this module

    return types.MappingProxyType({k: c for k, c in KINDS.items() if issubclass(c, base)})


def _fail(path: str, expected: str, got: Any) -> DecodeError:
    return DecodeError(
        f"{path or 'message'}: expected {expected}, got {type(got).__name__}",
        {"path": path, "expected": expected, "got": type(got).__name__},
    )


def from_wire(tp: Any, data: Any, path: str = "") -> Any:
    """Check ``data`` against annotation ``tp`` and build the typed value."""
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_wire(arg, data, path)
            except DecodeError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise _fail(path, " | ".join(getattr(a, "__name__", str(a)) for a in args), data)
    if origin is typing.Literal:
        if data not in typing.get_args(tp) or isinstance(data, bool):
            raise DecodeError(f"{path}: {data!r} is not one of {typing.get_args(tp)}", {"path": path})
        return data
    if origin is list:
        if not isinstance(data, list):
            raise _fail(path, "list", data)
        (item,) = typing.get_args(tp) or (Any,)
        return [from_wire(item, v, f"{path}[{i}]") for i, v in enumerate(data)]
    if origin is tuple:
        if not isinstance(data, list):
            raise _fail(path, "list", data)
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_wire(args[0], v, f"{path}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise DecodeError(f"{path}: expected {len(args)} items, got {len(data)}", {"path": path})
        return tuple(from_wire(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, data)))
    if origin is dict:
        if not isinstance(data, dict):
            raise _fail(path, "map", data)
        _key_tp, val_tp = typing.get_args(tp) or (str, Any)
        out = {}
        for k, v in data.items():
            if not isinstance(k, str):
                raise _fail(f"{path}.<key>", "str", k)
            out[k] = from_wire(val_tp, v, f"{path}.{k}")
        return out
    if tp is type(None) or tp is None:
        if data is not None:
            raise _fail(path, "nil", data)
        return None
    if tp is bool:
        if not isinstance(data, bool):
            raise _fail(path, "bool", data)
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise _fail(path, "int", data)
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise _fail(path, "float", data)
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise _fail(path, "str", data)
        return data
    if tp is bytes:
        if not isinstance(data, bytes):
            raise _fail(path, "bin", data)
        return data
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except (ValueError, TypeError):
            allowed = [m.value for m in tp]
            raise DecodeError(f"{path}: {data!r} is not one of {allowed}", {"path": path}) from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, path)
    raise DecodeError(f"{path}: unsupported annotation {tp!r}", {"path": path})


def _decode_dataclass(tp: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise _fail(path, f"{tp.__name__} map", data)
    if issubclass(tp, Message):
        kind = data.get("kind")
        if not isinstance(kind, str):
            raise DecodeError(f"{path or 'message'}: missing 'kind' tag", {"path": path})
        cls = _kinds_of(tp).get(kind)
        if cls is None:
            raise DecodeError(f"{path or 'message'}: unknown message kind {kind!r}", {"path": path, "kind": kind})
        tp = cls
    kwargs = {}
    for name, annotation, required in _hints(tp):
        sub = f"{path}.{name}" if path else name
        if name not in data:
            if required:
                raise DecodeError(f"{sub}: missing field", {"path": sub})
            continue
        kwargs[name] = from_wire(annotation, data[name], sub)
    try:
        return tp(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ validation
        raise DecodeError(f"{path or tp.__name__}: {exc}", {"path": path}) from None


def decode_message(data: Any) -> Message:
    """Decode a top-level wire map into its :class:`Message` subclass."""
    return typing.cast(Message, from_wire(Message, data))


def encode_message(msg: Message) -> dict[str, Any]:
    """The wire map of ``msg``; refuses objects that are not tagged messages."""
    if not isinstance(msg, Message) or not msg.KIND:
        raise LocalProtocolError(f"{type(msg).__name__} is not a wire message")
    return typing.cast(dict, to_wire(msg))


def finite(value: float, name: str) -> float:
    """Validation helper for __post_init__: reject NaN and infinities."""
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return value


def known_kinds() -> Mapping[str, type]:
    """Every catalogued message kind -> its class (for tests and docs)."""
    return _kinds_of(Message)
