"""The console's shell: header, tabs by number, help, pause."""

from __future__ import annotations

from typing import Any

from textual.widgets import TabbedContent

from ezmsg_console.tui.header import ConsoleHeader
from ezmsg_console.tui.help import HelpScreen

from .conftest import wait_until


async def test_header_shows_the_connection_and_counts(console: Any) -> None:
    async with console() as (app, pilot):
        text = app.query_one(ConsoleHeader).render()
        plain = str(text)
        assert "connected" in plain and "procs 3" in plain and "units 4" in plain and "edges 3" in plain
        for key, tab in (("2", "topology"), ("3", "profiling"), ("4", "processes"), ("1", "settings")):
            await pilot.press(key)
            assert app.query_one(TabbedContent).active == tab


async def test_help_lists_the_keys_of_the_current_tab(console: Any) -> None:
    async with console() as (app, pilot):
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help screen")
        keys = {(section, key) for section, key, _desc in app.screen.entries}
        assert {("Tables", "/"), ("Tables", "I"), ("Tables", "c"), ("Everywhere", "p"), ("Everywhere", "?"),
                ("Everywhere", "ctrl+p")} <= keys
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_pause_stops_redraws_while_data_keeps_arriving(console: Any) -> None:
    async with console() as (app, pilot):
        await pilot.press("p")
        assert "PAUSED" in str(app.query_one(ConsoleHeader).render())
        frozen = app.redraws
        before = app.monitor.state.profiling_time
        await wait_until(pilot, lambda: app.monitor.state.profiling_time > before + 0.4, "profiling data while paused")
        assert app.redraws == frozen
        await pilot.press("p")
        await wait_until(pilot, lambda: app.redraws > frozen, "a redraw after resuming")
