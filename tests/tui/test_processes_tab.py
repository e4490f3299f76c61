"""The Processes tab: pure rows, and on the live demo every process with pid and ping, drill-down to units."""

from __future__ import annotations

from typing import Any

from textual.widgets import TabbedContent

from ezmsg_console.protocol.graph import (
    ComponentMetadata,
    ComponentType,
    GraphMetadata,
    GraphSnapshot,
    ProcessInfo,
    SessionInfo,
    StreamDirection,
    StreamMetadata,
)
from ezmsg_console.protocol.profiling import ProfilingError
from ezmsg_console.tui.processes import ProcessesPane, fmt_uptime, process_rows, unit_rows

from .conftest import DEMO_UNITS, wait_until
from .test_profiling_tab import opened


def test_process_rows_show_health_with_glyphs_and_errors() -> None:
    procs = (ProcessInfo("aaaaaa111", 10, "h1", ("U/A", "U/B"), 0.0), ProcessInfo("bbbbbb222", 11, "h2", ("U/C",), 0.0),
             ProcessInfo("cccccc333", 12, "h3", (), 0.0))
    comp = ComponentMetadata("U/A", "A", ComponentType.UNIT, "pkg.mod.Gain", streams=(
        StreamMetadata("IN", StreamDirection.INPUT, "U/A/IN"),
        StreamMetadata("OUT", StreamDirection.OUTPUT, "U/A/OUT")))
    snap = GraphSnapshot("s", "e", 1, 0.0, {}, (), (SessionInfo("x", "n", "r", "p", 0.0,
                                                                 metadata=GraphMetadata((comp,))),), procs)
    stats = {"aaaaaa111": {"uptime_s": 3700.0, "cpu_percent": 95.0, "memory_rss_bytes": 40_000_000,
                           "ping_ms": 1.5, "timestamp": 100.0, "topics": {"U/A/OUT": {"messages": 1234}}},
             "bbbbbb222": {"error": "TIMEOUT: no answer"}}
    rows = process_rows(snap, stats, {"aaaaaa111": ProfilingError("aaaaaa111", "TIMEOUT", "x")}, now=101.0)
    a = [c.text.plain for c in rows["aaaaaa111"]]
    assert a == ["aaaaaa", "10", "h1", "U/A, U/B", "1h01m", "▲ 95.0%", "40.0 MB", "1.50 ms", "✕ prof TIMEOUT"]
    b = [c.text.plain for c in rows["bbbbbb222"]]
    assert b[-1] == "✕ TIMEOUT: no answer" and b[4:8] == ["-"] * 4
    assert rows["cccccc333"][-1].text.plain == "… waiting"
    units = unit_rows(procs[0], {"U/A": comp}, stats["aaaaaa111"])
    assert [c.text.plain for c in units["U/A"]] == ["U/A", "Gain", "IN", "OUT", "1.2k"]
    assert [c.text.plain for c in units["U/B"]][1:] == ["-", "-", "-", "-"]
    assert [fmt_uptime(s) for s in (None, 5, 65, 3725, 90000)] == ["-", "5s", "1m05s", "1h02m", "1d01h"]


async def test_every_demo_process_with_its_pid_ping_and_units(console: Any) -> None:
    async with opened(console) as (app, pilot):
        await pilot.press("4")
        pane = app.query_one(ProcessesPane)

        def polled() -> bool:
            rows = pane.processes.visible_rows()
            return len(rows) == 3 and all(isinstance(r["pid"], int) and (r["ping"] or 0) > 0 for r in rows)
        await wait_until(pilot, polled, "3 processes with pids and ping times")
        rows = pane.processes.visible_rows()
        assert {u for r in rows for u in r["units"].split(", ")} == DEMO_UNITS
        assert all(r["status"] == "ok" and r["memory"] > 0 and r["uptime"] > 0 for r in rows)
        assert pane.export_rows() == ("processes", rows)
        # the units of the selected process follow the cursor
        pane.processes.table.focus()
        for key in pane.processes.shown_keys:
            pane.processes.select(key)
            await pilot.pause()
            proc = next(p for p in app.monitor.state.snapshot.processes if p.process_id == key)
            assert set(pane.units.shown_keys) == set(proc.units)


async def test_enter_drills_into_units_then_to_settings(console: Any) -> None:
    async with opened(console) as (app, pilot):
        await pilot.press("4")
        pane = app.query_one(ProcessesPane)
        await wait_until(pilot, lambda: len(pane.processes.shown_keys) == 3, "the processes")
        pane.show("DEMO/FILTER")  # a unit: its process, and the unit in the lower table
        await pilot.pause()
        owner = next(p for p in app.monitor.state.snapshot.processes if "DEMO/FILTER" in p.units)
        assert pane.processes.selected_key == owner.process_id
        assert pane.units.selected_key == "DEMO/FILTER" and pane.units.has_focus_within
        row = dict(zip([c.key for c in pane.units.columns], pane.units.row("DEMO/FILTER")))
        assert row["type"].plain() == "BandpassFilter" and "INPUT" in row["inputs"].plain()
        await pilot.press("backspace")
        assert pane.processes.has_focus_within
        await pilot.press("enter")
        assert pane.units.has_focus_within and pane.units.selected_key == sorted(owner.units)[0]
        await pilot.press("enter")
        assert app.query_one(TabbedContent).active == "settings"
        await pilot.press("4")
        assert pane.processes.has_focus_within or pane.units.has_focus_within


def test_stats_a_backend_cannot_tell_read_n_a() -> None:
    proc = ProcessInfo("dddddd444", 13, "elsewhere", ("U/D",), 0.0)
    snap = GraphSnapshot("s", "e", 1, 0.0, {}, (), (), (proc,))
    rows = process_rows(snap, {"dddddd444": {"pid": 13, "ping_ms": 2.0, "timestamp": 100.0}}, {}, now=101.0)
    assert [c.text.plain for c in rows["dddddd444"]][4:] == ["n/a", "n/a", "n/a", "2.00 ms", "● ok"]
