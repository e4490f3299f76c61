"""The Settings tab on the real demo: list, keyboard edit, validation, refusal, undo, diff, read-only.

Tests read the current values first (earlier tests may have edited them) and
only assume the demo's schema (cutoff_hz: float in [0.5, 200] Hz).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from textual.widgets import OptionList

from ezmsg_console.tui.editor import DiffScreen, EditorScreen
from ezmsg_console.tui.settings import SettingsPane
from ezmsg_console.tui.table import LiveTable

from .conftest import DEMO_UNITS, wait_until

FILTER = "DEMO/FILTER"


def _pane(app: Any) -> SettingsPane:
    return app.query_one("#pane-settings", SettingsPane)


def _cutoff(app: Any) -> float:
    return float(app.monitor.state.settings[FILTER].value.structured_value["cutoff_hz"])


def _seq(app: Any) -> int:
    return int(app.monitor.state.settings[FILTER].seq)


def _keys_to(table: LiveTable, key: str) -> list[str]:
    """The keys that move the cursor to ``key``: top, then down."""
    return ["g", *["j"] * table.shown_keys.index(key)]


async def _move_to(pilot: Any, table: LiveTable, key: str) -> None:
    await wait_until(pilot, lambda: key in table.shown_keys, f"{key} listed")
    await pilot.press(*_keys_to(table, key))
    assert table.selected_key == key, f"could not reach {key} in {table.shown_keys}"


async def _open_field(app: Any, pilot: Any, component: str, field: str) -> SettingsPane:
    """Keyboard only: focus the tab, pick the component, enter (to its fields), pick the field."""
    pane = _pane(app)
    components, fields = pane.table("components"), pane.table("fields")
    await wait_until(pilot, lambda: component in components.shown_keys, f"{component} listed")
    await pilot.press("1", *_keys_to(components, component), "enter")
    assert pane.selected == component and fields.table.has_focus
    await _move_to(pilot, fields, field)
    return pane


async def _type(pilot: Any, text: str) -> None:
    await pilot.press(*list(text))


def _new_cutoff(app: Any) -> float:
    """An in-range value different from both the current and the initial one."""
    initial = app.monitor.state.initial_settings[FILTER]["cutoff_hz"]
    return next(v for v in (42.5, 37.25, 55.0) if v not in (_cutoff(app), initial))


async def test_lists_the_components_with_settings(console: Any) -> None:
    async with console() as (app, pilot):
        pane = _pane(app)
        components = pane.table("components")
        await wait_until(pilot, lambda: DEMO_UNITS <= set(components.shown_keys), "the 4 demo units")
        demo_has_settings = app.monitor.state.settings["DEMO"].value.structured_value is not None
        assert ("DEMO" in components.shown_keys) == demo_has_settings
        for unit in DEMO_UNITS:
            assert components.row_as_dict(unit)["edit"] is True and components.row_as_dict(unit)["kind"] == "unit"
        app.show_tab("settings", "DEMO/FILTER/OUTPUT")  # a topic selects its unit
        await wait_until(pilot, lambda: pane.selected == FILTER, "DEMO/FILTER selected")
        fields = pane.table("fields")
        await wait_until(pilot, lambda: set(fields.shown_keys) == {"cutoff_hz", "order", "mode", "sample_rate_hz"},
                         "the filter's fields")
        row = fields.row_as_dict("cutoff_hz")
        assert row["limits"] == "[0.5, 200] Hz" and row["type"] == "float"
        name, rows = pane.export_rows()
        assert name == "settings" and {r["field"] for r in rows} == set(fields.shown_keys)
        assert next(r for r in rows if r["field"] == "sample_rate_hz")["read_only"] is True

        # A read-only field does not open an editor, and says why.
        await pilot.press("l")
        await _move_to(pilot, fields, "sample_rate_hz")
        await pilot.press("e")
        assert not isinstance(app.screen, EditorScreen)
        assert "sample_rate_hz is read-only" in str(pane.query_one("#settings-status").render())

        # An enum gets a list of its choices; esc cancels without sending anything.
        seq = _seq(app)
        await _move_to(pilot, fields, "mode")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the mode editor")
        assert app.screen.kind == "choice" and isinstance(app.screen.query_one("#value"), OptionList)
        await pilot.press("escape")
        assert not isinstance(app.screen, EditorScreen) and _seq(app) == seq


async def test_edit_by_keyboard_then_diff_and_undo(console: Any) -> None:
    async with console() as (app, pilot):
        pane = await _open_field(app, pilot, FILTER, "cutoff_hz")
        before, seq = _cutoff(app), _seq(app)
        new = _new_cutoff(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the editor")
        editor = app.screen
        assert editor.kind == "float" and editor.seq == seq
        await _type(pilot, str(new))  # the current text is selected: typing replaces it
        assert editor.reason is None and editor.candidate == new
        await pilot.press("enter")
        await wait_until(pilot, lambda: _cutoff(app) == new, "the new cutoff in the unit")
        new_seq = _seq(app)
        assert new_seq > seq
        states = {s.component_address: s for s in await app.monitor.ctx.settings_snapshot()}  # asks the server
        assert states[FILTER].value.structured_value["cutoff_hz"] == new
        history = pane.table("history")
        await wait_until(pilot, lambda: str(new_seq) in history.shown_keys, "the edit in the history panel")
        assert history.row_as_dict(str(new_seq))["source"] == "you"
        assert "cutoff_hz" in history.row_as_dict(str(new_seq))["changes"]
        fields = pane.table("fields")
        await wait_until(pilot, lambda: fields.row_as_dict("cutoff_hz")["value"] == new, "the row's new value")

        await pilot.press("d")
        assert isinstance(app.screen, DiffScreen)
        assert "cutoff_hz" in app.screen.text and f"{new:g}" in app.screen.text
        await pilot.press("escape", "u")
        assert not isinstance(app.screen, DiffScreen)
        await wait_until(pilot, lambda: _cutoff(app) == before, "the undone cutoff")
        assert _seq(app) > new_seq


async def test_out_of_range_value_is_refused_while_typing_and_stale_edits_are_refused(console: Any) -> None:
    async with console() as (app, pilot):
        pane = await _open_field(app, pilot, FILTER, "cutoff_hz")
        before, seq = _cutoff(app), _seq(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the editor")
        editor = app.screen
        await _type(pilot, "5000")
        assert editor.reason == "cutoff_hz: expected a float in [0.5, 200], got 5000.0"
        assert "expected a float in [0.5, 200]" in str(editor.query_one("#reason").render())
        await pilot.press("enter")  # refused locally: the editor stays, nothing is sent
        assert app.screen is editor and "fix it" in str(editor.query_one("#reason").render())
        assert _seq(app) == seq and _cutoff(app) == before and not pane.errors

        # Someone else changes the unit while our editor is open: the server refuses ours (Conflict),
        # since the editor sends the seq it showed.
        other = _new_cutoff(app)
        await app.monitor.update_setting(FILTER, "cutoff_hz", other, record_undo=False)  # not through the tab
        await wait_until(pilot, lambda: _cutoff(app) == other, "the other client's edit")
        current = editor.query_one("#current")  # the open editor shows the new current value
        await wait_until(pilot, lambda: f"{other:g}" in str(current.render()) and "changed since this editor opened"
                         in str(current.render()), "the editor's current value updated")
        await pilot.press("ctrl+u", *"12.5")
        assert editor.reason is None
        await pilot.press("enter")
        await wait_until(pilot, lambda: (FILTER, "cutoff_hz") in pane.errors, "the refusal")
        assert "CONFLICT" in pane.errors[(FILTER, "cutoff_hz")] and _cutoff(app) == other
        fields = pane.table("fields")
        await wait_until(pilot, lambda: "refused" in fields.row_as_dict("cutoff_hz")["note"], "the refusal in the row")
        assert "refused" in str(pane.query_one("#settings-status").render())
        await app.monitor.update_setting(FILTER, "cutoff_hz", before, record_undo=False)  # put it back
        await wait_until(pilot, lambda: _cutoff(app) == before, "the cutoff put back")
        drawn = app.redraws
        await wait_until(pilot, lambda: app.redraws > drawn, "a redraw before leaving")


async def test_read_only_console_refuses_edits(console: Any) -> None:
    async with console(read_only=True) as (app, pilot):
        pane = await _open_field(app, pilot, FILTER, "cutoff_hz")
        seq = _seq(app)
        await pilot.press("enter", "e")
        assert not isinstance(app.screen, EditorScreen)
        assert "read-only console" in str(pane.query_one("#settings-status").render())
        await pilot.press("u")
        assert "read-only" in str(pane.query_one("#settings-status").render())
        assert _seq(app) == seq and not app.monitor.undo_stack


async def test_undo_never_overwrites_another_operators_change_and_is_labelled_you(console: Any, demo: Any) -> None:
    """u carries the seq of this console's own last change, like every edit: after a CLI user's
    change it is refused with the conflict display; an undo that goes through is "you" in history."""
    from ezmsg_console.client import GraphContext

    from ..conftest import TIMEOUT

    async with console() as (app, pilot):
        pane = await _open_field(app, pilot, FILTER, "cutoff_hz")
        before = _cutoff(app)

        async def edit_by_keyboard(value: float) -> None:
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the editor")
            await _type(pilot, str(value))
            await pilot.press("enter")
            await wait_until(pilot, lambda: _cutoff(app) == value, f"cutoff {value} in the unit")

        mine = _new_cutoff(app)
        await edit_by_keyboard(mine)
        theirs = next(v for v in (44.0, 46.5, 48.0) if v not in (mine, before))
        async with GraphContext(demo.address, timeout=TIMEOUT, name="cli-user") as other:
            await other.update_setting(FILTER, "cutoff_hz", theirs)
        await wait_until(pilot, lambda: _cutoff(app) == theirs, "the other operator's change")
        await pilot.press("u")
        await wait_until(pilot, lambda: (FILTER, "cutoff_hz") in pane.errors, "the undo refused")
        assert "CONFLICT" in pane.errors[(FILTER, "cutoff_hz")]
        assert "refused: CONFLICT" in str(pane.query_one("#settings-status").render())  # as for an edit
        assert _cutoff(app) == theirs  # their change stands

        again = next(v for v in (41.0, 43.5, 45.5) if v not in (theirs, before))
        await edit_by_keyboard(again)  # this console's change again: now the undo may go through
        await pilot.press("u")
        await wait_until(pilot, lambda: _cutoff(app) == theirs, "the undo of our own change")
        undo_seq = _seq(app)
        history = pane.table("history")
        await wait_until(pilot, lambda: str(undo_seq) in history.shown_keys, "the undo in the history panel")
        assert history.row_as_dict(str(undo_seq))["source"] == "you"
        await app.monitor.update_setting(FILTER, "cutoff_hz", before, record_undo=False)  # put it back
        await wait_until(pilot, lambda: _cutoff(app) == before, "the cutoff put back")


async def test_after_a_server_restart_history_restarts_and_you_stays_yours() -> None:
    """A new server epoch: the old history is kept, marked as the previous epoch's; the new
    server's events (whose seqs start again at 1) are added, and only this console's own changes
    are "you", in either epoch."""
    from ezmsg_console.client.monitor import ConnState
    from ezmsg_console.runtime.embedded import EmbeddedDemo
    from ezmsg_console.server import GraphServer

    from ..conftest import TIMEOUT
    from .conftest import open_console

    first = GraphServer("127.0.0.1:0")
    address = first.start_in_thread(TIMEOUT)
    second = None
    pipeline = EmbeddedDemo(address)
    pipeline.start_pipeline_only()
    try:
        async with open_console(address) as (app, pilot):
            pane = await _open_field(app, pilot, FILTER, "cutoff_hz")
            new = _new_cutoff(app)
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the editor")
            await _type(pilot, str(new))
            await pilot.press("enter")
            await wait_until(pilot, lambda: _cutoff(app) == new, "our edit in the unit")
            mine_before = _seq(app)
            old_epoch = app.monitor.state.server_epoch

            first.stop_thread()  # the GraphServer restarts; the workers and this console reconnect
            second = GraphServer(str(address))
            second.start_in_thread(TIMEOUT)
            await wait_until(pilot, lambda: app.monitor.state.server_epoch not in ("", old_epoch)
                             and app.monitor.state.conn_state is ConnState.CONNECTED
                             and FILTER in app.monitor.state.settings
                             and FILTER in app.monitor.state.settings_history, "the new epoch's settings",
                             timeout=3 * TIMEOUT)
            components = pane.table("components")
            await wait_until(pilot, lambda: FILTER in components.shown_keys, "FILTER listed again")
            pane.show(FILTER)  # (the selection may have moved while the components were reloaded)
            await wait_until(pilot, lambda: pane.selected == FILTER, "FILTER selected")
            history = pane.table("history")
            old_key = f"{old_epoch[:8]}:{mine_before}"
            await wait_until(pilot, lambda: old_key in history.shown_keys, "the previous epoch's history")
            assert history.row_as_dict(old_key)["source"] == "you"  # our edit, in the epoch it was made
            await wait_until(pilot, lambda: _cutoff(app) == new, "the worker's re-report of our value")
            new_events = list(app.monitor.state.settings_history[FILTER])
            assert new_events and all(e.server_epoch != old_epoch for e in new_events if e.server_epoch)
            for event in new_events:  # the new server's events, seqs from 1 again: none is "you"
                await wait_until(pilot, lambda e=event: str(e.seq) in history.shown_keys, f"seq {event.seq} shown")
                assert history.row_as_dict(str(event.seq))["source"] != "you"
            await app.shutdown()
    finally:
        pipeline.stop()
        first.stop_thread()
        if second is not None:
            second.stop_thread()


async def test_number_fields_show_and_refuse_what_they_cannot_take(console: Any) -> None:
    """'2.5' in an int, '1,5' in a float: kept as typed, refused with the reason, nothing sent."""
    from textual.widgets import Input

    async with console() as (app, pilot):
        await _open_field(app, pilot, "DEMO/FEATURES", "window_chunks")
        seq = int(app.monitor.state.settings["DEMO/FEATURES"].seq)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the int editor")
        editor = app.screen
        await _type(pilot, "2.5")
        assert editor.query_one(Input).value == "2.5"  # not silently dropped to "25"
        assert editor.reason == "not an integer: '2.5' (whole numbers only)"
        await pilot.press("enter")
        assert app.screen is editor and int(app.monitor.state.settings["DEMO/FEATURES"].seq) == seq
        await pilot.press("ctrl+u", *"1e1")
        assert editor.reason == "not an integer: '1e1' (whole numbers only: 10?)"
        await pilot.press("escape")
        pane = _pane(app)
        await pilot.press("escape")
        await _open_field(app, pilot, FILTER, "cutoff_hz")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the float editor")
        editor = app.screen
        await _type(pilot, "1,5")
        assert editor.reason == "not a number: '1,5' (use a dot for decimals: '1.5')"
        await pilot.press("escape")
        assert pane is _pane(app)


async def test_arrow_keys_step_a_number_within_its_bounds(console: Any) -> None:
    async with console() as (app, pilot):
        await _open_field(app, pilot, FILTER, "cutoff_hz")  # a float in [0.5, 200]: steps of 1.995
        before = _cutoff(app)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the editor")
        editor = app.screen
        await pilot.press("up", "up")
        assert editor.candidate == pytest.approx(before + 2 * 1.995) and editor.reason is None
        await pilot.press("down")
        assert editor.candidate == pytest.approx(before + 1.995)
        await pilot.press("ctrl+u", *"199", "up", "up")  # stops at the upper bound
        assert editor.candidate == 200.0 and editor.reason is None
        await pilot.press("escape")
        assert _cutoff(app) == before  # nothing applied


async def test_a_stopped_pipeline_leaves_no_ghost_settings_and_no_invented_change() -> None:
    """The pipeline stops: its workers leave (the server falls back to the declared initial values,
    which is nobody's change: not shown as one), then its session: its components leave Settings."""
    from ezmsg_console.runtime.embedded import EmbeddedDemo
    from ezmsg_console.server import GraphServer

    from ..conftest import TIMEOUT
    from .conftest import open_console

    server = GraphServer("127.0.0.1:0")
    address = server.start_in_thread(TIMEOUT)
    pipeline = EmbeddedDemo(address)
    pipeline.start_pipeline_only()
    try:
        async with open_console(address) as (app, pilot):
            new = _new_cutoff(app)
            await app.monitor.update_setting(FILTER, "cutoff_hz", new)
            await wait_until(pilot, lambda: _cutoff(app) == new, "our edit in the unit")
            pane = _pane(app)
            components = pane.table("components")
            await wait_until(pilot, lambda: FILTER in components.shown_keys, "FILTER listed")
            await asyncio.to_thread(pipeline.stop)
            await wait_until(pilot, lambda: FILTER not in app.monitor.state.settings
                             and FILTER not in components.shown_keys, "the stopped pipeline's settings gone",
                             timeout=3 * TIMEOUT)
            history = list(app.monitor.state.settings_history.get(FILTER, ()))
            assert history and history[-1].source_process_id is not None  # the last change is the unit's own
            assert history[-1].value.structured_value["cutoff_hz"] == new  # no change back to the default
            await app.shutdown()
    finally:
        pipeline.stop()
        server.stop_thread()
