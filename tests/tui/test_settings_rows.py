"""The Settings tab's pure view-model (no Textual, no server)."""

from __future__ import annotations

import dataclasses
import enum

import pytest

from ezmsg_console.protocol.errors import Conflict
from ezmsg_console.protocol.graph import (ComponentMetadata, ComponentType, GraphMetadata, GraphSnapshot, ProcessInfo,
                                          SessionInfo)
from ezmsg_console.protocol.settings import (SettingsChangedEvent, SettingsEventType, SettingsSnapshotValue,
                                             SettingsState)
from ezmsg_console.runtime.settings import Settings, setting
from ezmsg_console.settings.schema import build_schema, schema_to_plain
from ezmsg_console.tui import settings_rows as sr


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclasses.dataclass(frozen=True)
class Inner:
    gain: float = setting(1.0, ge=0.0, le=10.0, unit="dB", description="Gain")
    label: str = "x"


class Outer(Settings):
    cutoff_hz: float = setting(30.0, ge=0.5, le=200.0, unit="Hz", description="Corner")
    order: int = setting(4, choices=(1, 2, 4))
    mode: Mode = setting(Mode.FAST, choices=tuple(Mode))
    enabled: bool = True
    taps: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    inner: Inner = dataclasses.field(default_factory=Inner)
    rate: float = setting(1000.0, read_only=True)
    maybe: int | None = None


PLAIN_SCHEMA = schema_to_plain(build_schema(Outer))
VALUE = {"cutoff_hz": 30.0, "order": 4, "mode": "fast", "enabled": True, "taps": [1, 2],
         "inner": {"gain": 1.0, "label": "x"}, "rate": 1000.0, "maybe": None}


def _schema() -> sr.SettingsSchemaMetadata:
    schema = sr.parse_schema(PLAIN_SCHEMA)
    assert schema is not None
    return schema


def _rows() -> dict[str, sr.FieldRow]:
    return {r.path: r for r in sr.flatten_fields(VALUE, _schema())}


def _event(seq: int, value: object, initial: bool = False, process: str | None = "p1") -> SettingsChangedEvent:
    return SettingsChangedEvent(seq=seq, event_type=SettingsEventType.INITIAL_SETTINGS if initial
                                else SettingsEventType.SETTINGS_UPDATED, component_address="A/B",
                                timestamp=1000.0 + seq, value=SettingsSnapshotValue(value, value),
                                source_session_id="s1", source_process_id=None if initial else process)


def test_flatten_gives_dotted_paths_in_schema_order_with_inherited_read_only() -> None:
    rows = sr.flatten_fields(VALUE, _schema())
    assert [r.path for r in rows] == ["cutoff_hz", "order", "mode", "enabled", "taps", "inner.gain", "inner.label",
                                      "rate", "maybe"]
    by_path = {r.path: r for r in rows}
    assert by_path["inner.gain"].field is not None and by_path["inner.gain"].field.unit == "dB"
    assert by_path["rate"].read_only and not by_path["cutoff_hz"].read_only
    assert sr.flatten_fields(None, None) == []
    assert sr.flatten_value({"a": {"b": 1}, "c": 2}) == {"a.b": 1, "c": 2}


def test_texts_for_type_limits_and_value() -> None:
    rows = _rows()
    assert sr.type_text(rows["cutoff_hz"].field) == "float"
    assert sr.limits_text(rows["cutoff_hz"].field) == "[0.5, 200] Hz"
    assert sr.limits_text(rows["order"].field) == "1|2|4"
    assert sr.type_text(rows["taps"].field) == "list[int]"
    assert sr.type_text(rows["maybe"].field) == "int?"
    assert sr.value_text(30.0, rows["cutoff_hz"].field) == "30 Hz"
    assert sr.value_text("fast", rows["mode"].field) == "fast"


@pytest.mark.parametrize("path, kind", [("cutoff_hz", "float"), ("order", "choice"), ("mode", "choice"),
                                        ("enabled", "bool"), ("taps", "list"), ("inner.label", "str"),
                                        ("maybe", "int")])
def test_editor_kind_follows_the_schema(path: str, kind: str) -> None:
    row = _rows()[path]
    assert sr.editor_kind(sr.leaf_field(row), row.value) == kind


def test_check_text_uses_the_workers_rules() -> None:
    rows = _rows()
    cutoff = sr.leaf_field(rows["cutoff_hz"])
    assert sr.check_text(cutoff, "45.5", "float", "cutoff_hz") == (45.5, None)
    value, reason = sr.check_text(cutoff, "5000", "float", "cutoff_hz")
    assert reason == "cutoff_hz: expected a float in [0.5, 200], got 5000.0"
    assert sr.check_text(cutoff, "abc", "float", "cutoff_hz")[1] == "not a number: 'abc'"
    taps = sr.leaf_field(rows["taps"])
    assert sr.check_text(taps, "3, 4,5", "list", "taps") == ([3, 4, 5], None)
    assert sr.check_text(taps, "[7, 8]", "list", "taps") == ([7, 8], None)
    assert "expected a list of int" in (sr.check_text(taps, '["a"]', "list", "taps")[1] or "")
    maybe = sr.leaf_field(rows["maybe"])
    assert sr.check_text(maybe, "", "int", "maybe") == (None, None)
    gain = sr.leaf_field(rows["inner.gain"])
    assert "expected a float in [0, 10]" in (sr.check_text(gain, "11", "float", "inner.gain")[1] or "")
    rate = sr.leaf_field(rows["rate"])
    assert "read-only" in (sr.check_text(rate, "10", "float", "rate")[1] or "")
    order = sr.leaf_field(rows["order"])
    assert sr.check_value(order, 2, "order") == (2, None)
    assert sr.check_value(order, 3, "order")[1] is not None


