"""The help screen: every key of the current tab, of its tables, and of the console."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .table import LiveTable

if TYPE_CHECKING:
    from .pane import Pane


def binding_rows(bindings: list[Any]) -> list[tuple[str, str]]:
    rows = []
    for b in bindings:
        if isinstance(b, Binding):
            key, desc = b.key_display or b.key, b.description
        else:
            key, desc = b[0], b[2] if len(b) > 2 else b[1]
        key = {"question_mark": "?", "slash": "/", "less_than_sign": "<", "greater_than_sign": ">",
               "plus": "+", "minus": "-"}.get(key, key)
        if desc:
            rows.append((key, desc))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-height: 90%; border: round $accent; background: $surface;
                                  padding: 0 1; }
    """

    def __init__(self, pane: Pane, app: Any) -> None:
        super().__init__()
        self.pane = pane
        self.console_app = app
        self.entries: list[tuple[str, str, str]] = []  # (section, key, description), as shown

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(f"{self.pane.TITLE} — keys", style="bold"))
            if self.pane.HELP:
                yield Static(self.pane.HELP)
            yield Static(self._table("This tab", binding_rows(list(type(self.pane).BINDINGS))))
            yield Static(self._table("Tables", binding_rows(list(LiveTable.BINDINGS)) + [
                ("↑ ↓ PgUp PgDn", "Move"), ("enter", "Open / drill down"), ("click header", "Sort by it")]))
            yield Static(self._table("Everywhere", binding_rows(list(type(self.console_app).BINDINGS)) + [
                ("ctrl+p", "Command palette (connect, export, trace, read-only, theme)")]))
            yield Static(Text("esc closes this screen", style="dim"))

    def _table(self, title: str, rows: list[tuple[str, str]]) -> Table:
        table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        seen = set()
        for key, desc in rows:
            if (key, desc) not in seen:
                seen.add((key, desc))
                table.add_row(key, desc)
                self.entries.append((title, key, desc))
        return table

    def action_dismiss(self, result: Any = None) -> None:  # type: ignore[override]
        self.dismiss(None)
