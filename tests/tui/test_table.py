"""LiveTable and its RowGrid in a real Textual app (no server needed): what is drawn, what is
re-rendered on an update, and that the cursor never loses its row."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from ezmsg_console.tui.table import Cell, Column, LiveTable

COLUMNS = [Column("name", "Name", 10), Column("rate", "Rate", 6), Column("note", "Note", None)]


def record_cells(key: str, record: tuple[str, float, str]) -> tuple[Cell, ...]:
    name, rate, note = record
    return (Cell(name), Cell(rate, Text(f"{rate:g}", style="red" if rate > 100 else "")), Cell(note))


def sort_value(record: tuple[str, float, str], column: int) -> Any:
    return record[column]


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.activated: list[str] = []
        self.selected: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield LiveTable(COLUMNS, id="t")

    @property
    def table(self) -> LiveTable:
        return self.query_one(LiveTable)

    def on_live_table_activated(self, event: LiveTable.Activated) -> None:
        self.activated.append(event.key)

    def on_live_table_selected(self, event: LiveTable.Selected) -> None:
        self.selected.append(event.key)


def rows(n: int, rate: float = 1.0) -> dict[str, tuple[str, float, str]]:
    return {f"k{i:04d}": (f"row{i:04d}", rate + i, "") for i in range(n)}


def line(table: LiveTable, y: int) -> str:
    grid = table.table
    return grid.render_lines(grid.size.region)[y].text


async def test_draws_the_header_and_the_rows_cut_to_their_columns() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.table
        table.set_rows({"a": ("alpha-long-name-x", 150.0, "auto width grows"), "b": ("beta", 2.0, "")},
                       record_cells, sort_value)
        table.table.focus()
        await pilot.pause()
        header, first, second = line(table, 0), line(table, 1), line(table, 2)
        assert header.split() == ["Name", "▲", "Rate", "Note"]
        assert first.startswith(" alpha-lon… ") and "150" in first and "auto width grows" in first
        assert second.split() == ["beta", "2"]
        assert len(header) == 60  # the line is filled to the widget's width


async def test_an_update_re_renders_only_the_rows_that_changed() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.table
        data = rows(5)
        table.set_rows(data, record_cells, sort_value)
        await pilot.pause()
        grid = table.table
        assert "row0002" in line(table, 3)
        built, rendered = table.updates, grid.lines_rendered
        data = dict(data)
        data["k0002"] = ("row0002", 77.0, "new")  # fits the Note column: no re-layout
        table.set_rows(data, record_cells, sort_value)
        await pilot.pause()
        assert table.updates - built == 1  # one record rebuilt
        assert grid.lines_rendered - rendered == 1  # one line rendered again; the rest came from the cache
        assert line(table, 3).split() == ["row0002", "77", "new"]


async def test_a_big_table_builds_only_the_rows_on_screen() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.table
        table.set_rows(rows(5000), record_cells, sort_value)
        await pilot.pause()
        assert len(table.shown_keys) == 5000
        assert 0 < table.updates <= 12  # 11 visible rows, not 5,000
        built = table.updates
        await pilot.press("G")
        await pilot.pause()
        assert table.selected_key == "k4999" and "row4999" in line(table, 11)
        assert table.updates - built <= 12


async def test_the_cursor_stays_on_its_row_across_re_sorts_updates_and_filters() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.table
        table.set_rows(rows(20), record_cells, sort_value)
        table.table.focus()
        await pilot.press("j", "j", "j")
        assert table.selected_key == "k0003"
        await pilot.press("greater_than_sign", "I")  # sort by rate, descending
        assert table.shown_keys[0] == "k0019" and table.selected_key == "k0003"
        data = rows(20)
        data["k0003"] = ("row0003", 1000.0, "")  # now first by rate
        table.set_rows(data, record_cells, sort_value)
        assert table.shown_keys[0] == "k0003" and table.selected_key == "k0003"
        await pilot.press("slash", *"row000")
        assert len(table.shown_keys) == 10 and table.selected_key == "k0003"
        await pilot.press("escape")
        assert len(table.shown_keys) == 20 and table.selected_key == "k0003"
        await pilot.pause()
        assert app.selected[-1] == "k0003"


async def test_keys_and_clicks_move_activate_and_sort() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.table
        table.set_rows(rows(30), record_cells, sort_value)
        table.table.focus()
        await pilot.press("pagedown")
        assert table.selected_key == "k0010"  # a page: the 11 visible rows less one
        await pilot.press("end")
        assert table.selected_key == "k0029"
        await pilot.press("home", "down", "enter")
        await pilot.pause()
        assert app.activated == ["k0001"]
        await pilot.click(table.table, offset=(3, 3))  # the third row: moves the cursor there
        await pilot.pause()
        assert table.selected_key == "k0002" and app.activated == ["k0001"]
        await pilot.click(table.table, offset=(3, 3))  # again: activates it
        await pilot.pause()
        assert app.activated == ["k0001", "k0002"]
        await pilot.click(table.table, offset=(14, 0))  # the Rate header: sort by it
        await pilot.pause()
        assert table.sort_index == 1 and not table.reverse
        await pilot.click(table.table, offset=(14, 0))  # again: inverted
        await pilot.pause()
        assert table.reverse and table.shown_keys[0] == "k0029" and table.selected_key == "k0002"


def test_the_sort_arrow_is_never_cut_off_in_a_narrow_column() -> None:
    from ezmsg_console.tui.table import LiveTable, columns

    table = LiveTable(columns([("name", "a long column name", 8), ("rate", "rate", None)]), sort_column=0)
    label = table._label(table.columns[0])
    assert label.plain.endswith(" ▲") and label.cell_len <= 8, label.plain
    table.reverse = True
    assert table._label(table.columns[0]).plain.endswith(" ▼")
    assert table._label(table.columns[1]).plain == "rate"
