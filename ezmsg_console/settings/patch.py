"""Field-level settings edits: validate one value against its field, patch a copy.

:func:`coerce_field` checks a plain value against a :class:`SettingsFieldMetadata`
(bool is not int, int is fine for float, no NaN or infinities, None only when
optional, bounds, choices, read-only) and returns it in plain form.
:func:`patch_settings` walks a dotted path through dataclass fields and mapping
keys, validates the leaf, and rebuilds every level on the way back up with
``dataclasses.replace`` (so ``__post_init__`` checks run) or a copied mapping.
The settings object it was given is never mutated.

A dict written to a nested settings field is a *partial* update: the keys it
names replace those sub-fields of the current value, the others are kept.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import typing
from collections.abc import Mapping, MutableMapping
from typing import Any

from ..protocol.errors import InvalidRequest, InvalidValue, SettingsValidationError, UnknownField
from .schema import (SettingsFieldMetadata, SettingsSchemaMetadata, annotation_field, build_schema,
                     resolved_hints)
from .values import from_plain

_ARTICLE = {"bool": "a bool", "int": "an int", "float": "a float", "str": "a str"}


# --------------------------------------------------------------------------- validation


def coerce_field(field: SettingsFieldMetadata, value: Any, field_path: str) -> Any:
    """``value`` validated against ``field`` and coerced to plain form (int -> float for
    float fields, Enum member -> its value, tuple -> list).

    Raises InvalidValue (details ``field_path``, ``expected``, ``got``, ``reason``),
    or UnknownField for a key of a nested-settings dict that names no sub-field.
    """
    if field.read_only:
        raise _invalid(field_path, "no change (the field is read-only)", value, "read_only",
                       message=f"{field_path}: the field is read-only, got {_show(value)}")
    if value is None:
        if field.optional or field.kind == "any":
            return None
        raise _invalid(field_path, _expected(field), value, "none")
    if isinstance(value, enum.Enum):
        value = value.value
    kind = field.kind
    if kind in _ARTICLE:
        result = _scalar(kind, value, field, field_path)
    elif kind == "list":
        result = _list(field, value, field_path)
    elif kind == "nested":
        result = _nested(field, value, field_path)
    else:  # enum, choices (Literal) and any: the choices check below is the whole test
        result = value
    if field.choices is not None and not _in_choices(result, field.choices, numeric=kind == "float"):
        raise _invalid(field_path, _expected(field), value, "choices")
    return result


def _scalar(kind: str, value: Any, field: SettingsFieldMetadata, path: str, item: bool = False) -> Any:
    """One bool/int/float/str value (a field, or a list item when ``item``)."""

    def expected() -> str:
        return f"a list of {kind}{_bounds_text(field)}" if item else _expected(field)

    original = value
    is_bool = isinstance(value, bool)
    if kind == "bool":
        ok = is_bool
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not is_bool
    else:
        ok = isinstance(value, (int, float)) and not is_bool
        if ok:
            try:
                value = float(value)
            except OverflowError:
                ok = False
            else:
                if not math.isfinite(value):
                    raise _invalid(path, expected().replace("float", "finite float", 1), original, "not_finite")
    if not ok:
        raise _invalid(path, expected(), original, "type")
    if kind in ("int", "float") and not _within(value, field):
        raise _invalid(path, expected(), original, "bounds")
    return value


def _list(field: SettingsFieldMetadata, value: Any, path: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise _invalid(path, _expected(field), value, "type")
    if field.item_kind not in _ARTICLE:
        return list(value)
    return [_scalar(field.item_kind, v, field, f"{path}[{i}]", item=True) for i, v in enumerate(value)]


def _nested(field: SettingsFieldMetadata, value: Any, path: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if not isinstance(value, Mapping):
        raise _invalid(path, _expected(field), value, "type")
    subfields = {f.name: f for f in field.fields}
    result: dict[str, Any] = {}
    for key, sub_value in value.items():
        sub_path = f"{path}.{key}"
        if key not in subfields:
            raise UnknownField(f"{sub_path}: {_short_type(field.field_type)} has no field {key!r}",
                               {"field_path": sub_path})
        result[key] = coerce_field(subfields[key], sub_value, sub_path)
    return result


def _within(value: float, field: SettingsFieldMetadata) -> bool:
    if field.bounds is None:
        return True
    (lower, upper), (lower_incl, upper_incl) = field.bounds, field.bounds_inclusive
    if lower is not None and (value < lower or (value == lower and not lower_incl)):
        return False
    return not (upper is not None and (value > upper or (value == upper and not upper_incl)))


def _in_choices(value: Any, choices: tuple[Any, ...], *, numeric: bool) -> bool:
    """Whether ``value`` is a choice, types included (True is not 1, 1.0 is not 1 unless numeric)."""
    for choice in choices:
        if numeric and not isinstance(choice, bool) and isinstance(choice, (int, float)):
            if value == choice:
                return True
        elif type(value) is type(choice) and value == choice:
            return True
    return False


def _expected(field: SettingsFieldMetadata) -> str:
    if field.choices is not None:
        text = f"one of {list(field.choices)!r}"
    elif field.kind in _ARTICLE:
        text = _ARTICLE[field.kind] + _bounds_text(field)
    elif field.kind == "list":
        text = f"a list of {field.item_kind}" if field.item_kind else "a list"
        text += _bounds_text(field)
    elif field.kind == "nested":
        text = f"a mapping of {_short_type(field.field_type)} fields"
    else:
        text = "a value"
    return text + (" or None" if field.optional else "")


def _bounds_text(field: SettingsFieldMetadata) -> str:
    if field.bounds is None or field.kind not in ("int", "float", "list"):
        return ""
    (lower, upper), (lower_incl, upper_incl) = field.bounds, field.bounds_inclusive
    if lower is not None and upper is not None:
        return f" in {'[' if lower_incl else '('}{_num(lower)}, {_num(upper)}{']' if upper_incl else ')'}"
    if lower is not None:
        return f" {'>=' if lower_incl else '>'} {_num(lower)}"
    if upper is not None:
        return f" {'<=' if upper_incl else '<'} {_num(upper)}"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _short_type(field_type: str) -> str:
    return field_type.rsplit(".", 1)[-1]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _invalid(path: str, expected: str, value: Any, reason: str, *, message: str | None = None) -> InvalidValue:
    got = _show(value)
    return InvalidValue(message or f"{path}: expected {expected}, got {got}",
                        {"field_path": path, "expected": expected, "got": got, "reason": reason})


# --------------------------------------------------------------------------- patching


MAX_FIELD_PATH = 256
"""Longest field path accepted (characters); a longer one is refused before it is looked up."""
MAX_FIELD_DEPTH = 32


def check_field_path(field_path: Any) -> str:
    """``field_path`` if it is a usable dotted path; InvalidRequest otherwise, echoing it escaped and
    shortened (a path is shown in consoles and logs: it must not carry terminal control codes)."""
    if not isinstance(field_path, str):
        raise InvalidRequest(f"invalid field path {_show(field_path)}: expected a string of dotted names like "
                             "'a.b'", {"field_path": _show(field_path)})
    why = ""
    if not field_path or "" in field_path.split("."):
        why = "expected dotted names like 'a.b'"
    elif len(field_path) > MAX_FIELD_PATH:
        why = f"{len(field_path)} characters, more than {MAX_FIELD_PATH}"
    elif field_path.count(".") >= MAX_FIELD_DEPTH:
        why = f"more than {MAX_FIELD_DEPTH} levels"
    elif not field_path.isprintable():
        why = "control characters are not allowed in a field name"
    if why:
        safe = field_path.isprintable() and len(field_path) <= MAX_FIELD_PATH
        raise InvalidRequest(f"invalid field path {_show(field_path)}: {why}",
                             {"field_path": field_path if safe else _show(field_path)})
    return field_path


def patch_settings(current: Any, field_path: str, value: Any,
                   schema: SettingsSchemaMetadata | None = None) -> Any:
    """A new settings object equal to ``current`` with the field at ``field_path`` set to ``value``.

    Path segments are dataclass field names or mapping keys (no list indices).
    Raises InvalidRequest for an empty or malformed path, UnknownField when a
    segment names nothing, and InvalidValue when the value does not fit its field
    or the rebuilt dataclass rejects it in ``__post_init__``.
    """
    check_field_path(field_path)
    if schema is None and dataclasses.is_dataclass(current) and not isinstance(current, type):
        schema = build_schema(current)
    return _Patch(field_path, field_path.split("."), value, schema).apply(current, Any, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class _Patch:
    """One edit in progress: ``apply`` returns the patched copy of the node at ``segments[:depth]``."""

    path: str
    segments: list[str]
    value: Any
    schema: SettingsSchemaMetadata | None

    def apply(self, node: Any, hint: Any, depth: int) -> Any:
        segment = self.segments[depth]
        prefix = ".".join(self.segments[: depth + 1])
        last = depth == len(self.segments) - 1
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            fields = {f.name: f for f in dataclasses.fields(node)}
            if segment not in fields:
                raise self._unknown(prefix, f"{type(node).__name__} has no field {segment!r}")
            self._check_writable(prefix, fields[segment], last)
            child_hint = resolved_hints(type(node)).get(segment, Any)
            new_child = self._descend(getattr(node, segment), child_hint, depth, node)
            return self._replace(node, {segment: new_child})
        if isinstance(node, Mapping):
            key = self._key(node, segment, prefix)
            args = typing.get_args(hint)
            child_hint = args[1] if typing.get_origin(hint) in (dict, Mapping, MutableMapping) and len(args) == 2 \
                else Any
            new_child = self._descend(node[key], child_hint, depth, None)
            new_node = copy.copy(node) if isinstance(node, MutableMapping) else dict(node)
            new_node[key] = new_child
            return new_node
        if node is None or isinstance(node, (bool, int, float, str, bytes, list, tuple, set, frozenset)) \
                or segment.startswith("_") or not hasattr(node, segment) or callable(getattr(node, segment)):
            what = "None" if node is None else f"a {type(node).__name__}"
            raise self._unknown(prefix, f"{'.'.join(self.segments[:depth]) or 'the settings'} is {what} "
                                        f"with no field {segment!r}")
        child_hint = _object_hints(node).get(segment, Any)
        new_child = self._descend(getattr(node, segment), child_hint, depth, None)
        new_node = copy.deepcopy(node)
        try:
            setattr(new_node, segment, new_child)
        except (AttributeError, TypeError, ValueError) as exc:
            raise _invalid(self.path, f"a value {type(node).__name__} accepts", self.value, "rejected",
                           message=f"{self.path}: rejected by {type(node).__name__}: {exc}") from None
        return new_node

    def _descend(self, child: Any, child_hint: Any, depth: int, parent: Any) -> Any:
        if depth < len(self.segments) - 1:
            return self.apply(child, child_hint, depth + 1)
        field = self._leaf_field(child, child_hint, parent)
        plain = coerce_field(field, self.value, self.path)
        return self._rebuild(plain, child_hint, child, field, self.path)

    def _leaf_field(self, child: Any, child_hint: Any, parent: Any) -> SettingsFieldMetadata:
        found = self.schema.field(self.path) if self.schema is not None else None
        if found is None and parent is not None:
            found = build_schema(parent).field(self.segments[-1])
        if found is not None:
            return found
        if child_hint is Any and dataclasses.is_dataclass(child) and not isinstance(child, type):
            child_hint = type(child)
        return annotation_field(self.segments[-1], child_hint)

    def _rebuild(self, plain: Any, hint: Any, current: Any, field: SettingsFieldMetadata, path: str) -> Any:
        """The typed value for validated ``plain`` data: a nested dict is merged into ``current``."""
        if isinstance(plain, dict) and field.kind == "nested" and dataclasses.is_dataclass(current) \
                and not isinstance(current, type):
            hints = resolved_hints(type(current))
            subfields = {f.name: f for f in field.fields}
            changes = {k: self._rebuild(v, hints.get(k, Any), getattr(current, k), subfields[k], f"{path}.{k}")
                       for k, v in plain.items()}
            return self._replace(current, changes, path=path)
        if hint is Any:
            return plain
        try:
            return from_plain(hint, plain, path)
        except SettingsValidationError as exc:
            raise _invalid(path, _expected(field), plain, "type",
                           message=f"{path}: {exc.message.split(': ', 1)[-1]}") from None

    def _replace(self, node: Any, changes: dict[str, Any], *, path: str | None = None) -> Any:
        try:
            return dataclasses.replace(node, **changes)
        except (TypeError, ValueError) as exc:
            cls = type(node).__name__
            raise _invalid(path or self.path, f"a value {cls} accepts", self.value, "rejected",
                           message=f"{path or self.path}: rejected by {cls}: {exc}") from None

    def _key(self, node: Mapping[Any, Any], segment: str, prefix: str) -> Any:
        if segment in node:
            return segment
        for key in node:
            if str(key) == segment:
                return key
        raise self._unknown(prefix, f"no key {segment!r}")

    def _check_writable(self, prefix: str, field: dataclasses.Field[Any], last: bool) -> None:
        """Ancestors of the leaf must be writable too (the leaf is checked by coerce_field)."""
        if last:
            return
        schema_field = self.schema.field(prefix) if self.schema is not None else None
        if field.metadata.get("read_only") or not field.init or (schema_field is not None and schema_field.read_only):
            raise _invalid(self.path, "no change (the field is read-only)", self.value, "read_only",
                           message=f"{self.path}: {prefix} is read-only")

    def _unknown(self, prefix: str, why: str) -> UnknownField:
        return UnknownField(f"{self.path}: unknown field ({why})", {"field_path": self.path, "missing": prefix})


def _object_hints(node: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(type(node))
    except Exception:  # noqa: BLE001 - hints are optional for plain objects
        return {}
