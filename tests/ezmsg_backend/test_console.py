"""The console (real Textual app, driven by its pilot) on a real ezmsg 3.9 pipeline: every tab,
a keyboard edit applied and an out-of-range one refused, tracing on and off, n/a for what ezmsg
does not measure, and recovery after the ezmsg GraphServer restarts."""

from __future__ import annotations

from typing import Any

import pytest

from textual.widgets import OptionList, Switch

from ezmsg_console.client.monitor import ConnState
from ezmsg_console.protocol.errors import PermissionDenied
from ezmsg_console.tui.editor import EditorScreen
from ezmsg_console.tui.header import header_text
from ezmsg_console.tui.processes import ProcessesPane
from ezmsg_console.tui.profiling import ProfilingPane
from ezmsg_console.tui.profiling_rows import PUB_COLUMNS
from ezmsg_console.tui.settings import SettingsPane
from ezmsg_console.tui.table import LiveTable
from ezmsg_console.tui.topology import TopologyPane

from ..conftest import TIMEOUT
from ..tui.conftest import open_console, wait_until
from .conftest import DEMO_UNITS

pytest.importorskip("ezmsg")

GEN = "DEMO/GEN"
EDGES = {"DEMO/GEN/OUTPUT -> DEMO/FILTER/INPUT", "DEMO/FILTER/OUTPUT -> DEMO/STATS/INPUT"}


def console(pipeline: Any, **kwargs: Any) -> Any:
    return open_console(pipeline.server.address, backend="ezmsg", **kwargs)


def _rate(app: Any) -> float:
    return float(app.monitor.state.settings[GEN].value.structured_value["rate_hz"])


async def _to(pilot: Any, table: LiveTable, key: str) -> None:
    await wait_until(pilot, lambda: key in table.shown_keys, f"{key} listed")
    await pilot.press("g", *["j"] * table.shown_keys.index(key))
    assert table.selected_key == key


def _header(app: Any) -> str:
    return header_text(app.monitor.state, embedded=False, paused=False, read_only=False,
                       profiling_interval=1.0).plain


async def test_every_tab_shows_the_ezmsg_pipeline(shared_pipeline: Any) -> None:
    async with console(shared_pipeline) as (app, pilot):
        assert f"ezmsg {shared_pipeline.server.version} @ {shared_pipeline.server.address}" in _header(app)
        settings = app.query_one(SettingsPane)
        components = settings.table("components")
        await wait_until(pilot, lambda: {GEN, "DEMO/FILTER"} <= set(components.shown_keys), "the dynamic units")
        assert components.row_as_dict(GEN)["edit"] is True

        await pilot.press("2")
        topology = app.query_one(TopologyPane)
        await wait_until(pilot, lambda: EDGES <= set(topology.edges.shown_keys) and "SINK" in topology.graph_text,
                         "the ezmsg topology drawn")
        assert all(f"u:{u}" in topology.tree.shown_keys for u in DEMO_UNITS)

        await pilot.press("3")
        profiling = app.query_one(ProfilingPane)

        def live() -> bool:
            rows = {r["topic"]: r for r in profiling.publishers.visible_rows()}
            return ((rows.get("DEMO/GEN/OUTPUT") or {}).get("rate") or 0) > 0
        await wait_until(pilot, live, "GEN's publish rate")
        key = next(k for k in profiling.publishers.shown_keys
                   if profiling.publishers.row(k)[1].raw == "DEMO/GEN/OUTPUT")  # type: ignore[index]
        cells = {c[0]: v.plain() for c, v in zip(PUB_COLUMNS, profiling.publishers.row(key))}  # type: ignore[arg-type]
        assert cells["bytes"] == "n/a" and cells["waits"] == "n/a" and cells["chan"] == "n/a"
        assert cells["inflight"].endswith(tuple("0123456789"))  # measured upstream: a real number

        await pilot.press("4")
        processes = app.query_one(ProcessesPane)

        def polled() -> bool:
            rows = processes.processes.visible_rows()
            return len(rows) == 4 and all((r["ping"] or 0) > 0 and (r["memory"] or 0) > 0 for r in rows)
        await wait_until(pilot, polled, "4 ezmsg processes with ping and memory")
        rows = processes.processes.visible_rows()
        assert {u for r in rows for u in r["units"].split(", ")} == set(DEMO_UNITS)
        assert {r["pid"] for r in rows} <= set(shared_pipeline.worker_pids)


