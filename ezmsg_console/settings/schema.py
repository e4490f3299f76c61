"""Settings schema: what a console needs to show and edit a unit's settings.

:func:`build_schema` reads a settings dataclass (an instance or the class):
each field's resolved type hint gives its ``kind`` (bool, int, float, str,
enum, choices, list, nested, any), and the metadata written by
:func:`ezmsg_console.runtime.settings.setting` gives description, bounds,
choices, unit and read-only. The result is frozen data, and
:func:`schema_to_plain` / :func:`schema_from_plain` carry it across the wire
as plain (msgpack-safe) data.

Widget hints follow the reference rule order on the lowercased ``field_type``
text (choices, "bool", bounds with "int"/"float", "int", "float", "str"),
except that list fields are always ``"list"`` and nested settings have no hint
(they have ``fields`` instead).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from ..protocol.errors import InvalidRequest

KINDS = ("bool", "int", "float", "str", "enum", "choices", "list", "nested", "any")
"""Every value ``SettingsFieldMetadata.kind`` can take."""

_SCALAR_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsFieldMetadata:
    """One settings field: its type, default, constraints and how to edit it.

    ``default`` and ``choices`` are plain data. ``bounds`` is ``(lower, upper)``
    with either side None; ``bounds_inclusive`` says whether each side admits
    the limit itself (``ge``/``le``) or not (``gt``/``lt``). ``fields`` lists
    the sub-fields of a nested settings dataclass.
    """

    name: str
    field_type: str
    kind: str
    required: bool
    default: Any
    description: str = ""
    bounds: tuple[float | None, float | None] | None = None
    bounds_inclusive: tuple[bool, bool] = (True, True)
    choices: tuple[Any, ...] | None = None
    unit: str | None = None
    read_only: bool = False
    optional: bool = False
    item_kind: str | None = None
    widget_hint: str | None = None
    fields: tuple[SettingsFieldMetadata, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsSchemaMetadata:
    """The schema of one settings type (``provider`` is how it was read)."""

    provider: str
    settings_type: str
    fields: tuple[SettingsFieldMetadata, ...]

    def field(self, path: str) -> SettingsFieldMetadata | None:
        """The field at a dotted ``path`` through nested settings, or None."""
        fields = self.fields
        found: SettingsFieldMetadata | None = None
        for segment in path.split("."):
            found = next((f for f in fields if f.name == segment), None)
            if found is None:
                return None
            fields = found.fields
        return found


# --------------------------------------------------------------------------- building


def build_schema(settings: Any) -> SettingsSchemaMetadata:
    """The schema of a settings dataclass, given an instance or the class itself.

    Raises TypeError for anything that is not a dataclass.
    """
    cls = settings if isinstance(settings, type) else type(settings)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"build_schema needs a dataclass instance or class, got {cls.__name__}")
    return SettingsSchemaMetadata(provider="dataclass", settings_type=type_name(cls),
                                  fields=_dataclass_fields(cls, (cls,)))


def type_name(cls: type) -> str:
    """``module.QualName`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def resolved_hints(cls: type) -> dict[str, Any]:
    """A dataclass's field annotations with postponed (string) annotations resolved.

    Falls back to the raw annotations when they cannot be resolved (e.g. a name
    that only existed in a function's local scope).
    """
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable forward references: keep the text
        return {f.name: f.type for f in dataclasses.fields(cls)}


def annotation_field(name: str, annotation: Any) -> SettingsFieldMetadata:
    """A field schema from a bare annotation (no default, no metadata).

    Used for values that have a type but no dataclass field of their own, such
    as the entries of a ``dict[str, float]``.
    """
    return _build_field(name, annotation, {}, dataclasses.MISSING, dataclasses.MISSING, (), init=True)


def _dataclass_fields(cls: type, seen: tuple[type, ...]) -> tuple[SettingsFieldMetadata, ...]:
    hints = resolved_hints(cls)
    return tuple(
        _build_field(f.name, hints.get(f.name, f.type), f.metadata, f.default, f.default_factory, seen,
                     init=f.init)
        for f in dataclasses.fields(cls)
    )


def _build_field(name: str, annotation: Any, metadata: Mapping[str, Any], default: Any, factory: Any,
                 seen: tuple[type, ...], *, init: bool) -> SettingsFieldMetadata:
    inner, optional = _strip_optional(annotation)
    kind, item_kind = _kind_of(inner)
    field_type = _type_text(annotation)
    choices = _choices(metadata, inner)
    bounds, inclusive = _bounds(metadata)
    fields: tuple[SettingsFieldMetadata, ...] = ()
    if kind == "nested" and inner not in seen:  # a self-referencing type stops here
        fields = _dataclass_fields(inner, (*seen, inner))
    unit = metadata.get("unit")
    return SettingsFieldMetadata(
        name=name,
        field_type=field_type,
        kind=kind,
        required=default is dataclasses.MISSING and factory is dataclasses.MISSING and init,
        default=_default(default, factory),
        description=str(metadata.get("description") or ""),
        bounds=bounds,
        bounds_inclusive=inclusive,
        choices=choices,
        unit=str(unit) if unit else None,
        read_only=bool(metadata.get("read_only", False)) or not init,
        optional=optional,
        item_kind=item_kind,
        widget_hint=_widget_hint(field_type, kind, choices, bounds),
        fields=fields,
    )


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if annotation is Any or annotation is object:
        return annotation, True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = tuple(a for a in args if a is not type(None))
        optional = len(rest) < len(args)
        if len(rest) == 1:
            return rest[0], optional
        return typing.Union[rest] if rest else Any, optional  # noqa: UP007
    if origin is typing.Literal and None in typing.get_args(annotation):
        return annotation, True
    return annotation, annotation is type(None)


def _kind_of(tp: Any) -> tuple[str, str | None]:
    """(kind, item kind) of an annotation already stripped of Optional."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "choices", None
    if origin is not None:
        if isinstance(origin, type) and issubclass(origin, (list, tuple, set, frozenset, Sequence)) \
                and not issubclass(origin, (str, bytes)):
            return "list", _item_kind(typing.get_args(tp))
        return "any", None
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return "enum", None
        if dataclasses.is_dataclass(tp):
            return "nested", None
        if tp in _SCALAR_KINDS:
            return _SCALAR_KINDS[tp], None
        if tp in (list, tuple, set, frozenset):
            return "list", None
    return "any", None


def _item_kind(args: tuple[Any, ...]) -> str | None:
    items = [a for a in args if a is not Ellipsis]
    kinds = {_SCALAR_KINDS.get(a) if isinstance(a, type) else None for a in items}
    if len(kinds) == 1:
        return kinds.pop()
    return None


def _type_text(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type) and typing.get_origin(annotation) is None \
            and not isinstance(annotation, types.GenericAlias):
        return type_name(annotation)
    return str(annotation)


def _choices(metadata: Mapping[str, Any], inner: Any) -> tuple[Any, ...] | None:
    if metadata.get("choices") is not None:
        return tuple(sanitize(c) for c in metadata["choices"])
    if typing.get_origin(inner) is typing.Literal:
        return tuple(sanitize(a) for a in typing.get_args(inner) if a is not None)
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        return tuple(sanitize(m.value) for m in inner)
    return None


def _bounds(metadata: Mapping[str, Any]) -> tuple[tuple[float | None, float | None] | None, tuple[bool, bool]]:
    """Bounds from ge (else min) / gt and le (else max) / lt; the stricter limit wins."""
    lower, lower_incl = _pick(metadata, ("ge", "min"), "gt", max)
    upper, upper_incl = _pick(metadata, ("le", "max"), "lt", min)
    if lower is None and upper is None:
        return None, (True, True)
    return (lower, upper), (lower_incl, upper_incl)


def _pick(metadata: Mapping[str, Any], inclusive_keys: tuple[str, str], exclusive_key: str,
          stricter: Any) -> tuple[float | None, bool]:
    inclusive = next((metadata[k] for k in inclusive_keys if _is_number(metadata.get(k))), None)
    exclusive = metadata.get(exclusive_key) if _is_number(metadata.get(exclusive_key)) else None
    if exclusive is None:
        return (None if inclusive is None else float(inclusive)), True
    if inclusive is None or stricter(float(inclusive), float(exclusive)) == float(exclusive):
        return float(exclusive), False
    return float(inclusive), True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))


def _widget_hint(field_type: str, kind: str, choices: tuple[Any, ...] | None,
                 bounds: tuple[float | None, float | None] | None) -> str | None:
    text = field_type.lower()
    if choices is not None:
        return "select"
    if kind == "nested":
        return None
    if kind == "list":
        return "list"
    if "bool" in text:
        return "checkbox"
    if bounds is not None and ("int" in text or "float" in text):
        return "slider"
    for needle, hint in (("int", "int_input"), ("float", "float_input"), ("str", "text_input")):
        if needle in text:
            return hint
    return None


def _default(default: Any, factory: Any) -> Any:
    if default is not dataclasses.MISSING:
        return sanitize(default)
    if factory is not dataclasses.MISSING:
        try:
            return sanitize(factory())
        except Exception:  # noqa: BLE001 - a raising factory is reported, not propagated
            return "<factory>"
    return None


def sanitize(value: Any) -> Any:
    """Plain data for a default or choice: scalars pass, Enum -> value, Mapping -> dict
    with str keys, list/tuple/set -> list, dataclass -> field dict, anything else -> repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return sanitize(value.value)
    if isinstance(value, Mapping):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [sanitize(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: sanitize(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)


# --------------------------------------------------------------------------- plain data


def schema_to_plain(schema: SettingsSchemaMetadata) -> dict[str, Any]:
    """The schema as plain, msgpack-safe data (tuples become lists)."""
    return {"provider": schema.provider, "settings_type": schema.settings_type,
            "fields": [_field_to_plain(f) for f in schema.fields]}


def _field_to_plain(field: SettingsFieldMetadata) -> dict[str, Any]:
    plain = {f.name: getattr(field, f.name) for f in dataclasses.fields(field)}
    plain["bounds"] = None if field.bounds is None else list(field.bounds)
    plain["bounds_inclusive"] = list(field.bounds_inclusive)
    plain["choices"] = None if field.choices is None else list(field.choices)
    plain["fields"] = [_field_to_plain(f) for f in field.fields]
    return plain


def schema_from_plain(data: Any) -> SettingsSchemaMetadata:
    """Rebuild a schema from :func:`schema_to_plain` data.

    Raises InvalidRequest naming the bad part when ``data`` is malformed.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequest("settings schema must be a mapping", {"got": type(data).__name__})
    provider = _get(data, "provider", str, "schema")
    settings_type = _get(data, "settings_type", str, "schema")
    return SettingsSchemaMetadata(provider=provider, settings_type=settings_type,
                                  fields=_fields_from_plain(data.get("fields", []), "fields"))


def _fields_from_plain(data: Any, where: str) -> tuple[SettingsFieldMetadata, ...]:
    if not isinstance(data, (list, tuple)):
        raise InvalidRequest(f"settings schema: {where} must be a list", {"where": where})
    return tuple(_field_from_plain(item, f"{where}[{i}]") for i, item in enumerate(data))


def _field_from_plain(data: Any, where: str) -> SettingsFieldMetadata:
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"settings schema: {where} must be a mapping", {"where": where})
    kind = _get(data, "kind", str, where)
    if kind not in KINDS:
        raise InvalidRequest(f"settings schema: {where}.kind {kind!r} is not one of {list(KINDS)}",
                             {"where": where})
    bounds = data.get("bounds")
    if bounds is not None:
        if not (isinstance(bounds, (list, tuple)) and len(bounds) == 2
                and all(b is None or _is_number(b) for b in bounds)):
            raise InvalidRequest(f"settings schema: {where}.bounds must be [lower|None, upper|None]",
                                 {"where": where})
        bounds = tuple(None if b is None else float(b) for b in bounds)
    inclusive = data.get("bounds_inclusive", [True, True])
    if not (isinstance(inclusive, (list, tuple)) and len(inclusive) == 2
            and all(isinstance(b, bool) for b in inclusive)):
        raise InvalidRequest(f"settings schema: {where}.bounds_inclusive must be two bools", {"where": where})
    choices = data.get("choices")
    if choices is not None and not isinstance(choices, (list, tuple)):
        raise InvalidRequest(f"settings schema: {where}.choices must be a list", {"where": where})
    return SettingsFieldMetadata(
        name=_get(data, "name", str, where),
        field_type=_get(data, "field_type", str, where),
        kind=kind,
        required=_get(data, "required", bool, where),
        default=data.get("default"),
        description=_get(data, "description", str, where, ""),
        bounds=bounds,
        bounds_inclusive=(inclusive[0], inclusive[1]),
        choices=None if choices is None else tuple(choices),
        unit=_get(data, "unit", (str, type(None)), where, None),
        read_only=_get(data, "read_only", bool, where, False),
        optional=_get(data, "optional", bool, where, False),
        item_kind=_get(data, "item_kind", (str, type(None)), where, None),
        widget_hint=_get(data, "widget_hint", (str, type(None)), where, None),
        fields=_fields_from_plain(data.get("fields", []), f"{where}.fields"),
    )


def _get(data: Mapping[str, Any], key: str, types_: Any, where: str,
         fallback: Any = dataclasses.MISSING) -> Any:
    if key not in data:
        if fallback is dataclasses.MISSING:
            raise InvalidRequest(f"settings schema: {where} has no {key!r}", {"where": where, "key": key})
        return fallback
    value = data[key]
    if not isinstance(value, types_):
        raise InvalidRequest(f"settings schema: {where}.{key} has the wrong type ({type(value).__name__})",
                             {"where": where, "key": key})
    return value
