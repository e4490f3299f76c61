"""The console (real Textual app, driven by its pilot) on a real ezmsg 3.9 pipeline: every tab,
a keyboard edit applied and an out-of-range one refused, tracing on and off, n/a for what ezmsg
does not measure, and recovery after the ezmsg GraphServer restarts."""

from __future__ import annotations

from typing import Any

import pytest

from ezmsg_console.client.monitor import ConnState
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
