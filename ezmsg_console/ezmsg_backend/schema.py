"""Upstream ezmsg settings schemas as this project's :class:`SettingsSchemaMetadata`.

Upstream describes each field with a ``field_type`` *text* (``"builtins.float"``,
``"typing.Optional[int]"``, ``"Literal['sine', 'square']"`` when the module uses
``from __future__ import annotations``, ``"mymod.Window"``), bounds (``ge``/``le``
only), choices and a widget hint, and nothing about nested settings. Here the
text is parsed (never evaluated) into a ``kind``; Literal choices are read from
the text when upstream could not resolve them; a nested settings dataclass gets
sub-fields inferred from its current value. A field whose values the console
cannot check (an Enum without choices, an arbitrary class) is read-only: upstream
would store whatever is sent, unconverted, in the running unit.

Pure functions of duck-typed upstream objects: nothing here imports ezmsg.
"""

from __future__ import annotations

import ast
from typing import Any

from ..settings.schema import SettingsFieldMetadata, SettingsSchemaMetadata, schema_to_plain

_SCALARS = {"bool": "bool", "int": "int", "float": "float", "str": "str"}
_LISTS = {"list", "List", "tuple", "Tuple", "Sequence", "MutableSequence", "set", "Set", "frozenset", "FrozenSet"}
_HINTS = {"bool": "checkbox", "int": "int_input", "float": "float_input", "str": "text_input", "list": "list"}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    return ""


def _members(node: ast.AST) -> list[ast.AST]:
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def parse_type(text: str) -> tuple[str, bool, tuple[Any, ...] | None, str | None]:
    """``(kind, optional, choices, item_kind)`` of an upstream ``field_type`` text.

    Kinds are this project's (bool, int, float, str, choices, list, any); a class
    name that is none of these is ``"class"`` (nested settings or an Enum)."""
    text = text.strip()
    if text.startswith("<class '") and text.endswith("'>"):
        text = text[8:-2]
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        return "any", False, None, None
    return _kind(tree)


def _kind(node: ast.AST) -> tuple[str, bool, tuple[Any, ...] | None, str | None]:
    optional = False
    members = _union(node)
    if members is not None:
        rest = [n for n in members if _name(n) not in ("None", "NoneType")]
        optional = len(rest) < len(members)
        if len(rest) != 1:
            return "any", optional, None, None
        node = rest[0]
    if isinstance(node, ast.Subscript):
        base = _name(node.value)
        if base == "Literal":
            try:
                choices = tuple(ast.literal_eval(n) for n in _members(node.slice))
            except ValueError:
                return "any", optional, None, None
            return "choices", optional, choices, None
        if base in _LISTS:
            items = [n for n in _members(node.slice) if not (isinstance(n, ast.Constant) and n.value is Ellipsis)]
            item_kinds = {_SCALARS.get(_name(n)) for n in items}
            return "list", optional, None, item_kinds.pop() if len(item_kinds) == 1 else None
        return "any", optional, None, None
    name = _name(node)
    if name in _SCALARS:
        return _SCALARS[name], optional, None, None
    if name in _LISTS:
        return "list", optional, None, None
    if name in ("Any", "object", ""):
        return "any", optional, None, None
    return "class", optional, None, None


def _union(node: ast.AST) -> list[ast.AST] | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return [*(_union(node.left) or [node.left]), *(_union(node.right) or [node.right])]
    if isinstance(node, ast.Subscript) and _name(node.value) == "Optional":
        return [node.slice, ast.Constant(None)]
    if isinstance(node, ast.Subscript) and _name(node.value) == "Union":
        return _members(node.slice)
    return None


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    for tp, kind in ((int, "int"), (float, "float"), (str, "str")):
        if isinstance(value, tp):
            return kind
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "nested"
    return "any"


def _inferred(name: str, value: Any, path: str) -> SettingsFieldMetadata:
    """A sub-field of nested settings, known only from its current value."""
    kind = _value_kind(value)
    note = "type inferred from the current value (ezmsg describes top-level fields only)"
    if kind == "nested":
        return SettingsFieldMetadata(name, "dict", "nested", False, None, note,
                                     fields=tuple(_inferred(k, v, f"{path}.{k}") for k, v in value.items()))
    if kind == "list":
        items = {_value_kind(v) for v in value}
        item = items.pop() if len(items) == 1 and not items & {"nested", "list", "any"} else None
        return SettingsFieldMetadata(name, "list", "list", False, None, note, item_kind=item, widget_hint="list")
    if kind == "any" and value is not None:
        return SettingsFieldMetadata(name, type(value).__name__, "any", False, None,
                                     "the console cannot check this value's type", read_only=True)
    if value is None:  # nothing to infer from
        return SettingsFieldMetadata(name, "None", "any", False, None,
                                     "the console cannot tell this field's type", read_only=True)
    return SettingsFieldMetadata(name, kind, kind, False, None, note, widget_hint=_HINTS.get(kind))


def translate_field(field: Any, value: Any) -> SettingsFieldMetadata:
    """One upstream ``SettingsFieldMetadata`` (``value``: the field's current plain value)."""
    field_type = str(getattr(field, "field_type", "") or "")
    kind, optional, choices, item_kind = parse_type(field_type)
    upstream_choices = getattr(field, "choices", None)
    if upstream_choices:
        choices = tuple(upstream_choices)
        kind = "choices" if kind in ("class", "any", "choices") else kind
    description = getattr(field, "description", None) or ""
    bounds = getattr(field, "bounds", None)
    bounds = None if bounds is None else (bounds[0], bounds[1])
    common: dict[str, Any] = dict(
        name=str(field.name), field_type=field_type, required=bool(getattr(field, "required", False)),
        default=getattr(field, "default", None), bounds=bounds, choices=choices, optional=optional)
    if kind == "class":
        if isinstance(value, dict) and choices is None:
            return SettingsFieldMetadata(
                kind="nested", description=description,
                fields=tuple(_inferred(k, v, f"{field.name}.{k}") for k, v in value.items()), **common)
        why = "the console cannot check values of this type (ezmsg would store them unconverted)"
        return SettingsFieldMetadata(kind="any", read_only=True,
                                     description=f"{description}; {why}" if description else why, **common)
    if kind == "any" and choices is None:
        return SettingsFieldMetadata(kind="any", read_only=True, description=description or
                                     "the console cannot check values of this type", **common)
    hint = getattr(field, "widget_hint", None) or ("select" if choices else _HINTS.get(kind))
    return SettingsFieldMetadata(kind=kind, description=description, item_kind=item_kind, widget_hint=hint, **common)


def translate_schema(schema: Any, structured_value: Any) -> SettingsSchemaMetadata | None:
    """An upstream ``SettingsSchemaMetadata`` (or None) as ours, using the current value for nesting."""
    if schema is None:
        return None
    values = structured_value if isinstance(structured_value, dict) else {}
    return SettingsSchemaMetadata(
        provider=f"ezmsg:{getattr(schema, 'provider', '')}", settings_type=str(getattr(schema, "settings_type", "")),
        fields=tuple(translate_field(f, values.get(f.name)) for f in getattr(schema, "fields", ()) or ()))


def plain_schema(schema: Any, structured_value: Any) -> dict[str, Any] | None:
    translated = translate_schema(schema, structured_value)
    return None if translated is None else schema_to_plain(translated)
