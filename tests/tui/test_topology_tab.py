"""The Topology tab on the live demo: tree with processes, edges, the graph drawn, keys, live updates."""

from __future__ import annotations

from typing import Any

from textual.widgets import TabbedContent

from ezmsg_console.client.context import GraphContext
from ezmsg_console.tui.topology import TopologyPane

from ..conftest import TIMEOUT
from .conftest import DEMO_UNITS, wait_until

DEMO_EDGES = {"DEMO/SOURCE/OUTPUT -> DEMO/FILTER/INPUT", "DEMO/FILTER/OUTPUT -> DEMO/FEATURES/INPUT",
              "DEMO/FEATURES/OUTPUT -> DEMO/SINK/INPUT"}
ORDER = ("SOURCE", "FILTER", "FEATURES", "SINK")


async def open_tab(app: Any, pilot: Any) -> TopologyPane:
    await pilot.press("2")
    assert app.query_one(TabbedContent).active == "topology"
    pane = app.query_one(TopologyPane)
    await wait_until(pilot, lambda: DEMO_EDGES <= set(pane.edges.shown_keys) and "SINK" in pane.graph_text,
                     "the demo topology drawn")
    return pane


def graph_line_in_order(text: str, names: tuple[str, ...]) -> str | None:
    for line in text.splitlines():
        at = [line.find(f"{n} ") for n in names]
        if all(a >= 0 for a in at) and at == sorted(at):
            return line
    return None


async def test_tree_edges_and_graph_of_the_demo(console: Any) -> None:
    async with console() as (app, pilot):
        pane = await open_tab(app, pilot)
        snap = app.monitor.state.snapshot
        pids = {u: p.pid for p in snap.processes for u in p.units}
        keys = pane.tree.shown_keys
        for unit in DEMO_UNITS:
            cells = pane.tree.row(f"u:{unit}")
            assert f"u:{unit}" in keys and cells is not None
            assert cells[2].raw == pids[unit] and str(pids[unit]) == cells[2].plain()
            assert cells[3].plain() and len(cells[1].plain()) == 6  # host, process short id
        assert keys[0] == "c:DEMO" and keys.index("u:DEMO/FEATURES") < keys.index("s:DEMO/FEATURES/OUTPUT")
        out = pane.tree.row("s:DEMO/SOURCE/OUTPUT")
        assert out is not None and out[1].raw == "OUT" and out[4].raw == "1/0"
        assert set(pane.edges.shown_keys) == DEMO_EDGES
        assert {r["owner"][0] for r in pane.edges.visible_rows()} == {s.session_id for s in snap.sessions
                                                                       if s.edges}
        assert graph_line_in_order(pane.graph_text, ORDER), pane.graph_text
        assert all(len(line) <= pane._graph_width() for line in pane.graph_text.splitlines())
        name, rows = pane.export_rows()
        assert name == "topology" and {f"{r['from']} -> {r['to']}" for r in rows} == DEMO_EDGES


async def test_hide_internal_focus_and_enter(console: Any) -> None:
    async with console() as (app, pilot):
        pane = await open_tab(app, pilot)
        assert "s:DEMO/FILTER/INPUT_SETTINGS" in pane.tree.shown_keys
        await pilot.press("x")
        assert pane.hide_internal and not any("INPUT_SETTINGS" in k for k in pane.tree.shown_keys)
        assert "internal hidden" in str(pane.query_one("#topo-graph-title").render())

        assert pane.tree.select("u:DEMO/SINK")
        await pilot.press("f")
        assert pane.focus_target == "DEMO/SINK"
        units = {k for k in pane.tree.shown_keys if k.startswith("u:")}
        assert units == {"u:DEMO/SINK", "u:DEMO/FEATURES"}
        assert pane.edges.shown_keys == ["DEMO/FEATURES/OUTPUT -> DEMO/SINK/INPUT"]
        assert graph_line_in_order(pane.graph_text, ("FEATURES", "SINK")) and "FILTER" not in pane.graph_text
        assert "┃" in pane.graph_text  # the selected unit's heavy box
        await pilot.press("f")
        assert pane.focus_target is None and set(pane.edges.shown_keys) == DEMO_EDGES
        await pilot.press("x")
        assert "s:DEMO/FILTER/INPUT_SETTINGS" in pane.tree.shown_keys

        app.show_tab("topology", "DEMO/SOURCE/OUTPUT")
        assert pane.tree.selected_key == "s:DEMO/SOURCE/OUTPUT"
        assert pane.tree.select("u:DEMO/FILTER") and pane.tree.table.has_focus
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.query_one(TabbedContent).active == "settings", "the settings tab")


async def test_a_live_edge_appears_and_goes_without_a_key(console: Any, demo: Any) -> None:
    async with console() as (app, pilot):
        pane = await open_tab(app, pilot)
        key = "TEST/A -> TEST/B"

        def logged() -> bool:
            rows = [pane.events.row(k) for k in pane.events.shown_keys]
            return any(row is not None and "TEST/B" in row[2].raw for row in rows)

        async with GraphContext(demo.address, name="topo-test", timeout=TIMEOUT) as ctx:
            await ctx.connect("TEST/A", "TEST/B")
            try:
                await wait_until(pilot, lambda: key in pane.edges.shown_keys and logged(), "the new edge and its event")
                assert (pane.edges.row(key) or ())[2].plain() == "topo-test"
                assert "TEST/A" in pane.graph_text and "t:TEST/B" in pane.tree.shown_keys
            finally:
                await ctx.disconnect("TEST/A", "TEST/B")
            await wait_until(pilot, lambda: key not in pane.edges.shown_keys, "the edge removed")
        assert set(pane.edges.shown_keys) == DEMO_EDGES and "TEST/A" not in pane.graph_text
