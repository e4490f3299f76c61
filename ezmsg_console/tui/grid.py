"""RowGrid: the line-rendered grid under :class:`~.table.LiveTable`.

A Textual Line-API widget (a ``ScrollView``): line 0 is the header, the other
lines are the rows in ``keys`` order, scrolled. Each line is rendered straight
to segments (one per cell, padded or cut to its column) and kept in a per-row
cache, keyed by the identity of the row's cells and its look (cursor, stripe,
focus, theme). So a refresh that changes three rows renders three lines and
re-uses the rest, and the cost of a frame is the rows on screen, however many
rows the table has. (Textual's DataTable, which this replaces, throws away
every cached line whenever any cell changes, and renders each cell through
Rich's full layout engine: that was most of the console's frame time.)

The grid knows nothing of records, sorting or filtering: its owner gives it
the row keys in display order and a function that returns a row's cells, and
tells it which rows changed. It posts :class:`CursorMoved`,
:class:`RowActivated` and :class:`HeaderClicked`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

if TYPE_CHECKING:
    from .table import Cell, Column

AUTO_WIDTH_MAX = 60
"""An auto-width column (``Column.width`` None) grows to fit what it has shown, up to this."""
PAD = 1
"""Blank cells either side of every cell."""


class RowGrid(ScrollView, can_focus=True):
    """A header line and scrolled row lines, rendered per row and cached (see the module docstring)."""

    COMPONENT_CLASSES = {"rowgrid--header", "rowgrid--cursor", "rowgrid--even-row", "rowgrid--odd-row"}

    DEFAULT_CSS = """
    RowGrid {
        background: $surface;
        color: $foreground;
        height: 1fr;
        & > .rowgrid--header { text-style: bold; background: $panel; color: $foreground; }
        & > .rowgrid--even-row { background: $surface-lighten-1 50%; }
        & > .rowgrid--odd-row { }
        & > .rowgrid--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .rowgrid--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .rowgrid--header { background-tint: $foreground 5%; }
        }
        &:dark > .rowgrid--even-row { background: $surface-darken-1 40%; }
        &:ansi > .rowgrid--header { background: ansi_bright_blue; color: ansi_default; }
    }
    """

    BINDINGS = [
        Binding("up", "cursor_by(-1)", "Up", show=False),
        Binding("down", "cursor_by(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First row", show=False),
        Binding("end", "cursor_to(-1)", "Last row", show=False),
        Binding("enter", "activate", "Open", show=False),
    ]

    class CursorMoved(Message):
        """The cursor moved to row ``index`` (-1: no rows)."""

        def __init__(self, grid: RowGrid, index: int) -> None:
            super().__init__()
            self.grid = grid
            self.index = index

    class RowActivated(Message):
        """``enter`` on row ``index``, or a click on the row under the cursor."""

        def __init__(self, grid: RowGrid, index: int) -> None:
            super().__init__()
            self.grid = grid
            self.index = index

    class HeaderClicked(Message):
        """A click on column ``index``'s header."""

        def __init__(self, grid: RowGrid, index: int) -> None:
            super().__init__()
            self.grid = grid
            self.index = index

    def __init__(self, columns: Sequence[Column], cells_of: Callable[[str], Sequence[Cell]], *,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = list(columns)
        self.labels: list[Text] = [Text(c.label) for c in self.columns]
        self._cells_of = cells_of
        self._widths = [c.width if c.width is not None else cell_len(c.label) for c in self.columns]
        self._layout = 0  # bumped when widths or labels change: every cached line is stale
        self.keys: list[str] = []
        self.cursor_row = 0
        self._cache: dict[str, tuple[Any, tuple[Any, ...], Strip]] = {}
        self._header: tuple[tuple[Any, ...], Strip] | None = None
        self._styles: tuple[Style, Style, Style, Style, Style] | None = None
        self.lines_rendered = 0  # row lines rendered (not from the cache): for tests and benchmarks
        self._sync_virtual_size()

    # -- the owner's interface ---------------------------------------------------

    def set_keys(self, keys: list[str], cursor: int | None = None) -> None:
        """Show ``keys`` in this order, the cursor on row ``cursor`` (else kept, clamped)."""
        changed = keys != self.keys
        self.keys = keys
        if len(self._cache) > 4 * len(keys) + 256:
            wanted = set(keys)
            self._cache = {k: v for k, v in self._cache.items() if k in wanted}
        if changed:
            self._sync_virtual_size()
            self.refresh()
        self.move_cursor(self.cursor_row if cursor is None else cursor, post=changed)

    def refresh_keys(self, keys: Sequence[str]) -> None:
        """Re-render the lines of these rows if they are on screen (their cells changed)."""
        if not keys:
            return
        top = int(self.scroll_y)
        on_screen = {k: i for i, k in enumerate(self.keys[top:top + max(0, self.size.height - 1)], top)}
        for key in keys:
            index = on_screen.get(key)
            if index is not None:
                self.refresh_line(index + 1)

    def set_labels(self, labels: Sequence[Text]) -> None:
        self.labels = list(labels)
        self._layout += 1
        self.refresh()

    def row_at_cursor(self) -> str | None:
        return self.keys[self.cursor_row] if 0 <= self.cursor_row < len(self.keys) else None

    @property
    def row_count(self) -> int:
        return len(self.keys)

    def move_cursor(self, index: int, *, post: bool = True) -> None:
        """Put the cursor on row ``index`` (clamped), scrolled into view."""
        old = self.cursor_row
        new = max(0, min(len(self.keys) - 1, index)) if self.keys else 0
        self.cursor_row = new
        if new != old:
            self.refresh_line(old + 1)
            self.refresh_line(new + 1)
        self._scroll_to_cursor()
        if new != old or post:
            self.post_message(self.CursorMoved(self, new if self.keys else -1))

    # -- geometry --------------------------------------------------------------------

    @property
    def total_width(self) -> int:
        return sum(w + 2 * PAD for w in self._widths)

    def _sync_virtual_size(self) -> None:
        self.virtual_size = Size(self.total_width, len(self.keys) + 1)

    def _scroll_to_cursor(self) -> None:
        rows_visible = max(1, self.size.height - 1 - (1 if self.show_horizontal_scrollbar else 0))
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + rows_visible:
            self.scroll_to(y=self.cursor_row - rows_visible + 1, animate=False)

    def refresh_line(self, y: int) -> None:
        """Refresh widget line ``y`` of the virtual space (0 = the header, row i = line i + 1)."""
        if y == 0:
            self.refresh(Region(0, 0, max(self.virtual_size.width, self.size.width), 1))
            return
        screen_y = y - int(self.scroll_y)
        if 1 <= screen_y < self.size.height:
            self.refresh(Region(0, screen_y, max(self.virtual_size.width, self.size.width), 1))

    # -- rendering ---------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None

    def render_lines(self, crop: Region) -> list[Strip]:
        self._styles = (
            self.rich_style,
            self.get_component_rich_style("rowgrid--header"),
            self.get_component_rich_style("rowgrid--even-row"),
            self.get_component_rich_style("rowgrid--odd-row"),
            self.get_component_rich_style("rowgrid--cursor"),
        )
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        styles = self._styles
        if styles is None:  # render_line called directly (not through render_lines)
            self.render_lines(Region(0, 0, 0, 0))
            styles = self._styles
        assert styles is not None
        base, header, even, odd, cursor = styles
        width = self.size.width
        scroll_x = int(self.scroll_x)
        if y == 0:
            line_style = base + header
            strip = self._header_strip(line_style)
        else:
            index = int(self.scroll_y) + y - 1
            if index >= len(self.keys):
                return Strip.blank(width, base)
            line_style = base + (odd if index % 2 else even)
            if index == self.cursor_row:
                line_style += cursor
            strip = self._row_strip(self.keys[index], line_style)
        return strip.crop_extend(scroll_x, scroll_x + width, line_style)

    def _header_strip(self, style: Style) -> Strip:
        state = (style, self._layout, tuple(self._widths))
        if self._header is not None and self._header[0] == state:
            return self._header[1]
        console = self.app.console
        segments: list[Segment] = []
        for label, width in zip(self.labels, self._widths):
            segments.extend(_cell_segments(label, width, style, console))
        strip = Strip(segments, self.total_width)
        self._header = (state, strip)
        return strip

    def _row_strip(self, key: str, row_style: Style) -> Strip:
        cells = self._cells_of(key)
        state = (row_style, self._layout)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is cells and cached[1] == state:
            return cached[2]
        self.lines_rendered += 1
        if self._grow_auto_widths(cells):
            state = (row_style, self._layout)
        console = self.app.console
        segments: list[Segment] = []
        for cell, width in zip(cells, self._widths):
            segments.extend(_cell_segments(cell.text, width, row_style, console))
        for width in self._widths[len(cells):]:
            segments.append(Segment(" " * (width + 2 * PAD), row_style))
        strip = Strip(segments, self.total_width)
        self._cache[key] = (cells, state, strip)
        return strip

    def _grow_auto_widths(self, cells: Sequence[Cell]) -> bool:
        grown = False
        for i, (col, cell) in enumerate(zip(self.columns, cells)):
            if col.width is None:
                need = min(AUTO_WIDTH_MAX, cell_len(cell.plain()))
                if need > self._widths[i]:
                    self._widths[i] = need
                    grown = True
        if grown:
            self._layout += 1
            self._sync_virtual_size()
            self.refresh()
        return grown

    # -- input ---------------------------------------------------------------------------

    def action_cursor_by(self, step: int) -> None:
        if self.keys:
            self.move_cursor(self.cursor_row + step)

    def action_cursor_to(self, index: int) -> None:
        if self.keys:
            self.move_cursor(len(self.keys) - 1 if index < 0 else index)

    def action_page(self, direction: int) -> None:
        if self.keys:
            self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_activate(self) -> None:
        if self.keys:
            self.post_message(self.RowActivated(self, self.cursor_row))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        event.stop()
        if offset.y == 0:
            x = offset.x + int(self.scroll_x)
            for i, width in enumerate(self._widths):
                x -= width + 2 * PAD
                if x < 0:
                    self.post_message(self.HeaderClicked(self, i))
                    return
            return
        index = int(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self.keys):
            if index == self.cursor_row:
                self.post_message(self.RowActivated(self, index))
            else:
                self.move_cursor(index)


def _cell_segments(text: str | Text, width: int, style: Style, console: Console) -> list[Segment]:
    """One cell, padded or cut to ``width`` (an overlong plain cell ends in an ellipsis)."""
    pad = " " * PAD
    if isinstance(text, Text):
        if text.spans:
            return _rich_cell(text, width, style, console)
        text_style = text.style
        if text_style:
            style = style + (console.get_style(text_style, default=Style()) if isinstance(text_style, str)
                             else text_style)
        plain = text.plain
    else:
        plain = text
    if "\n" in plain:
        plain = plain.replace("\n", " ")
    length = cell_len(plain)
    if length > width:
        plain = set_cell_size(plain, width - 1) + "…" if width > 1 else set_cell_size(plain, width)
    elif length < width:
        plain = plain + " " * (width - length)
    return [Segment(pad + plain + pad, style)]


def _rich_cell(text: Text, width: int, style: Style, console: Console) -> list[Segment]:
    """A cell of several styles: Rich lays it out (rarer, slower)."""
    line = text.copy()
    line.no_wrap = True
    line.truncate(width, overflow="ellipsis", pad=True)
    segments = [Segment(" " * PAD, style)]
    for segment in line.render(console):
        seg_style = segment.style
        segments.append(Segment(segment.text, style + seg_style if seg_style else style))
    segments.append(Segment(" " * PAD, style))
    return segments


