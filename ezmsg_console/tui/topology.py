"""The Topology tab: components and their processes, the graph drawn, edges, topology events.

Left, the component tree (collection -> unit with its process short id, pid
and host -> streams with direction and publisher/subscriber counts) as a
:class:`LiveTable` whose Name column sorts in tree order. Right, the dataflow
graph drawn by :mod:`.graph_render` (redrawn when the topology, the selection
or the width changes), the edge list and the topology event log. All tables
update in place on "topology"; "clock" only moves the log's ages. The rows
come from :mod:`.topology_rows` (pure).
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on
from textual.events import Resize
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from . import topology_rows as tr
from .graph_render import render_graph
from .pane import Pane
from .table import Cell, Column, LiveTable

FALLBACK_GRAPH_WIDTH = 66


def _cells(values: tuple[tr.Val, ...]) -> tuple[Cell, ...]:
    return tuple(Cell(raw, text) for raw, text in values)


def _columns(spec: tuple[tuple[str, str, int], ...]) -> list[Column]:
    return [Column(key, label, width) for key, label, width in spec]


class TopologyPane(Pane):
    TAB_ID = "topology"
    KINDS = frozenset({"topology", "connection"})
    TITLE = "Topology"
    HELP = ("Left: collections, units (process short id, pid, host) and their streams (← in, → out; P/S = "
            "publishers/subscribers registered on the topic). Right: the graph of units (the selected one in a "
            "heavy box), the edges with their owners (session name or persistent) and the topology events, all "
            "live. enter: on a collection or unit opens its Settings; on a stream, topic or edge (its source) "
            "opens Profiling; on an event selects its topic here. s opens the Settings of the selected row's "
            "unit. x hides internal topics (*INPUT_SETTINGS); f shows only the neighbourhood of the selection "
            "(edges touching it and the units at their ends), f again shows everything.")
    BINDINGS = [
        Binding("x", "toggle_internal", "Hide internal"),
        Binding("f", "focus_selection", "Focus / unfocus"),
        Binding("s", "settings", "Unit settings"),
    ]
    DEFAULT_CSS = """
    TopologyPane { layout: horizontal; }
    TopologyPane #topo-left { width: 55; height: 1fr; border-right: solid $panel; }
    TopologyPane #topo-right { width: 1fr; height: 1fr; }
    TopologyPane .pane-title { height: 1; }
    TopologyPane #topo-graph { height: auto; max-height: 15; overflow-x: auto; scrollbar-size-vertical: 1;
                               padding: 0 0 0 1; }
    TopologyPane #topo-graph-text { width: auto; height: auto; }
    TopologyPane LiveTable { height: 1fr; }
    """

    def __init__(self, monitor: Any, **kwargs: Any) -> None:
        super().__init__(monitor, **kwargs)
        self.hide_internal = False
        self.focus_target: str | None = None
        self.graph_text = ""  # the graph as drawn (plain), for tests and export
        self._model: tr.Model | None = None
        self._rows: dict[str, tr.TreeRow] = {}
        self._edges: dict[str, tuple[str, str, tuple[str, ...]]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="topo-left"):
            yield Static(id="topo-tree-title", classes="pane-title")
            yield LiveTable(_columns(tr.TREE_COLUMNS), sort_column=0, id="topo-tree")
        with Vertical(id="topo-right"):
            yield Static(id="topo-graph-title", classes="pane-title")
            with VerticalScroll(id="topo-graph"):
                yield Static(id="topo-graph-text")
            yield Static(id="topo-edges-title", classes="pane-title")
            yield LiveTable(_columns(tr.EDGE_COLUMNS), sort_column=0, id="topo-edges")
            yield Static(id="topo-events-title", classes="pane-title")
            yield LiveTable(_columns(tr.EVENT_COLUMNS), sort_column=0, reverse=True, id="topo-events")

    @property
    def tree(self) -> LiveTable:  # type: ignore[override]  # shadows DOMNode.tree, a debug-log rendering
        return self.query_one("#topo-tree", LiveTable)

    @property
    def edges(self) -> LiveTable:
        return self.query_one("#topo-edges", LiveTable)

    @property
    def events(self) -> LiveTable:
        return self.query_one("#topo-events", LiveTable)


    def on_resize(self, _event: Resize) -> None:
        self.call_after_refresh(self._draw_graph)

    # -- drawing ---------------------------------------------------------------

    def refresh_view(self, kinds: set[str]) -> None:
        if kinds & self.KINDS:
            self._redraw()
        elif "clock" in kinds:
            self._draw_events()

    def _redraw(self) -> None:
        snap = self.state.snapshot
        if snap is None:
            self.query_one("#topo-tree-title", Static).update(Text("waiting for the GraphServer…", style="dim"))
            return
        model = self._model = tr.build_model(snap)
        focus = tr.focus_on(model, self.focus_target) if self.focus_target else None
        rows = tr.tree_rows(model, self.hide_internal, focus)
        self._rows = {r.key: r for r in rows}
        self.tree.set_rows({r.key: _cells(tr.tree_cells(r, i)) for i, r in enumerate(rows)})
        shown = tr.visible_edges(model, self.hide_internal, focus)
        self._edges = {tr.edge_key(f, t): (f, t, o) for f, t, o in shown}
        me = self.state.session_id
        self.edges.set_rows({k: _cells(tr.edge_cells(model, e, me)) for k, e in self._edges.items()})
        self._draw_titles(len(shown), len(model.edges))
        self._draw_graph()
        self._draw_events()

    def _draw_titles(self, shown: int, total: int) -> None:
        model = self._model
        assert model is not None
        units = sum(1 for r in self._rows.values() if r.kind == "unit")
        procs = len({model.process[r.target].process_id for r in self._rows.values() if r.target in model.process})
        title = Text()
        title.append("Components", style="bold")
        title.append(f"  {units} units · {procs} processes", style="dim")
        if self.state.stale:
            title.append("  STALE", style="bold black on yellow")
        self.query_one("#topo-tree-title", Static).update(title)
        graph = Text()
        graph.append("Graph", style="bold")
        if self.focus_target:
            graph.append(f"  focus: {self.focus_target}", style="bold yellow")
            graph.append(" (f clears)", style="dim")
        if self.hide_internal:
            graph.append("  internal hidden", style="bold magenta")
            graph.append(" (x shows)", style="dim")
        self.query_one("#topo-graph-title", Static).update(graph)
        edges = Text()
        edges.append(f"Edges {shown}", style="bold")
        if shown != total:
            edges.append(f" of {total}", style="dim")
        self.query_one("#topo-edges-title", Static).update(edges)

    def _graph_width(self) -> int:
        box = self.query_one("#topo-graph", VerticalScroll)
        width = box.size.width - 2  # the left padding and a vertical scrollbar
        return width if width > 10 else FALLBACK_GRAPH_WIDTH

    def _draw_graph(self) -> None:
        model = self._model
        if model is None:
            return
        focus = tr.focus_on(model, self.focus_target) if self.focus_target else None
        shown = tr.visible_edges(model, self.hide_internal, focus)
        lines = render_graph([(f, t) for f, t, _o in shown], self._graph_width(),
                             nodes=tr.graph_nodes(model, self.hide_internal, focus), node_of=model.node_of,
                             internal=tr.is_internal if self.hide_internal else None,
                             selected=self._selected_node(), rounded=model.topics - set(model.owner))
        text = "\n".join(lines)
        if text == self.graph_text:
            return
        self.graph_text = text
        styled = Text(text)
        styled.highlight_regex(r"[┏┓┗┛━┃┣]+|┃[^┃┣]*[┃┣]", "bold yellow")
        styled.highlight_regex(r"▶", "cyan")
        self.query_one("#topo-graph-text", Static).update(styled)

    def _draw_events(self) -> None:
        now, me = time.time(), self.state.session_id
        events = self.state.topology_events
        self.events.set_rows({tr.event_key(ev): _cells(tr.event_cells(ev, self._model, now, me)) for ev in events})
        title = Text()
        title.append(f"Events {len(events)}", style="bold")
        title.append("  since connecting", style="dim")
        self.query_one("#topo-events-title", Static).update(title)

    # -- selection -------------------------------------------------------------

    def _selected_row(self) -> tr.TreeRow | None:
        key = self.tree.selected_key
        return self._rows.get(key) if key else None

    def _selected_node(self) -> str | None:
        row = self._selected_row()
        if row is None or self._model is None:
            return None
        return row.unit or row.target or None

    def _selection_target(self) -> str | None:
        """What ``f`` focuses on: the tree's row, an edge's source topic, or an event's first topic."""
        if self.edges.has_focus_within and self.edges.selected_key in self._edges:
            return self._edges[self.edges.selected_key][0]
        if self.events.has_focus_within and self.events.selected_key:
            cells = self.events.row(self.events.selected_key)
            topics = cells[2].raw if cells else []
            return topics[0] if topics else None
        row = self._selected_row()
        return row.target if row is not None and row.target else None

    @on(LiveTable.Selected)
    def _table_selected(self, event: LiveTable.Selected) -> None:
        if event.table is self.tree:
            self._draw_graph()

    @on(LiveTable.Activated)
    def _activated(self, event: LiveTable.Activated) -> None:
        event.stop()
        if event.table is self.tree:
            row = self._rows.get(event.key)
            if row is None or row.kind == "group":
                return
            tab = "settings" if row.kind in ("collection", "unit") else "profiling"
            self.console.show_tab(tab, row.target)
        elif event.table is self.edges and event.key in self._edges:
            self.console.show_tab("profiling", self._edges[event.key][0])
        elif event.table is self.events:
            cells = self.events.row(event.key)
            topics = cells[2].raw if cells else []
            if topics:
                self.show(topics[0])

    # -- actions -----------------------------------------------------------------

    def action_toggle_internal(self) -> None:
        self.hide_internal = not self.hide_internal
        self._redraw()
        self.notify("internal topics hidden" if self.hide_internal else "internal topics shown", timeout=2)

    def action_focus_selection(self) -> None:
        if self.focus_target is not None:
            self.focus_target = None
            self._redraw()
            self.notify("showing the whole graph", timeout=2)
            return
        target = self._selection_target()
        if target is None:
            self.notify("select a unit, stream or edge to focus on", severity="warning", timeout=3)
            return
        self.focus_target = target
        self._redraw()
        self.notify(f"focus on {target} (f again shows everything)", timeout=3)

    def action_settings(self) -> None:
        row = self._selected_row()
        address = (row.unit or (row.target if row.kind == "collection" else "")) if row else ""
        if not address:
            self.notify("select a unit or one of its streams", severity="warning", timeout=3)
            return
        self.console.show_tab("settings", address)

    # -- Pane API ------------------------------------------------------------------

    def show(self, target: str) -> None:
        """Select the collection, unit, stream or topic ``target`` (an endpoint id selects its topic),
        clearing the focus, the hiding or the filter that would keep it out of sight."""
        self._redraw()
        model = self._model
        if model is None:
            return
        if target not in model.components and target not in model.topics and ":" in target:
            target = target.rsplit(":", 1)[0]
        keys = [f"{p}:{target}" for p in ("u", "c", "s", "t")]
        every = {r.key for r in tr.tree_rows(model)}
        key = next((k for k in keys if k in every), None)
        if key is None:
            self.notify(f"{target} is not in the topology", severity="warning", timeout=3)
            return
        if key not in self._rows:
            self.focus_target = None
            self.hide_internal = self.hide_internal and not tr.is_internal(target)
            self._redraw()
        if not self.tree.select(key):
            self.tree.set_filter("")
            self.tree.select(key)
        self.tree.table.focus()
        self._draw_graph()

    def focus_default(self) -> None:
        if not any(t.has_focus_within for t in (self.tree, self.edges, self.events)):
            self.tree.table.focus()

    def export_rows(self) -> tuple[str, list[dict[str, Any]]]:
        """The edges shown (after ``x`` and ``f``), with their nodes and owners."""
        if self._model is None:
            return self.TAB_ID, []
        return self.TAB_ID, tr.edge_export(self._model, self._edges.values(), self.state.session_id)
