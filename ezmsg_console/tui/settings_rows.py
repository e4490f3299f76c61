"""Pure view-model of the Settings tab: components, flattened fields, changes, parsing.

Nothing here imports Textual: the tab (:mod:`.settings`) and the editor
(:mod:`.editor`) turn these records into cells and widgets, and the tests
exercise them directly.

A component's settings value is a field dict; nested settings (and mappings)
are flattened into dotted paths (``a.b``), which is exactly what
:func:`ezmsg_console.settings.patch.patch_settings` accepts as a field path.
Local validation uses :func:`~ezmsg_console.settings.patch.coerce_field` with
the schema rebuilt by :func:`~ezmsg_console.settings.schema.schema_from_plain`,
so the editor refuses what the worker would refuse, with the same words.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Mapping

from ..protocol.errors import ConsoleError
from ..protocol.graph import ComponentMetadata, ComponentType, GraphSnapshot
from ..protocol.settings import SettingsChangedEvent, SettingsEventType, SettingsState
from ..settings.patch import coerce_field
from ..settings.schema import SettingsFieldMetadata, SettingsSchemaMetadata, schema_from_plain
from .format import fmt_value

MISSING = object()
"""Marks a path absent on one side of a diff."""


# --------------------------------------------------------------------------- components


@dataclasses.dataclass(frozen=True)
class ComponentInfo:
    """One component with settings, as the left list shows it."""

    address: str
    kind: str  # "unit", "collection" or "?" (no metadata seen)
    dynamic: bool  # its metadata declares dynamic settings (an INPUT_SETTINGS stream)
    fields: int
    seq: int
    process: str  # "pid 1234" of the owning process, or ""


def component_metadata(snapshot: GraphSnapshot | None) -> dict[str, ComponentMetadata]:
    """Every component any session declared, by address."""
    found: dict[str, ComponentMetadata] = {}
    for session in snapshot.sessions if snapshot else ():
        for comp in session.metadata.components if session.metadata else ():
            found[comp.address] = comp
    return found


def process_labels(snapshot: GraphSnapshot | None) -> tuple[dict[str, str], dict[str, str]]:
    """(process id -> "pid N", unit address -> "pid N") from a snapshot."""
    by_id: dict[str, str] = {}
    by_unit: dict[str, str] = {}
    for proc in snapshot.processes if snapshot else ():
        label = f"pid {proc.pid}" if proc.pid else proc.process_id[:8]
        by_id[proc.process_id] = label
        for unit in proc.units:
            by_unit[unit] = label
    return by_id, by_unit


def has_settings(state: SettingsState) -> bool:
    """Whether a component has anything to show (a collection without settings has value None)."""
    return state.value.structured_value is not None or bool(state.value.settings_schema)


def components(settings: Mapping[str, SettingsState], snapshot: GraphSnapshot | None) -> list[ComponentInfo]:
    """The components that have settings, sorted by address."""
    meta = component_metadata(snapshot)
    _by_id, by_unit = process_labels(snapshot)
    rows = []
    for address in sorted(settings):
        state = settings[address]
        if not has_settings(state):
            continue
        comp = meta.get(address)
        kind = "?" if comp is None else ("collection" if comp.component_type is ComponentType.COLLECTION else "unit")
        rows.append(ComponentInfo(address, kind, bool(comp and comp.dynamic_settings),
                                  len(flatten_fields(state.value.structured_value, None)), state.seq,
                                  by_unit.get(address, "")))
    return rows


def edit_refusal(info: ComponentInfo | None, field: FieldRow | None, *, read_only_console: bool,
                 connected: bool) -> str | None:
    """Why the selected field cannot be edited now (None: it can)."""
    if read_only_console:
        return "read-only console: editing is disabled"
    if info is None:
        return "no component selected"
    if not info.dynamic:
        return f"{info.address} has no dynamic settings (no INPUT_SETTINGS stream): its settings are read-only"
    if field is None:
        return "no field selected"
    if field.read_only:
        return f"{field.path} is read-only (fixed for the run)"
    if not connected:
        return "not connected to the GraphServer"
    return None


# --------------------------------------------------------------------------- fields


@dataclasses.dataclass(frozen=True)
class FieldRow:
    """One leaf of a settings value: its dotted path, value and schema (None: not in the schema)."""

    path: str
    value: Any
    field: SettingsFieldMetadata | None
    read_only: bool  # the field or one of its ancestors is read-only


def parse_schema(plain: Any) -> SettingsSchemaMetadata | None:
    """The schema from its plain form, or None when absent or malformed."""
    if not plain:
        return None
    try:
        return schema_from_plain(plain)
    except ConsoleError:
        return None


def flatten_fields(value: Any, schema: SettingsSchemaMetadata | None) -> list[FieldRow]:
    """The leaves of a settings value in schema order; nested dicts become dotted paths."""
    rows: list[FieldRow] = []

    def walk(prefix: str, node: Mapping[str, Any], fields: dict[str, SettingsFieldMetadata] | None,
             parent_ro: bool) -> None:
        keys = list(node)
        if fields:  # schema order first, then anything the schema does not name
            keys = [k for k in fields if k in node] + [k for k in node if k not in fields]
        for key in keys:
            child = node[key]
            field = fields.get(key) if fields else None
            path = f"{prefix}.{key}" if prefix else str(key)
            read_only = parent_ro or bool(field and field.read_only)
            if isinstance(child, Mapping) and child and (field is None or field.kind in ("nested", "any")):
                sub = {f.name: f for f in field.fields} if field is not None and field.fields else None
                walk(path, child, sub, read_only)
            else:
                rows.append(FieldRow(path, child, field, read_only))

    if isinstance(value, Mapping):
        walk("", value, {f.name: f for f in schema.fields} if schema else None, False)
    elif value is not None:
        rows.append(FieldRow("(value)", value, None, True))
    return rows


def flatten_value(value: Any) -> dict[str, Any]:
    """``{dotted path: leaf value}`` of a settings value (schema-free)."""
    return {row.path: row.value for row in flatten_fields(value, None)}


def leaf_field(row: FieldRow) -> SettingsFieldMetadata:
    """The schema of a row's field; a permissive stand-in when the schema does not name it
    (e.g. an entry of a mapping field), typed by the current value."""
    if row.field is not None:
        return row.field
    value = row.value
    kind = "bool" if isinstance(value, bool) else "str" if isinstance(value, str) else \
        "list" if isinstance(value, (list, tuple)) else "any"
    return SettingsFieldMetadata(name=row.path.rsplit(".", 1)[-1], field_type=type(value).__name__, kind=kind,
                                 required=False, default=None, read_only=row.read_only, optional=value is None)


def editor_kind(field: SettingsFieldMetadata, value: Any) -> str:
    """Which editor fits: "choice", "bool", "int", "float", "list", "str" or "json"."""
    if field.choices is not None:
        return "choice"
    if field.kind in ("bool", "int", "float", "list", "str"):
        return field.kind
    if field.kind == "any" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return "float"
    return "json"


def type_text(field: SettingsFieldMetadata | None) -> str:
    """``float``, ``enum``, ``list[int]``, ... (``?`` when None is allowed)."""
    if field is None:
        return "?"
    text = {"enum": "enum", "choices": "choice", "nested": "nested"}.get(field.kind, field.kind)
    if field.kind == "list" and field.item_kind:
        text = f"list[{field.item_kind}]"
    return text + ("?" if field.optional else "")


def limits_text(field: SettingsFieldMetadata | None) -> str:
    """Bounds ``[0.5, 200]`` (``(`` for exclusive) or choices ``1|2|4``, then the unit."""
    if field is None:
        return ""
    parts = []
    if field.choices is not None:
        parts.append("|".join(str(c) for c in field.choices))
    elif field.bounds is not None:
        (lower, upper), (lower_in, upper_in) = field.bounds, field.bounds_inclusive
        if lower is not None and upper is not None:
            parts.append(f"{'[' if lower_in else '('}{_num(lower)}, {_num(upper)}{']' if upper_in else ')'}")
        elif lower is not None:
            parts.append(f"{'≥' if lower_in else '>'}{_num(lower)}")
        else:
            parts.append(f"{'≤' if upper_in else '<'}{_num(upper)}")
    if field.unit:
        parts.append(field.unit)
    return " ".join(parts)


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def value_text(value: Any, field: SettingsFieldMetadata | None, limit: int = 40) -> str:
    """A value on one line, with the field's unit."""
    text = "None" if value is None else fmt_value(value, limit)
    if isinstance(value, str):  # enum and choice values read better without quotes
        text = value if len(value) <= limit else value[: limit - 1] + "…"
    return f"{text} {field.unit}" if field is not None and field.unit and value is not None else text


# --------------------------------------------------------------------------- history


@dataclasses.dataclass(frozen=True)
class Change:
    """When a field (or a whole component, ``changes`` listing what moved) last changed."""

    seq: int
    event_type: str  # "initial" or "update"
    source: str
    timestamp: float
    changes: tuple[tuple[str, Any, Any], ...] = ()  # (path, before, after)


def source_label(event: SettingsChangedEvent, processes: Mapping[str, str], mine: Iterable[int] = ()) -> str:
    """Who made an event: "initial", "you" (this console's edit), "pid N" of the applying process."""
    if event.seq in set(mine):
        return "you"
    if event.event_type is SettingsEventType.INITIAL_SETTINGS:
        return "initial"
    if event.source_process_id:
        return processes.get(event.source_process_id, event.source_process_id[:8])
    return (event.source_session_id or "?")[:8]


def diff_values(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """``(path, before, after)`` for every leaf that differs (MISSING where a side lacks it)."""
    old, new = flatten_value(before), flatten_value(after)
    paths = list(old) + [p for p in new if p not in old]
    return [(p, old.get(p, MISSING), new.get(p, MISSING)) for p in paths
            if not same_value(old.get(p, MISSING), new.get(p, MISSING))]


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type (1 is not 1.0 or True); NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def history(events: Iterable[SettingsChangedEvent], processes: Mapping[str, str],
            mine: Iterable[int] = ()) -> list[Change]:
    """A component's events oldest first, each with what it changed from the one before."""
    mine = set(mine)
    changes: list[Change] = []
    previous: Any = MISSING
    for event in sorted(events, key=lambda e: e.seq):
        value = event.value.structured_value
        initial = event.event_type is SettingsEventType.INITIAL_SETTINGS
        diff = () if previous is MISSING or initial else tuple(diff_values(previous, value))
        changes.append(Change(event.seq, "initial" if initial else "update", source_label(event, processes, mine),
                              event.timestamp, diff))
        previous = value
    return changes


def last_changes(changes: Iterable[Change]) -> dict[str, Change]:
    """Field path -> the change that last set it; ``"*"`` is the initial event (for untouched fields).

    ``changes`` oldest first, as :func:`history` returns them; an initial event
    (the unit started again) starts over.
    """
    result: dict[str, Change] = {}
    for change in changes:
        if change.event_type == "initial":
            result = {"*": change}
        for path, _old, _new in change.changes:
            result[path] = change
    return result


def last_change(table: Mapping[str, Change], path: str) -> Change | None:
    """The change that last set ``path`` (or an ancestor of it), else the initial event."""
    probe = path
    while probe:
        if probe in table:
            return table[probe]
        probe = probe.rpartition(".")[0]
    return table.get("*")


def changes_text(changes: Iterable[tuple[str, Any, Any]]) -> str:
    """``a: 1→2, b.c: x→y`` (``-`` for none)."""
    parts = [f"{p}: {_short(a)}→{_short(b)}" for p, a, b in changes]
    return ", ".join(parts) if parts else "-"


def _short(value: Any, limit: int = 20) -> str:
    return "∅" if value is MISSING else ("None" if value is None else
                                        value if isinstance(value, str) else fmt_value(value, limit))


# --------------------------------------------------------------------------- editing


def edit_text(value: Any) -> str:
    """A value as the text an editor starts with."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_text(field: SettingsFieldMetadata, text: str, kind: str) -> Any:
    """The typed value for editor ``text`` (``kind`` from :func:`editor_kind`).

    Raises ValueError with the reason when the text is not a value of that kind.
    Range and choice checks are left to :func:`check_value`.
    """
    stripped = text.strip()
    if kind != "str" and not stripped and field.optional:
        return None
    if kind in ("int", "float"):
        try:
            return (int if kind == "int" else float)(stripped.replace("_", ""))
        except ValueError:
            raise ValueError(_number_refusal(stripped, kind, field.optional)) from None
    if kind == "bool":
        if stripped.lower() not in _TRUE | _FALSE:
            raise ValueError(f"not a bool (true/false): {stripped!r}")
        return stripped.lower() in _TRUE
    if kind == "str":
        return text
    if kind == "list":
        return _parse_list(stripped, field.item_kind)
    if kind == "choice" and field.choices is not None:
        found = [c for c in field.choices if str(c) == stripped]
        if not found:
            raise ValueError(f"not one of {'|'.join(str(c) for c in field.choices)}: {stripped!r}")
        return found[0]
    return _json_or_text(stripped)


def _number_refusal(text: str, kind: str, optional: bool) -> str:
    """Why ``text`` is not a number of ``kind``, saying what would be (the text is kept as typed)."""
    what = "an integer" if kind == "int" else "a number"
    hint = ""
    if "," in text and kind == "float":
        hint = f" (use a dot for decimals: {text.replace(',', '.')!r})"
    elif kind == "int":
        try:
            as_float = float(text.replace("_", ""))
        except ValueError:
            pass
        else:
            hint = f" (whole numbers only{': ' + str(int(as_float)) + '?' if as_float.is_integer() else ''})"
    if not text:
        hint = " (empty: type a value)"
    elif optional:
        hint += " (leave it empty for None)"
    return f"not {what}: {text!r}{hint}"


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parse_list(text: str, item_kind: str | None) -> list[Any]:
    """A JSON list (``[1, 2]``), or items separated by commas parsed by ``item_kind``."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a JSON list: {exc}") from None
        if not isinstance(value, list):
            raise ValueError("not a JSON list")
        return value
    items = [part.strip() for part in text.split(",")] if text else []
    if item_kind in ("int", "float", "bool"):
        stand_in = SettingsFieldMetadata(name="item", field_type=item_kind, kind=item_kind, required=True,
                                         default=None)
        return [parse_text(stand_in, item, item_kind) for item in items]
    return items if item_kind == "str" else [_json_or_text(item) for item in items]


def check_value(field: SettingsFieldMetadata, value: Any, path: str) -> tuple[Any, str | None]:
    """``(coerced value, None)`` if the worker would accept ``value``, else ``(value, reason)``."""
    try:
        return coerce_field(field, value, path), None
    except ConsoleError as exc:
        return value, exc.message
    except (TypeError, ValueError, OverflowError) as exc:  # a value the rules did not foresee: refuse it
        return value, f"{path}: {exc}"


def check_text(field: SettingsFieldMetadata, text: str, kind: str, path: str) -> tuple[Any, str | None]:
    """Parse and check editor text: ``(value, None)`` or ``(None, reason)``."""
    try:
        value = parse_text(field, text, kind)
    except ValueError as exc:
        return None, str(exc)
    return check_value(field, value, path)


def short_error(exc: BaseException | str) -> str:
    """A refusal without the routing boilerplate: ``INVALID_VALUE: cutoff_hz: expected ...``."""
    message = exc if isinstance(exc, str) else exc.message if isinstance(exc, ConsoleError) else \
        (str(exc) or type(exc).__name__)
    prefix = "Process request failed ("
    if message.startswith(prefix) and "): " in message:
        code, _, rest = message[len(prefix):].partition("): ")
        return f"{code}: {rest}"
    return message
