"""Dataclass <-> plain-data conversion with type checking on the way in.

Wire messages are frozen dataclasses. On the wire each is a msgpack map of its
fields plus a ``kind`` tag (for :class:`Message` subclasses). Decoding checks
every field against its annotation, so a frame of valid msgpack but the wrong
shape is a :class:`DecodeError` naming the path, never a ``TypeError`` later.

Supported annotations: ``str int float bool bytes None Any``, ``X | None``,
``Literal[...]``, ``list[T]``, ``tuple[T, ...]``, ``dict[str, T]``, ``Enum``
subclasses (sent as their value), nested dataclasses, and :class:`Message`
subclasses used polymorphically (decoded by their ``kind`` tag).

For speed, one decoder function is compiled per annotation and one encoder
per class, both cached; the path of a mismatch is only assembled when one
happens.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any, Callable, ClassVar, Mapping

from .errors import DecodeError, LocalProtocolError


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """Base of every tagged wire message; subclasses set ``KIND``."""

    KIND: ClassVar[str] = ""


# -- encoding ----------------------------------------------------------------

_PLAIN = (str, int, float, bool, bytes, type(None))
_PLAIN_TYPES = frozenset(_PLAIN)
"""The exact types that are already plain (a set lookup; subclasses, e.g. str enums, take the
slower way through :func:`to_wire` and come out the same)."""


def to_wire(value: Any) -> Any:
    """Turn dataclasses, enums and tuples into msgpack-ready plain data."""
    if isinstance(value, _PLAIN):
        return value
    cls: type = type(value)
    return _encoder(cls)(value)


def _encode_list(value: Any) -> Any:
    plain = _PLAIN_TYPES
    return [v if type(v) in plain else to_wire(v) for v in value]


def _encode_dict(value: Any) -> Any:
    plain = _PLAIN_TYPES
    return {k: v if type(v) in plain else to_wire(v) for k, v in value.items()}


def _identity(value: Any) -> Any:
    return value


MAX_FREE_FORM_DEPTH = 32
"""How deeply free-form (``Any``) data may nest; deeper is a DecodeError, so
whatever decodes can always be encoded again."""


def _dec_free_form(data: Any) -> Any:
    """Accept any plain data nested at most MAX_FREE_FORM_DEPTH deep (iterative walk)."""
    kind = type(data)
    if kind is not list and kind is not dict:  # the codec makes exact lists and dicts only
        return data
    stack = [(data, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth > MAX_FREE_FORM_DEPTH:
            raise _Mismatch(f"nested deeper than {MAX_FREE_FORM_DEPTH} levels")
        for child in (value.values() if type(value) is dict else value):
            kind = type(child)
            if kind is list or kind is dict:
                push((child, depth + 1))
    return data


@functools.cache
def _encoder(cls: type) -> Callable[[Any], Any]:
    if dataclasses.is_dataclass(cls):
        names = tuple(f.name for f in dataclasses.fields(cls))
        kind = getattr(cls, "KIND", "")

        def encode(value: Any) -> Any:
            out: dict[str, Any] = {"kind": kind} if kind else {}
            plain = _PLAIN_TYPES
            for name in names:
                v = getattr(value, name)
                out[name] = v if type(v) in plain else to_wire(v)
            return out

        return encode
    if issubclass(cls, enum.Enum):
        return lambda value: value.value
    if issubclass(cls, (list, tuple)):
        return _encode_list
    if issubclass(cls, dict):
        return _encode_dict
    return _identity  # numpy arrays and the like: the codec decides


# -- decoding ----------------------------------------------------------------


class _Mismatch(Exception):
    """Internal: a value does not fit; ``path`` is filled in while unwinding."""

    def __init__(self, text: str, expected: str | None = None, got: str | None = None, **extra: Any) -> None:
        self.text = text
        self.expected = expected
        self.got = got
        self.extra = extra
        self.path: list[str] = []


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def from_wire(tp: Any, data: Any, path: str = "") -> Any:
    """Check ``data`` against annotation ``tp`` and build the typed value."""
    try:
        return _decoder(tp)(data)
    except _Mismatch as exc:
        full = path + "".join(reversed(exc.path))
        full = full.lstrip(".")
        details: dict[str, Any] = {"path": full}
        if exc.expected is not None:
            details.update(expected=exc.expected, got=exc.got)
        details.update(exc.extra)
        raise DecodeError(f"{full or 'message'}: {exc.text}", details) from None


def _got(data: Any) -> str:
    return type(data).__name__


def _expected(label: str, data: Any) -> _Mismatch:
    return _Mismatch(f"expected {label}, got {_got(data)}", label, _got(data))


def _scalar(expected: type, label: str) -> Callable[[Any], Any]:
    if expected is float:
        def dec_float(data: Any) -> Any:
            if isinstance(data, float):
                return data
            if isinstance(data, int) and not isinstance(data, bool):
                return float(data)
            raise _expected("float", data)
        return dec_float
    if expected is int:
        def dec_int(data: Any) -> Any:
            if isinstance(data, int) and not isinstance(data, bool):
                return data
            raise _expected("int", data)
        return dec_int

    def dec(data: Any) -> Any:
        if type(data) is expected or isinstance(data, expected):
            return data
        raise _expected(label, data)
    return dec


def _dec_none(data: Any) -> Any:
    if data is not None:
        raise _expected("nil", data)
    return None


_SCALARS: dict[Any, Callable[[Any], Any]] = {
    str: _scalar(str, "str"),
    int: _scalar(int, "int"),
    float: _scalar(float, "float"),
    bool: _scalar(bool, "bool"),
    bytes: _scalar(bytes, "bin"),
}


@functools.cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    if tp is Any:
        return _dec_free_form
    if tp in _SCALARS:
        return _SCALARS[tp]
    if tp is None or tp is type(None):
        return _dec_none
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union(tp)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)

        def dec_literal(data: Any) -> Any:
            if isinstance(data, bool) or data not in allowed:
                raise _Mismatch(f"{data!r} is not one of {allowed}")
            return data
        return dec_literal
    if origin in (list, tuple):
        return _sequence(tp, origin)
    if origin is dict:
        return _mapping(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if issubclass(tp, Message):
            return _tagged(tp)
        return _fields(tp)
    raise TypeError(f"unsupported wire annotation {tp!r}")


def _union(tp: Any) -> Callable[[Any], Any]:
    args = typing.get_args(tp)
    optional = type(None) in args
    options = [_decoder(a) for a in args if a is not type(None)]
    names = " | ".join(_describe(a) for a in args)

    def dec_union(data: Any) -> Any:
        if data is None and optional:
            return None
        last: _Mismatch | None = None
        for option in options:
            try:
                return option(data)
            except _Mismatch as exc:
                last = exc
        if len(options) == 1 and last is not None:
            raise last
        raise _expected(names, data)
    return dec_union


def _sequence(tp: Any, origin: Any) -> Callable[[Any], Any]:
    args = typing.get_args(tp)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        parts = [_decoder(a) for a in args]

        def dec_fixed(data: Any) -> Any:
            if not isinstance(data, list):
                raise _expected("list", data)
            if len(data) != len(parts):
                raise _Mismatch(f"expected {len(parts)} items, got {len(data)}")
            return tuple(_at(p, v, i) for i, (p, v) in enumerate(zip(parts, data)))
        return dec_fixed
    item = _decoder(args[0] if args else Any)
    build = tuple if origin is tuple else list

    def dec_seq(data: Any) -> Any:
        if not isinstance(data, list):
            raise _expected("list", data)
        if item is _dec_free_form:
            return build([_at(item, v, i) for i, v in enumerate(data)])
        return build([_at(item, v, i) for i, v in enumerate(data)])
    return dec_seq


def _at(decode: Callable[[Any], Any], value: Any, index: int) -> Any:
    try:
        return decode(value)
    except _Mismatch as exc:
        exc.path.append(f"[{index}]")
        raise


def _mapping(tp: Any) -> Callable[[Any], Any]:
    args = typing.get_args(tp)
    value_dec = _decoder(args[1] if args else Any)

    def dec_map(data: Any) -> Any:
        if not isinstance(data, dict):
            raise _expected("map", data)
        out = {}
        for k, v in data.items():
            if not isinstance(k, str):
                raise _Mismatch(f"expected str key, got {_got(k)}")
            try:
                out[k] = value_dec(v)
            except _Mismatch as exc:
                exc.path.append(f".{k}")
                raise
        return out
    return dec_map


def _enum(tp: type[enum.Enum]) -> Callable[[Any], Any]:
    allowed = [m.value for m in tp]

    def dec_enum(data: Any) -> Any:
        try:
            return tp(data)
        except (ValueError, TypeError):
            raise _Mismatch(f"{data!r} is not one of {allowed}") from None
    return dec_enum


@functools.cache
def _fields(tp: type) -> Callable[[Any], Any]:
    hints = typing.get_type_hints(tp)
    specs = []
    for f in dataclasses.fields(tp):
        if f.init:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            specs.append((f.name, _decoder(hints[f.name]), required))

    def dec_fields(data: Any) -> Any:
        if not isinstance(data, dict):
            raise _expected(f"{tp.__name__} map", data)
        kwargs = {}
        for name, decode, required in specs:
            if name not in data:
                if required:
                    exc = _Mismatch("missing field")
                    exc.path.append(f".{name}")
                    raise exc
                continue
            try:
                kwargs[name] = decode(data[name])
            except _Mismatch as exc:
                exc.path.append(f".{name}")
                raise
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as err:  # __post_init__ validation
            raise _Mismatch(str(err)) from None
    return dec_fields


def _tagged(base: type) -> Callable[[Any], Any]:
    def dec_tagged(data: Any) -> Any:
        if not isinstance(data, dict):
            raise _expected(f"{base.__name__} map", data)
        kind = data.get("kind")
        if not isinstance(kind, str):
            raise _Mismatch("missing 'kind' tag")
        cls = _kinds_of(base).get(kind)
        if cls is None:
            raise _Mismatch(f"unknown message kind {kind!r}", kind=kind)
        return _fields(cls)(data)
    return dec_tagged


@functools.cache
def _kinds_of(base: type) -> Mapping[str, type]:
    """Kind tag -> class for the catalogued messages that are ``base`` or below it."""
    from .catalog import KINDS  # the catalog imports this module

    return types.MappingProxyType({k: c for k, c in KINDS.items() if issubclass(c, base)})


def decode_message(data: Any) -> Message:
    """Decode a top-level wire map into its :class:`Message` subclass."""
    return typing.cast(Message, from_wire(Message, data))


def encode_message(msg: Message) -> dict[str, Any]:
    """The wire map of ``msg``; refuses objects that are not tagged messages."""
    if not isinstance(msg, Message) or not msg.KIND:
        raise LocalProtocolError(f"{type(msg).__name__} is not a wire message")
    return typing.cast("dict[str, Any]", to_wire(msg))


def known_kinds() -> Mapping[str, type]:
    """Every catalogued message kind -> its class (for tests and docs)."""
    return _kinds_of(Message)