async def test_keyboard_edit_is_applied_and_out_of_range_is_refused(shared_pipeline: Any) -> None:
    async with console(shared_pipeline) as (app, pilot):
        pane = app.query_one(SettingsPane)
        components, fields = pane.table("components"), pane.table("fields")
        await wait_until(pilot, lambda: GEN in components.shown_keys, "GEN listed")
        await pilot.press("1", "g", *["j"] * components.shown_keys.index(GEN), "enter")
        assert pane.selected == GEN
        await _to(pilot, fields, "rate_hz")
        assert fields.row_as_dict("rate_hz")["limits"].startswith("[1, 1000]")
        before = _rate(app)
        new = next(v for v in (42.5, 37.25) if v != before)

        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the editor")
        editor = app.screen
        await pilot.press(*"5000")
        assert editor.reason == "rate_hz: expected a float in [1, 1000], got 5000.0"
        await pilot.press("enter")  # refused here: nothing is sent
        assert app.screen is editor and _rate(app) == before and not pane.errors
        await pilot.press("ctrl+u", *str(new), "enter")
        await wait_until(pilot, lambda: _rate(app) == new, "the settings event with the new rate")
        assert not isinstance(app.screen, EditorScreen)
        states = {s.component_address: s for s in await app.monitor.ctx.settings_snapshot()}  # asks ezmsg
        assert states[GEN].value.structured_value["rate_hz"] == new
        history = pane.table("history")
        await wait_until(pilot, lambda: any("rate_hz" in str(r.get("changes")) for r in history.visible_rows()),
                         "the edit in the history")
        await pilot.press("u")  # undo puts it back through ezmsg too
        await wait_until(pilot, lambda: _rate(app) == before, "the undone rate")


async def test_t_traces_a_subscriber_and_fills_its_handler_percentiles(shared_pipeline: Any) -> None:
    async with console(shared_pipeline) as (app, pilot):
        await pilot.press("3")
        pane = app.query_one(ProfilingPane)
        subs = pane.subscribers
        await wait_until(pilot, lambda: any(subs.row(k)[1].raw == "DEMO/FILTER/INPUT"  # type: ignore[index]
                                            for k in subs.shown_keys), "FILTER's input listed")
        pane.show("DEMO/FILTER/INPUT")
        key = pane.selected_key
        assert "handler n/a until traced" in pane.detail_plain and "latency n/a" in pane.detail_plain
        await pilot.press("t")
        await wait_until(pilot, lambda: key in app.monitor.state.traced, "tracing on")
        await wait_until(pilot, lambda: "handler p50" in pane.detail_plain and "◉ on," in pane.detail_plain,
                         "handler percentiles from the trace samples")
        await wait_until(pilot, lambda: subs.row(key)[8].plain() not in ("-", "n/a"),  # type: ignore[index]
                         "the handler column filled")
        await pilot.press("t")
        await wait_until(pilot, lambda: key not in app.monitor.state.traced and "trace   off" in pane.detail_plain,
                         "tracing off")
        snap = await app.monitor.ctx.process_profiling_snapshot("DEMO/FILTER")
        assert snap.trace is None


async def test_the_console_reconnects_after_the_ezmsg_server_restarts(ezmsg_pipeline: Any) -> None:
    async with console(ezmsg_pipeline) as (app, pilot):
        epoch = app.monitor.state.server_epoch
        ezmsg_pipeline.server.kill()
        await wait_until(pilot, lambda: app.monitor.state.conn_state is not ConnState.CONNECTED, "the loss seen")
        await wait_until(pilot, lambda: "reconnecting" in _header(app) or "down" in _header(app),
                         "the header saying so", timeout=TIMEOUT)
        ezmsg_pipeline.server.start(port=ezmsg_pipeline.server.port)
        await wait_until(pilot, lambda: app.monitor.state.conn_state is ConnState.CONNECTED
                         and app.monitor.state.server_epoch != epoch, "connected to the new server",
                         timeout=3 * TIMEOUT)
        assert "connected" in _header(app) and "STALE" not in _header(app)


async def _open_field(app: Any, pilot: Any, component: str, path: str) -> SettingsPane:
    """Keyboard only: the Settings tab, the component, enter (to its fields), the field."""
    pane = app.query_one(SettingsPane)
    components, fields = pane.table("components"), pane.table("fields")
    await wait_until(pilot, lambda: component in components.shown_keys, f"{component} listed")
    await pilot.press("1", "g", *["j"] * components.shown_keys.index(component), "enter")
    assert pane.selected == component
    await _to(pilot, fields, path)
    return pane


