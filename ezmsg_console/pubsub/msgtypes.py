"""Which dataclasses a subscriber rebuilds from a payload, and how their typed fields come back.

A dataclass travels as a map holding its wire name (:func:`type_name`); the decoder rebuilds it
only if the subscriber's :class:`TypeMap` names it (built by :func:`types_for` from the stream's
message type). ``Enum`` fields travel by value; the map carries, per dataclass, the converters
that make members of them again (also inside ``Optional`` and list/tuple/set).
"""

from __future__ import annotations

import dataclasses
import types as pytypes
import typing
from enum import Enum
from typing import Any, Callable


def type_name(cls: type) -> str:
    """The wire name of a dataclass: ``"module.QualName"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class TypeMap(dict[str, type]):
    """What :func:`decode` rebuilds: wire name -> dataclass, and for each dataclass the
    converters of its fields that travel as plain values but are typed (``Enum`` fields,
    ``Optional`` and list/tuple/set of them travel by value and are rebuilt as members)."""

    def __init__(self) -> None:
        super().__init__()
        self.converters: dict[str, dict[str, Callable[[Any], Any]]] = {}


def _enum_converter(hint: Any) -> Callable[[Any], Any] | None:
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is pytypes.UnionType:
        inner = [a for a in args if a is not type(None)]
        one = _enum_converter(inner[0]) if len(inner) == 1 else None
        if one is not None:
            return lambda v: None if v is None else one(v)
    elif (origin in (list, set, frozenset) and len(args) == 1) or (origin is tuple and len(args) == 2
                                                                   and args[1] is Ellipsis):
        each = _enum_converter(args[0])
        if each is not None:
            return lambda v: origin(each(x) for x in v) if isinstance(v, list) else v
    return None


def types_for(msg_type: Any) -> TypeMap:
    """The ``types`` map for :func:`decode`: every dataclass reachable from ``msg_type``.

    Follows field type hints and typing constructs (``Optional[X]``, ``list[X]``,
    ``dict[str, X]``, unions, generic aliases); unresolvable hints are skipped.
    """
    found = TypeMap()
    seen: set[int] = set()
    stack: list[Any] = [msg_type]
    while stack:
        tp = stack.pop()
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if id(tp) not in seen:
                seen.add(id(tp))
                found[type_name(tp)] = tp
                try:
                    hints = typing.get_type_hints(tp)
                except Exception:  # noqa: BLE001 - unresolvable forward references
                    hints = {f.name: f.type for f in dataclasses.fields(tp) if not isinstance(f.type, str)}
                stack.extend(hints.values())
                converters = {name: fn for name, hint in hints.items() if (fn := _enum_converter(hint)) is not None}
                if converters:
                    found.converters[type_name(tp)] = converters
            continue
        origin = typing.get_origin(tp)
        if origin is not None:
            stack.append(origin)
        try:
            stack.extend(typing.get_args(tp))
        except Exception:  # noqa: BLE001 - exotic objects in Annotated metadata
            pass
    return found
