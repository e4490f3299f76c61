"""The typed settings editor (``enter``/``e`` on a field) and the diff view (``d``).

:class:`EditorScreen` picks its widget from the field's schema: a switch for
bools, a list of choices for enums and choice fields, a restricted number
input for ints and floats, a text input for strings, lists (JSON or commas)
and anything else (JSON, else text). Every keystroke is checked with the
worker's own rules (:func:`~.settings_rows.check_text`), and the reason is
shown under the input. ``enter`` dismisses with ``(value,)`` when the value
is acceptable (the Settings tab then sends it); ``esc`` dismisses with None.
"""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static, Switch

from ..settings.schema import SettingsFieldMetadata
from .settings_rows import MISSING, check_text, check_value, edit_text, editor_kind, limits_text, type_text, \
    value_text


class _Switch(Switch, inherit_bindings=False):
    """A switch that toggles on space only, so that ``enter`` applies the edit."""

    BINDINGS = [Binding("space", "toggle_switch", "Toggle")]


class EditorScreen(ModalScreen[tuple[Any] | None]):
    """Edit one field: returns ``(value,)`` to apply, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "apply", "Apply"),
                Binding("up", "step(1)", "Step up", show=False), Binding("down", "step(-1)", "Step down", show=False)]
    DEFAULT_CSS = """
    EditorScreen { align: center middle; }
    EditorScreen > Vertical { width: 76; height: auto; max-height: 90%; border: round $accent;
                              background: $surface; padding: 0 1; }
    EditorScreen .editor-title { text-style: bold; }
    EditorScreen .editor-info { color: $text-muted; }
    EditorScreen OptionList { height: auto; max-height: 10; }
    EditorScreen #reason { height: auto; min-height: 1; }
    """

    def __init__(self, component: str, path: str, field: SettingsFieldMetadata, value: Any, seq: int) -> None:
        super().__init__()
        self.component = component
        self.path = path
        self.field = field
        self.current = value
        self.seq = seq
        self.kind = editor_kind(field, value)
        self.reason: str | None = None
        """Why the value in the editor would be refused (None: it would be accepted)."""
        self.candidate: Any = value

    def compose(self) -> ComposeResult:
        field = self.field
        with Vertical():
            yield Static(f"Edit {self.component} · {self.path}", classes="editor-title")
            info = " · ".join(p for p in (type_text(field), limits_text(field), field.description) if p)
            yield Static(info, classes="editor-info")
            yield Static(f"current: {value_text(self.current, field)}   (seq {self.seq})", classes="editor-info",
                         id="current")
            yield from self._widget()
            yield Static("", id="reason")
            yield Static(self._hint(), classes="editor-info")

    def _widget(self) -> ComposeResult:
        if self.kind == "bool":
            yield _Switch(value=bool(self.current), id="value")
        elif self.kind == "choice":
            choices = list(self.field.choices or ())
            options = OptionList(*[str(c) for c in choices], id="value")
            yield options
        else:
            # Plain text for numbers too: a character a number cannot take is shown and refused with
            # the reason (Textual's number inputs would drop it without a word).
            placeholder = {"list": "JSON list, or items separated by commas", "json": "JSON (or plain text)"}.get(
                self.kind, limits_text(self.field))
            if self.field.optional and self.kind != "str":
                placeholder = f"{placeholder} · empty: None".lstrip(" ·")
            yield Input(value=edit_text(self.current), placeholder=placeholder, id="value", select_on_focus=True)

    def action_step(self, direction: int) -> None:
        """↑/↓ in a number field: one step (1 % of the field's range, else 1 for an integer or 1 % of
        the value for a float), from what is typed (or the current value), kept within the bounds."""
        if self.kind not in ("int", "float"):
            return
        widget = self.query_one("#value", Input)
        try:
            base = float(widget.value.strip().replace("_", "")) if widget.value.strip() else float(self.current)
        except (TypeError, ValueError):
            try:
                base = float(self.current)
            except (TypeError, ValueError):
                base = 0.0
        step = number_step(self.field, self.kind, base)
        new = base + direction * step
        low, high = self.field.bounds or (None, None)
        if low is not None:
            new = max(new, low)
        if high is not None:
            new = min(new, high)
        if self.kind == "int":
            widget.value = str(round(new))
        else:
            decimals = max(0, 3 - math.floor(math.log10(step))) if step > 0 else 6  # no float noise
            widget.value = repr(round(new, decimals))
        widget.cursor_position = len(widget.value)

    def changed_underneath(self, value: Any, seq: int) -> None:
        """The field changed while the editor was open (another operator, the unit itself): show the
        new current value. The edit keeps the seq it was opened with, so applying it now is
        refused (Conflict) rather than overwriting what was just shown."""
        if seq <= self.seq:
            return
        text = Text(f"current: {value_text(value, self.field)}   (seq {seq}: changed since this editor opened "
                    f"at seq {self.seq}; applying will be refused, reopen to edit the new value)", style="yellow")
        self.query_one("#current", Static).update(text)

    def _hint(self) -> str:
        if self.kind == "bool":
            return "space toggle · enter apply · esc cancel"
        if self.kind == "choice":
            return "↑↓ choose · enter apply · esc cancel"
        hint = "enter apply · esc cancel"
        if self.kind in ("int", "float"):
            hint = "↑↓ step · " + hint
        if self.field.optional and self.kind != "str":
            hint = "empty = None · " + hint
        return hint

    def on_mount(self) -> None:
        widget = self.query_one("#value")
        if isinstance(widget, OptionList):
            choices = list(self.field.choices or ())
            widget.highlighted = next((i for i, c in enumerate(choices)
                                       if c == self.current and type(c) is type(self.current)), 0)
        widget.focus()
        self._check_current()

    # -- validation ---------------------------------------------------------

    def _check_current(self) -> None:
        widget = self.query_one("#value")
        if isinstance(widget, Switch):
            self._set_candidate(*check_value(self.field, widget.value, self.path))
        elif isinstance(widget, OptionList):
            choices = list(self.field.choices or ())
            index = widget.highlighted
            if index is None or not choices:
                self._set_candidate(None, "choose a value")
            else:
                self._set_candidate(*check_value(self.field, choices[index], self.path))
        elif isinstance(widget, Input):
            self._set_candidate(*check_text(self.field, widget.value, self.kind, self.path))

    def _set_candidate(self, value: Any, reason: str | None) -> None:
        self.candidate, self.reason = value, reason
        label = self.query_one("#reason", Static)
        if reason is not None:
            label.update(Text(f"✕ {reason}", style="bold red"))
        elif value == self.current and type(value) is type(self.current):
            label.update(Text("= unchanged", style="dim"))
        else:
            label.update(Text(f"✓ {value_text(value, self.field)}", style="green"))

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self._check_current()

    @on(Switch.Changed)
    def _toggled(self, event: Switch.Changed) -> None:
        event.stop()
        self._check_current()

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._check_current()

    # -- apply / cancel -------------------------------------------------------

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_apply()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_apply()

    def action_apply(self) -> None:
        self._check_current()
        if self.reason is not None:
            self.app.bell()
            self.query_one("#reason", Static).update(
                Text(f"✕ {self.reason} — fix it, or esc to cancel", style="bold red"))
            return
        self.dismiss((self.candidate,))

    def action_cancel(self) -> None:
        self.dismiss(None)


class DiffScreen(ModalScreen[None]):
    """A component's current settings against its initial ones, field by field."""

    BINDINGS = [Binding("escape,q,d", "close", "Close")]
    DEFAULT_CSS = """
    DiffScreen { align: center middle; }
    DiffScreen > VerticalScroll { width: 96; height: auto; max-height: 90%; border: round $accent;
                                  background: $surface; padding: 0 1; }
    """

    def __init__(self, component: str, changes: list[tuple[str, Any, Any]]) -> None:
        super().__init__()
        self.component = component
        self.changes = changes
        self.text = ""
        """The diff as plain text (what is shown, for tests and copy)."""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(f"{self.component} — changes since the initial settings", style="bold"))
            if not self.changes:
                self.text = "no field differs from the initial settings"
                yield Static(Text(self.text, style="dim"))
            else:
                table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
                table.add_column("field", style="bold cyan", no_wrap=True)
                table.add_column("initial", style="red")
                table.add_column("current", style="green")
                lines = []
                for path, before, after in self.changes:
                    old, new = _show(before), _show(after)
                    table.add_row(path, old, new)
                    lines.append(f"{path}: {old} -> {new}")
                self.text = "\n".join(lines)
                yield Static(table)
            yield Static(Text("esc closes", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)


def _show(value: Any) -> str:
    return "(absent)" if value is MISSING else value_text(value, None, 60)


def number_step(field: SettingsFieldMetadata, kind: str, value: float) -> float:
    """One arrow-key step for a number field: 1 % of its range when it has both bounds, else 1 for
    an integer, else 1 % of the value (0.01 at zero)."""
    low, high = field.bounds or (None, None)
    if low is not None and high is not None and high > low:
        step = (high - low) / 100
        return max(1.0, round(step)) if kind == "int" else step
    if kind == "int":
        return 1.0
    return abs(value) / 100 if value else 0.01
