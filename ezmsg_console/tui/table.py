"""LiveTable: a table that is updated in place, filtered, sorted and never loses its row.

Callers hand :meth:`LiveTable.set_rows` the complete current rows: key ->
tuple of :class:`Cell`, or key -> any record plus a ``build`` function that
makes the cells and a ``sort_value`` function that gives a column's raw
value. The table then drops rows that are gone or filtered out, re-sorts by
the sort column's raw values, puts the cursor back on the row it was on, and
re-renders only the lines on screen whose record changed. Rows are built
(``build``) only when they are drawn, so a table of thousands of rows costs
about as much per update as one of a screenful. The lines themselves are
drawn by :class:`~.grid.RowGrid`, which caches each rendered row.

Keys (shown in the footer and the help screen): ``/`` filter (incremental,
``esc`` clears), ``<`` / ``>`` move the sort column, ``I`` invert the sort,
``j``/``k``/``g``/``G`` move, ``c`` copy the selected row as JSON. Clicking a
header sorts by it (again: inverts).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Iterable, Mapping, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input

from .grid import RowGrid


def raw_sort_key(raw: Any) -> tuple[int, Any]:
    """Numbers first (by value), then text (case-insensitive), then empty cells."""
    if raw is None:
        return (2, 0)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return (0, raw)
    return (1, str(raw).lower())


class Cell:
    """A table cell: what to show (``text``) and what to sort and export by (``raw``)."""

    __slots__ = ("raw", "text")

    def __init__(self, raw: Any, text: str | Text | None = None) -> None:
        self.raw = raw
        self.text = text if text is not None else ("" if raw is None else str(raw))

    def __rich__(self) -> Text:
        return self.text if isinstance(self.text, Text) else Text(self.text)

    def plain(self) -> str:
        return self.text.plain if isinstance(self.text, Text) else str(self.text)

    def sort_key(self) -> tuple[int, Any]:
        return raw_sort_key(self.raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and other.raw == self.raw and other.plain() == self.plain() \
            and (other.text.style if isinstance(other.text, Text) else None) == \
            (self.text.style if isinstance(self.text, Text) else None)

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None


def columns(spec: Iterable[tuple[str, str, int | None]]) -> list[Column]:
    """Columns from ``(key, label, width)`` triples (width None: fits what it shows)."""
    return [Column(key, label, width) for key, label, width in spec]


class LiveTable(Vertical):
    """A filterable, sortable table of live rows (see the module docstring)."""

    DEFAULT_CSS = """
    LiveTable { height: 1fr; }
    LiveTable > RowGrid { height: 1fr; }
    LiveTable > Input { display: none; height: 3; }
    LiveTable > Input.-active { display: block; }
    """

    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("less_than_sign", "sort_column(-1)", "Sort ←", key_display="<"),
        Binding("greater_than_sign", "sort_column(1)", "Sort →", key_display=">"),
        Binding("I", "invert", "Invert sort"),
        Binding("c", "copy_row", "Copy row"),
        Binding("j", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", "Up", show=False),
        Binding("g", "cursor_edge(0)", "Top", show=False),
        Binding("G", "cursor_edge(1)", "Bottom", show=False),
    ]

    class Selected(Message):
        """The highlighted row changed (``key`` None: no row)."""

        def __init__(self, table: LiveTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class Activated(Message):
        """``enter`` on a row."""

        def __init__(self, table: LiveTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    def __init__(self, columns: Sequence[Column], *, sort_column: int = 0, reverse: bool = False,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = list(columns)
        self.sort_index = sort_column
        self.reverse = reverse
        self.filter_text = ""
        self._records: dict[str, Any] = {}
        self._build: Callable[[str, Any], tuple[Cell, ...]] = _cells_as_given
        self._sort_value: Callable[[Any, int], Any] | None = None
        self._shown: dict[str, Any] = {}  # key -> record, of the rows in the table (filtered)
        self._drawn: dict[str, tuple[Any, tuple[Cell, ...]]] = {}  # key -> (record built, its cells)
        self._order: list[str] = []
        self._last_selected: str | None = None
        self.updates = 0  # rows built for display (for tests and benchmarks)
        self._grid = RowGrid(self.columns, self._display_cells)
        self._grid.labels = [self._label(c) for c in self.columns]

    def compose(self) -> ComposeResult:
        yield self._grid
        yield Input(placeholder="filter (esc: clear)")

    @property
    def table(self) -> RowGrid:
        """The focusable grid that draws the rows."""
        return self._grid

    def _label(self, col: Column) -> Text:
        if self.columns.index(col) == self.sort_index:
            label = col.label
            if col.width is not None and len(label) + 2 > col.width:  # shorten the name, never the arrow
                label = label[:max(1, col.width - 3)] + "…"
            return Text(f"{label} {'▼' if self.reverse else '▲'}", style="bold")
        return Text(col.label)

    # -- data ------------------------------------------------------------

    @property
    def selected_key(self) -> str | None:
        return self._grid.row_at_cursor()

    def row(self, key: str) -> tuple[Cell, ...] | None:
        record = self._records.get(key)
        return None if record is None else self._cells_of(key, record)

    def _cells_of(self, key: str, record: Any) -> tuple[Cell, ...]:
        drawn = self._drawn.get(key)
        if drawn is not None and drawn[0] is record:
            return drawn[1]
        cells = self._build(key, record)
        self._drawn[key] = (record, cells)
        self.updates += 1
        return cells

    def _display_cells(self, key: str) -> tuple[Cell, ...]:
        record = self._shown.get(key)
        return () if record is None else self._cells_of(key, record)

    @property
    def shown_keys(self) -> list[str]:
        """Keys of the displayed rows, in display order."""
        return list(self._order)

    def set_rows(self, rows: Mapping[str, Any], build: Callable[[str, Any], tuple[Cell, ...]] | None = None,
                 sort_value: Callable[[Any, int], Any] | None = None) -> None:
        """Make the table show ``rows`` (filtered and sorted), touching only what changed.

        Without ``build``, each value is the row's tuple of cells. With it,
        values are records, ``build(key, record)`` makes a row's cells (only
        for rows drawn or filtered), and ``sort_value(record, column_index)``
        gives the raw value to sort by (so rows are sorted without being
        built). A record that ``is`` the one drawn before is not rebuilt.
        """
        self._records = dict(rows)
        self._build = build or _cells_as_given
        self._sort_value = sort_value if build is not None else None
        self._apply()

    def _matches(self, key: str, record: Any) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in c.plain().lower() for c in self._cells_of(key, record))

    def _sort_key(self, key: str, record: Any) -> Any:
        if self._sort_value is not None:
            return raw_sort_key(self._sort_value(record, self.sort_index))
        cells = self._cells_of(key, record)
        return cells[self.sort_index].sort_key() if self.sort_index < len(cells) else (2, 0)

    def _apply(self) -> None:
        grid = self._grid
        keep = self.selected_key
        previous = self._shown
        wanted = {k: v for k, v in self._records.items() if self._matches(k, v)}
        for key in [k for k in self._drawn if k not in wanted]:
            del self._drawn[key]
        self._shown = wanted
        order = sorted(wanted, key=lambda k: self._sort_key(k, wanted[k]), reverse=self.reverse)
        if order != self._order:
            self._order = order
            cursor = order.index(keep) if keep is not None and keep in wanted else None
            grid.set_keys(order, cursor)
        else:
            grid.refresh_keys([k for k, v in wanted.items() if previous.get(k) is not v])
        self._announce()

    def _move_to(self, key: str) -> None:
        try:
            index = self._order.index(key)
        except ValueError:
            return
        if self._grid.cursor_row != index:
            self._grid.move_cursor(index)

    def _announce(self) -> None:
        key = self.selected_key
        if key != self._last_selected:
            self._last_selected = key
            self.post_message(self.Selected(self, key))

    def select(self, key: str) -> bool:
        """Put the cursor on ``key`` if it is shown."""
        if key in self._shown:
            self._move_to(key)
            self._announce()
            return True
        return False

    # -- sorting and filtering ---------------------------------------------

    def set_sort(self, index: int, reverse: bool | None = None) -> None:
        self.sort_index = max(0, min(len(self.columns) - 1, index))
        if reverse is not None:
            self.reverse = reverse
        self._grid.set_labels([self._label(c) for c in self.columns])
        self._order = []  # force a re-sort (the cursor stays on its row)
        self._apply()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._apply()

    def action_sort_column(self, step: int) -> None:
        self.set_sort((self.sort_index + step) % len(self.columns))

    def action_invert(self) -> None:
        self.set_sort(self.sort_index, not self.reverse)

    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.add_class("-active")
        box.value = self.filter_text
        box.focus()

    @on(Input.Changed)
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.set_filter(event.value)

    @on(Input.Submitted)
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self._grid.focus()

    def key_escape(self) -> None:
        box = self.query_one(Input)
        if box.has_class("-active"):
            box.value = ""
            box.remove_class("-active")
            self.set_filter("")
            self._grid.focus()

    @on(RowGrid.HeaderClicked)
    def _header(self, event: RowGrid.HeaderClicked) -> None:
        event.stop()
        index = event.index
        self.set_sort(index, not self.reverse if index == self.sort_index else False)

    @on(RowGrid.CursorMoved)
    def _highlighted(self, event: RowGrid.CursorMoved) -> None:
        event.stop()
        self._announce()

    @on(RowGrid.RowActivated)
    def _activated(self, event: RowGrid.RowActivated) -> None:
        event.stop()
        if 0 <= event.index < len(self._order):
            self.post_message(self.Activated(self, self._order[event.index]))

    def action_cursor(self, step: int) -> None:
        self._grid.action_cursor_by(step)

    def action_cursor_edge(self, end: int) -> None:
        self._grid.action_cursor_to(-1 if end else 0)

    def row_as_dict(self, key: str) -> dict[str, Any]:
        cells = self.row(key) or ()
        return {col.key: _jsonable(cell.raw) for col, cell in zip(self.columns, cells)}

    def action_copy_row(self) -> None:
        key = self.selected_key
        if key is None:
            self.notify("no row selected", severity="warning")
            return
        text = json.dumps(self.row_as_dict(key), sort_keys=True)
        self.app.copy_to_clipboard(text)
        self.notify(f"copied row {key} as JSON", timeout=2)

    def visible_rows(self) -> list[dict[str, Any]]:
        """The displayed rows, in order, as dicts of raw values (for export)."""
        return [self.row_as_dict(k) for k in self._order]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _cells_as_given(_key: str, cells: Any) -> tuple[Cell, ...]:
    return cells