def test_edit_text_round_trips() -> None:
    assert sr.edit_text(30.0) == "30.0" and sr.edit_text([1, 2]) == "[1, 2]" and sr.edit_text(None) == ""
    assert sr.edit_text(True) == "true" and sr.edit_text("fast") == "fast"


def test_history_and_last_change_per_field() -> None:
    v1 = dict(VALUE)
    v2 = {**v1, "cutoff_hz": 40.0}
    v3 = {**v2, "inner": {"gain": 2.0, "label": "x"}}
    events = [_event(5, v3), _event(1, v1, initial=True), _event(3, v2)]
    changes = sr.history(events, {"p1": "pid 42"}, mine={3})
    assert [(c.seq, c.event_type, c.source) for c in changes] == [(1, "initial", "initial"), (3, "update", "you"),
                                                                  (5, "update", "pid 42")]
    assert changes[1].changes == (("cutoff_hz", 30.0, 40.0),)
    assert sr.changes_text(changes[2].changes) == "inner.gain: 1→2"
    table = sr.last_changes(changes)
    assert sr.last_change(table, "cutoff_hz").seq == 3  # type: ignore[union-attr]
    assert sr.last_change(table, "inner.gain").seq == 5  # type: ignore[union-attr]
    assert sr.last_change(table, "order").seq == 1  # type: ignore[union-attr]
    assert sr.last_changes([]) == {} and sr.last_change({}, "x") is None


def test_diff_values_lists_changed_added_and_removed_leaves() -> None:
    diff = sr.diff_values({"a": 1, "b": {"c": 2.0}, "d": 1}, {"a": 1, "b": {"c": 3.0}, "e": True})
    assert diff == [("b.c", 2.0, 3.0), ("d", 1, sr.MISSING), ("e", sr.MISSING, True)]
    assert sr.diff_values({"a": 1}, {"a": 1.0}) == [("a", 1, 1.0)]  # a type change is a change
    assert sr.diff_values(VALUE, dict(VALUE)) == []


def _snapshot() -> GraphSnapshot:
    comps = (ComponentMetadata("P", "P", ComponentType.COLLECTION, children=("P/U",)),
             ComponentMetadata("P/U", "U", ComponentType.UNIT, dynamic_settings=True),
             ComponentMetadata("P/V", "V", ComponentType.UNIT, dynamic_settings=False))
    session = SessionInfo("s1", "runner", "session", "127.0.0.1:1", 0.0, metadata=GraphMetadata(comps))
    return GraphSnapshot("srv", "e", 1, 0.0, {}, (), (session,),
                         processes=(ProcessInfo("p1", 42, "h", ("P/U", "P/V"), 0.0),))


def _state(address: str, value: object) -> SettingsState:
    return SettingsState(address, SettingsSnapshotValue(value, value, PLAIN_SCHEMA if value else None), "s1", None, 1)


def test_components_lists_those_with_settings_and_whether_they_are_editable() -> None:
    settings = {"P": _state("P", None), "P/U": _state("P/U", VALUE), "P/V": _state("P/V", {"x": 1}),
                "Q": _state("Q", {"y": 2})}
    infos = {i.address: i for i in sr.components(settings, _snapshot())}
    assert set(infos) == {"P/U", "P/V", "Q"}  # P is a collection without settings
    assert (infos["P/U"].kind, infos["P/U"].dynamic, infos["P/U"].process) == ("unit", True, "pid 42")
    assert infos["P/U"].fields == 9
    assert not infos["P/V"].dynamic and infos["Q"].kind == "?"
    row = _rows()["cutoff_hz"]
    assert sr.edit_refusal(infos["P/U"], row, read_only_console=False, connected=True) is None
    assert "read-only console" in (sr.edit_refusal(infos["P/U"], row, read_only_console=True, connected=True) or "")
    assert "no dynamic settings" in (sr.edit_refusal(infos["P/V"], row, read_only_console=False, connected=True)
                                     or "")
    assert "rate is read-only" in (sr.edit_refusal(infos["P/U"], _rows()["rate"], read_only_console=False,
                                                   connected=True) or "")
    assert "not connected" in (sr.edit_refusal(infos["P/U"], row, read_only_console=False, connected=False) or "")


def test_short_error_drops_the_routing_prefix() -> None:
    assert sr.short_error("Process request failed (CONFLICT): settings changed") == "CONFLICT: settings changed"
    assert sr.short_error("plain") == "plain"
    assert sr.short_error(Conflict("Process request failed (CONFLICT): stale")) == "CONFLICT: stale"
    assert sr.short_error(OSError("broken pipe")) == "broken pipe"


def test_the_view_model_does_not_import_textual() -> None:
    """settings_rows (and the format helpers it uses) import nothing from Textual or the app."""
    import ast
    import pathlib

    for module in (sr, sr.fmt_value.__module__):
        path = pathlib.Path(module.__file__ if not isinstance(module, str) else __import__(
            module, fromlist=["x"]).__file__)
        tree = ast.parse(path.read_text())
        names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(name.split(".")[0] in ("textual", "rich") or name in (".app", ".table", ".pane")
                       for name in names), (path, names)