def _value(app: Any, component: str, path: str) -> Any:
    value = app.monitor.state.settings[component].value.structured_value
    for part in path.split("."):
        value = value[part]
    return value


def _status(pane: SettingsPane) -> str:
    return str(pane.query_one("#settings-status").render())


async def test_editors_follow_the_upstream_schema(shared_pipeline: Any) -> None:
    """Literal -> a list of its choices, bool -> a switch, a nested dataclass field -> its own
    bounds; a unit without INPUT_SETTINGS cannot be edited, and says why."""
    async with console(shared_pipeline) as (app, pilot):
        pane = await _open_field(app, pilot, GEN, "waveform")
        before = _value(app, GEN, "waveform")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the waveform editor")
        options = app.screen.query_one("#value", OptionList)
        choices = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert choices == ["sine", "square", "noise"] and choices[options.highlighted or 0] == before
        new = next(c for c in choices if c != before)
        while choices[options.highlighted or 0] != new:
            await pilot.press("down")
        await pilot.press("enter")
        await wait_until(pilot, lambda: _value(app, GEN, "waveform") == new, "the new waveform from ezmsg")
        await app.monitor.update_setting(GEN, "waveform", before, record_undo=False)
        await wait_until(pilot, lambda: _value(app, GEN, "waveform") == before, "the waveform put back")

        await _to(pilot, pane.table("fields"), "enabled")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the enabled editor")
        assert isinstance(app.screen.query_one("#value"), Switch)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, EditorScreen), "the editor closed")

        pane = await _open_field(app, pilot, "DEMO/FILTER", "window.length")
        # upstream describes top-level fields only: the nested one is typed from its value, and says so
        row = pane.table("fields").row_as_dict("window.length")
        assert row["type"] == "int" and "inferred from the current value" in row["note"]
        before = _value(app, "DEMO/FILTER", "window.length")
        new = 7 if before != 7 else 9
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen), "the window.length editor")
        editor = app.screen
        await pilot.press("ctrl+u", *"abc")
        assert editor.reason is not None and "not an integer" in editor.reason  # refused here
        await pilot.press("enter")
        assert app.screen is editor
        await pilot.press("ctrl+u", *str(new), "enter")
        await wait_until(pilot, lambda: _value(app, "DEMO/FILTER", "window.length") == new, "the nested edit")
        states = {s.component_address: s for s in await app.monitor.ctx.settings_snapshot()}
        assert states["DEMO/FILTER"].value.structured_value["window"] == {"length": new, "kind": "hann"}
        await app.monitor.update_setting("DEMO/FILTER", "window.length", before, record_undo=False)
        await wait_until(pilot, lambda: _value(app, "DEMO/FILTER", "window.length") == before, "put back")

        pane = await _open_field(app, pilot, "DEMO/STATS", "decimate")
        await pilot.press("enter")
        assert not isinstance(app.screen, EditorScreen)
        assert "no dynamic settings" in _status(pane)


async def test_read_only_console_on_ezmsg_sends_nothing(shared_pipeline: Any) -> None:
    async with console(shared_pipeline, read_only=True) as (app, pilot):
        assert "READ-ONLY" in str(app.header.render())
        pane = await _open_field(app, pilot, GEN, "rate_hz")
        seq = app.monitor.state.settings[GEN].seq
        await pilot.press("enter", "e")
        assert not isinstance(app.screen, EditorScreen) and "read-only console" in _status(pane)
        await pilot.press("u")
        assert "read-only" in _status(pane) and not app.monitor.undo_stack
        with pytest.raises(PermissionDenied):
            await app.monitor.update_setting(GEN, "rate_hz", 33.0)

        await pilot.press("3")
        profiling = app.query_one(ProfilingPane)
        await wait_until(pilot, lambda: any(profiling.subscribers.row(k)[1].raw == "DEMO/FILTER/INPUT"  # type: ignore[index]
                                            for k in profiling.subscribers.shown_keys), "FILTER's input listed")
        profiling.show("DEMO/FILTER/INPUT")
        await pilot.press("t")
        await pilot.pause()
        assert not app.monitor.state.traced and "read-only" in profiling.detail_plain
        snap = await app.monitor.ctx.process_profiling_snapshot("DEMO/FILTER")
        assert snap.trace is None  # nothing reached the pipeline
        states = {s.component_address: s for s in await app.monitor.ctx.settings_snapshot()}
        assert app.monitor.state.settings[GEN].seq == seq
        assert states[GEN].value.structured_value["rate_hz"] == _rate(app)
