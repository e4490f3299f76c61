"""The Settings tab: components with settings, their fields, typed editing, undo, diff, history.

Left, every component that has settings (``dyn``: dynamic settings, editable;
``ro``: fixed). Right, the selected component's fields, nested settings
flattened to dotted paths, each with its value (yellow when it differs from
the initial settings), type, bounds or choices, the last change (seq, who,
how long ago) and its description, or the last refusal from the server in
red. Below, the component's settings events.

``enter``/``e`` on a field opens :class:`~.editor.EditorScreen`; its value is
sent with ``expected_seq`` set to the seq the editor showed, so an edit made
meanwhile by someone else is refused (Conflict) instead of overwritten.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from . import settings_rows as sr
from ..settings.values import at_path
from .editor import DiffScreen, EditorScreen
from .format import age_since
from .pane import Pane
from .table import Cell, Column, LiveTable

if TYPE_CHECKING:
    from ..client.monitor import GraphMonitor

COMPONENT_COLUMNS = [Column("address", "component", 15), Column("kind", "kind", 4), Column("edit", "edit", 4),
                     Column("fields", "#f", 2)]
FIELD_COLUMNS = [Column("field", "field", 15), Column("value", "value", 12), Column("type", "type", None),
                 Column("limits", "bounds/choices", 14), Column("changed", "last change", 15),
                 Column("note", "description", None)]
HISTORY_COLUMNS = [Column("seq", "seq", 6), Column("type", "event", 7), Column("source", "source", 12),
                   Column("age", "age", 5), Column("changes", "changed fields", None)]
MESSAGE_S = 10.0


class SettingsPane(Pane):
    """Browse and edit every component's settings (see the module docstring)."""

    TAB_ID = "settings"
    KINDS = frozenset({"settings", "topology", "connection", "clock", "error"})
    TITLE = "Settings"
    HELP = ("Left: components with settings (dyn = dynamic, editable). Right: the selected component's fields. "
            "enter on a component moves to its fields; enter or e on a field edits it (checked as you type, "
            "applied with the seq you saw). u undoes this console's last edit, d diffs against the initial "
            "settings. Bottom: the component's settings events.")
    BINDINGS = [
        Binding("e", "edit", "Edit"),
        Binding("e", "read_only_key('edit')", "Edit", show=False),  # read-only: not in the footer, still says why
        Binding("u", "undo", "Undo"),
        Binding("u", "read_only_key('undo')", "Undo", show=False),
        Binding("d", "diff", "Diff"),
        Binding("h", "focus_table('components')", "Focus the components", show=False),
        Binding("l", "focus_table('fields')", "Focus the fields", show=False),
    ]
    DEFAULT_CSS = """
    SettingsPane #settings-top { height: 1fr; min-height: 8; }
    SettingsPane #components-box { width: 35; border-right: vkey $panel; }
    SettingsPane #fields-box { width: 1fr; }
    SettingsPane #settings-status { height: 1; padding: 0 1; }
    SettingsPane #history-box { height: 1fr; min-height: 6; border-top: solid $panel; }
    """

    def __init__(self, monitor: GraphMonitor, **kwargs: Any) -> None:
        super().__init__(monitor, **kwargs)
        self.selected: str | None = None
        self.errors: dict[tuple[str, str], str] = {}  # (component, field path) -> last refusal
        self._message: tuple[Text, float] | None = None
        self._infos: dict[str, sr.ComponentInfo] = {}
        self._fields: dict[str, sr.FieldRow] = {}
        self._pending_show: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="settings-top"):
            with Vertical(id="components-box"):
                yield Static("Components", classes="pane-title")
                yield LiveTable(COMPONENT_COLUMNS, id="components")
            with Vertical(id="fields-box"):
                yield Static("", classes="pane-title", id="fields-title")
                yield LiveTable(FIELD_COLUMNS, id="fields")
                yield Static("", id="settings-status")
        with Vertical(id="history-box"):
            yield Static("History", classes="pane-title", id="history-title")
            yield LiveTable(HISTORY_COLUMNS, sort_column=0, reverse=True, id="history")

    def table(self, name: str) -> LiveTable:
        """One of the tab's tables: "components", "fields" or "history"."""
        return self.query_one(f"#{name}", LiveTable)


    # -- drawing -------------------------------------------------------------

    def refresh_view(self, kinds: set[str]) -> None:
        if not kinds & self.KINDS:
            return
        infos = sr.components(self.state.settings, self.state.snapshot)
        self._infos = {i.address: i for i in infos}
        self.table("components").set_rows({i.address: _component_cells(i) for i in infos})
        if self._pending_show is not None and self._select(self._pending_show):
            self._pending_show = None
        self._draw_component()
        editor = self.app.screen
        if isinstance(editor, EditorScreen):  # an open editor shows the value as it is now
            state = self.state.settings.get(editor.component)
            if state is not None:
                editor.changed_underneath(at_path(state.value.structured_value, editor.path), state.seq)

    def _draw_component(self) -> None:
        address = self.selected
        state = self.state.settings.get(address) if address else None
        info = self._infos.get(address) if address else None
        if not address or state is None or info is None:
            self._fields = {}
            self.table("fields").set_rows({})
            self.table("history").set_rows({})
            self.query_one("#fields-title", Static).update("Fields")
            self.query_one("#history-title", Static).update("History")
            self._draw_status()
            return
        schema = sr.parse_schema(state.value.settings_schema)
        rows = sr.flatten_fields(state.value.structured_value, schema)
        self._fields = {row.path: row for row in rows}
        by_process, _by_unit = sr.process_labels(self.state.snapshot)
        epoch = self.state.server_epoch
        changes = sr.history(self.state.settings_history.get(address, ()), by_process,
                             {seq for e, seq in self.monitor.own_changes if e == epoch})
        last = sr.last_changes(changes)
        initial = sr.flatten_value(self.state.initial_settings.get(address))
        now = time.time()
        self.table("fields").set_rows({
            row.path: self._field_cells(address, row, sr.last_change(last, row.path), initial, now) for row in rows})
        history_rows = {str(c.seq): _history_cells(c, now) for c in changes}
        before = self.state.previous_history.get(address, ())
        if before:  # the server restarted: its history before, marked, after today's
            prev = self.state.previous_epoch
            old = sr.history(before, by_process, {seq for e, seq in self.monitor.own_changes if e == prev})
            history_rows.update({f"{prev[:8]}:{c.seq}": _history_cells(c, now, f"epoch {prev[:8]}")
                                 for c in old})
        self.table("history").set_rows(history_rows)
        title = Text(address, style="bold")
        title.append(f" · {info.kind} · ")
        title.append("dynamic" if info.dynamic else "fixed settings", style="green" if info.dynamic else "yellow")
        title.append(f" · {info.process or 'no process'} · seq {state.seq}")
        if address in self.state.stopped:
            title.append(" · stopped: its process exited (the last value it had)", style="bold yellow")
        if self.console.read_only:
            title.append(" · read-only console", style="bold yellow")
        self.query_one("#fields-title", Static).update(title)
        self.query_one("#history-title", Static).update(f"History · {address} · {len(changes)} events")
        self._draw_status()

    def _field_cells(self, address: str, row: sr.FieldRow, change: sr.Change | None, initial: dict[str, Any],
                     now: float) -> tuple[Cell, ...]:
        error = self.errors.get((address, row.path))
        modified = row.path in initial and not sr.same_value(initial[row.path], row.value)
        value = Text(sr.value_text(row.value, row.field, 24),
                     style="bold red" if error else "bold yellow" if modified else "")
        if error:
            value.append(" ✕")
        name = Text(row.path, style="dim" if row.read_only else "")
        changed = Text("-") if change is None else \
            Text(f"#{change.seq} {change.source} {age_since(change.timestamp, now)}")
        if error:
            note = Text(f"✕ refused: {error}", style="red")
        else:
            note = Text(("read-only · " if row.read_only else "") + (row.field.description if row.field else ""),
                        style="dim")
        return (Cell(row.path, name), Cell(row.value, value), Cell(sr.type_text(row.field)),
                Cell(sr.limits_text(row.field)), Cell(change.seq if change else None, changed), Cell(note.plain, note))

    def _draw_status(self) -> None:
        status = self.query_one("#settings-status", Static)
        row = self._fields.get(self.table("fields").selected_key or "")
        error = self.errors.get((self.selected or "", row.path)) if row else None
        if error:
            status.update(Text(f"✕ refused: {error}", style="bold red"))
        elif self._message is not None and time.monotonic() - self._message[1] < MESSAGE_S:
            status.update(self._message[0])
        elif row is not None:
            text = Text(row.path, style="bold")
            if row.field is not None and row.field.description:
                text.append(f" — {row.field.description}")
            why = self._refusal(row)
            if why:
                text.append(f"  ({why})", style="yellow")
            status.update(text)
        else:
            status.update(Text("select a component, then a field", style="dim"))

    def _say(self, text: str, style: str) -> None:
        self._message = (Text(text, style=style), time.monotonic())
        self._draw_status()

    # -- selection -------------------------------------------------------------

    @on(LiveTable.Selected)
    def _selected(self, event: LiveTable.Selected) -> None:
        event.stop()
        if event.table.id == "components":
            if event.key != self.selected:
                self.selected = event.key
                self._message = None
                self._draw_component()
        elif event.table.id == "fields":
            self._draw_status()

    @on(LiveTable.Activated)
    def _activated(self, event: LiveTable.Activated) -> None:
        event.stop()
        if event.table.id == "components":
            self.action_focus_table("fields")
        elif event.table.id == "fields":
            self.action_edit()

    def action_focus_table(self, name: str) -> None:
        self.table(name).table.focus()

    def show(self, target: str) -> None:
        """Select the component ``target`` (or the component a topic/endpoint address belongs to)."""
        if not self._select(target):
            if self._infos:
                self.notify(f"{target}: no settings here", severity="warning", timeout=3)
            else:
                self._pending_show = target  # no data yet: select it when it arrives

    def _select(self, target: str) -> bool:
        probe = target
        while probe and probe not in self._infos:
            probe = probe.rpartition("/")[0]
        if not probe:
            return False
        components = self.table("components")
        if not components.select(probe):
            components.set_filter("")
            components.select(probe)
        if probe != self.selected:
            self.selected, self._message = probe, None
        self._draw_component()
        return True

    # -- editing ---------------------------------------------------------------

    def _refusal(self, row: sr.FieldRow | None) -> str | None:
        return sr.edit_refusal(self._infos.get(self.selected or ""), row, read_only_console=self.console.read_only,
                               connected=not self.state.stale)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Read-only: edit and undo leave the footer (their keys then only say why not)."""
        if action in ("edit", "undo"):
            return not self.console.read_only
        if action == "read_only_key":
            return self.console.read_only
        return True

    def action_read_only_key(self, what: str) -> None:
        self.action_undo() if what == "undo" else self.action_edit()

    def action_edit(self) -> None:
        row = self._fields.get(self.table("fields").selected_key or "")
        why = self._refusal(row)
        address = self.selected
        state = self.state.settings.get(address) if address else None
        if why is None and (state is None or row is None):
            why = "no field selected"
        if why is not None or state is None or row is None or address is None:
            self._say(f"✕ cannot edit: {why}", "bold yellow")
            self.notify(f"cannot edit: {why}", severity="warning", timeout=4)
            return
        seq, path, before = state.seq, row.path, row.value

        def done(result: tuple[Any] | None) -> None:
            if result is None:
                self._say("edit cancelled", "dim")
            elif sr.same_value(result[0], before):
                self._say(f"{path}: unchanged, nothing sent", "dim")
            else:
                self.run_worker(self._apply(address, path, result[0], seq), group="settings-edit",
                                exit_on_error=False)

        self.app.push_screen(EditorScreen(address, path, sr.leaf_field(row), before, seq), done)

    async def _apply(self, address: str, path: str, value: Any, seq: int) -> None:
        self._say(f"applying {address} {path} = {sr.value_text(value, None)} …", "dim")
        try:
            reply = await self.monitor.update_setting(address, path, value, expected_seq=seq)
        except Exception as exc:  # noqa: BLE001 - a refusal (ConsoleError) or a failure: shown, never raised
            reason = sr.short_error(exc)
            self.errors[(address, path)] = reason
            self._say(f"✕ refused: {reason}", "bold red")
        else:
            self.errors.pop((address, path), None)
            new_seq = reply.get("seq") if isinstance(reply, dict) else None  # "you": the monitor keeps it
            self._say(f"✓ {address} {path} = {sr.value_text(value, None)} (seq {new_seq})", "bold green")
        self._draw_component()

    def action_undo(self) -> None:
        if self.console.read_only:
            self._say("✕ cannot undo: read-only console", "bold yellow")
            self.notify("read-only console: undo is disabled", severity="warning", timeout=4)
            return
        if not self.monitor.undo_stack:
            self._say("nothing to undo (no edit made from this console)", "dim")
            return
        self.run_worker(self._undo(), group="settings-edit", exit_on_error=False)

    async def _undo(self) -> None:
        component, path, _value = self.monitor.undo_stack[-1]
        try:
            restored = await self.monitor.undo()
        except Exception as exc:  # noqa: BLE001 - a refusal (ConsoleError) or a failure: shown, never raised
            reason = sr.short_error(exc)
            self.errors[(component, path)] = reason
            self._say(f"✕ undo refused: {reason}", "bold red")
        else:
            if restored is not None:
                self.errors.pop((component, path), None)
                self._say(f"↶ {component} {path} = {sr.value_text(restored.value, None)} (undone, seq "
                          f"{restored.seq})", "bold green")
        self._draw_component()

    def action_diff(self) -> None:
        address = self.selected
        state = self.state.settings.get(address) if address else None
        if address is None or state is None:
            self._say("select a component first", "dim")
            return
        changes = sr.diff_values(self.state.initial_settings.get(address), state.value.structured_value)
        self.app.push_screen(DiffScreen(address, changes))

    # -- export ------------------------------------------------------------------

    def export_rows(self) -> tuple[str, list[dict[str, Any]]]:
        """The selected component's fields (every component's when none is selected)."""
        targets = [self.selected] if self.selected in self._infos else sorted(self._infos)
        rows: list[dict[str, Any]] = []
        for address in targets:
            state = self.state.settings.get(address or "")
            if state is None or address is None:
                continue
            info = self._infos[address]
            for row in sr.flatten_fields(state.value.structured_value, sr.parse_schema(state.value.settings_schema)):
                field = row.field
                rows.append({"component": address, "kind": info.kind, "dynamic": info.dynamic, "field": row.path,
                             "value": row.value, "type": sr.type_text(field), "limits": sr.limits_text(field),
                             "read_only": row.read_only, "description": field.description if field else "",
                             "seq": state.seq, "error": self.errors.get((address, row.path))})
        return self.TAB_ID, rows


def _component_cells(info: sr.ComponentInfo) -> tuple[Cell, ...]:
    kind = {"collection": "coll"}.get(info.kind, info.kind)
    edit = Text("dyn", style="green") if info.dynamic else Text("ro", style="yellow")
    return (Cell(info.address), Cell(info.kind, kind), Cell(info.dynamic, edit), Cell(info.fields))


def _history_cells(change: sr.Change, now: float, epoch: str = "") -> tuple[Cell, ...]:
    """A history row; ``epoch``: the row is from before a server restart (shown dim, with it)."""
    text = sr.changes_text(change.changes) if change.changes else \
        ("(all fields)" if change.event_type == "initial" else "-")
    if epoch:
        kind = f"{change.event_type} ({epoch})"
        return (Cell(-change.seq, Text(str(change.seq), style="dim")), Cell(kind, Text(kind, style="dim")),
                Cell(change.source), Cell(change.timestamp, age_since(change.timestamp, now)),
                Cell(text, Text(text, style="dim")))
    # Text, not str: the table measures auto-width columns from Text cells only.
    return (Cell(change.seq), Cell(change.event_type), Cell(change.source),
            Cell(change.timestamp, age_since(change.timestamp, now)), Cell(text, Text(text)))
