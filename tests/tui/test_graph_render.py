"""The Topology tab's pure parts: the graph drawing and the tree/edge/event rows (no app, no server)."""

from __future__ import annotations

import random
import re

import pytest

from ezmsg_console.protocol.graph import (
    PERSISTENT_OWNER,
    ComponentMetadata,
    ComponentType,
    EdgeOwners,
    GraphMetadata,
    GraphSnapshot,
    ProcessInfo,
    PublisherInfo,
    SessionInfo,
    StreamDirection,
    StreamMetadata,
    SubscriberInfo,
    TopologyEvent,
    TopologyEventType,
)
from ezmsg_console.tui import topology_rows as tr
from ezmsg_console.tui.graph_render import NO_EDGES, render_graph, truncate, unique_suffixes


def unit_of(topic: str) -> str:
    return topic.rsplit("/", 1)[0]


def assert_fits(lines: list[str], width: int) -> None:
    assert lines and all(len(line) <= width for line in lines), [(len(x), x) for x in lines if len(x) > width]


def line_with(lines: list[str], *names: str) -> str:
    """The one line that shows all ``names``, in that order from left to right."""
    for line in lines:
        at = [line.find(f" {n} ") for n in names]
        if all(a >= 0 for a in at) and at == sorted(at):
            return line
    raise AssertionError(f"no line shows {names} in order:\n" + "\n".join(lines))


# -- graph_render ----------------------------------------------------------------


def test_a_chain_is_one_row_of_boxes_left_to_right() -> None:
    lines = render_graph([("A/OUT", "B/IN"), ("B/OUT", "C/IN")], 60, node_of=unit_of)
    assert len(lines) == 3
    assert line_with(lines, "A", "B", "C").count("▶") == 2
    assert lines[0].startswith("┌") and lines[2].startswith("└")


def test_fan_out_branches_from_one_channel() -> None:
    lines = render_graph([("A", "B"), ("A", "C"), ("A", "D")], 40)
    text = "\n".join(lines)
    assert text.count("▶") == 3 and text.count(" A ") == 1
    assert "┬" in text and "└─▶" in text
    assert [i for i, line in enumerate(lines) if " B " in line or " C " in line or " D " in line] == [1, 5, 9]


def test_fan_in_merges_into_one_arrow() -> None:
    lines = render_graph([("A", "C"), ("B", "C")], 40)
    text = "\n".join(lines)
    assert text.count("▶") == 1 and text.count(" C ") == 1
    assert line_with(lines, "A", "C") and "┘" in text  # B's line turns up into A's


def test_disconnected_parts_and_lone_nodes() -> None:
    lines = render_graph([("A", "B"), ("X", "Y")], 60, nodes=["LONE"])
    assert line_with(lines, "A", "B") and line_with(lines, "X", "Y")
    assert lines.index(line_with(lines, "A", "B")) < lines.index(line_with(lines, "X", "Y"))
    assert "" in lines and lines[-1] == "unconnected: LONE"


def test_a_long_edge_passes_through_the_layers_between() -> None:
    lines = render_graph([("A", "B"), ("B", "C"), ("A", "C")], 60)
    text = "\n".join(lines)
    assert text.count(" C ") == 1 and text.count("▶") == 2  # A's long edge joins B's arrow into C
    assert line_with(lines, "A", "B", "C") and lines[-1].strip() == "└────────┘"


def test_long_names_keep_their_unique_tail_then_shrink() -> None:
    edges = [("PIPELINE/ACQUISITION_FRONT_END/OUT", "PIPELINE/SPATIAL_FILTER_BANK/IN"),
             ("PIPELINE/SPATIAL_FILTER_BANK/OUT", "PIPELINE/DECODER_WITH_A_VERY_LONG_NAME/IN")]
    wide = render_graph(edges, 120, node_of=unit_of)
    assert line_with(wide, "PIPELINE/ACQUISITION_FRONT_END", "PIPELINE/SPATIAL_FILTER_BANK")
    tails = render_graph(edges, 90, node_of=unit_of)
    assert line_with(tails, "ACQUISITION_FRONT_END", "SPATIAL_FILTER_BANK", "DECODER_WITH_A_VERY_LONG_NAME")
    assert_fits(tails, 90)
    short = render_graph(edges, 50, node_of=unit_of)
    assert_fits(short, 50)
    assert "…" in "\n".join(short) and any("▶" in line for line in short)


def test_mixed_prefixes_keep_the_unique_tail_of_each_name() -> None:
    edges = [("DEMO/SOURCE/OUTPUT", "DEMO/FILTER/INPUT"), ("DEMO/SOURCE/OUTPUT", "MON/RAW"), ("TEST/A", "TEST/B"),
             ("DEMO/FILTER/OUTPUT", "DEMO/SINK/INPUT")]
    owner = {"DEMO/SOURCE/OUTPUT": "DEMO/SOURCE", "DEMO/FILTER/INPUT": "DEMO/FILTER",
             "DEMO/FILTER/OUTPUT": "DEMO/FILTER", "DEMO/SINK/INPUT": "DEMO/SINK"}
    lines = render_graph(edges, 40, node_of=lambda t: owner.get(t, t))
    assert_fits(lines, 40)
    assert line_with(lines, "SOURCE", "FILTER", "SINK") and line_with(lines, "TEST/A", "TEST/B")
    assert "RAW" in "\n".join(lines)
    assert unique_suffixes(["X/A", "Y/A", "Z/B"]) == {"X/A": "X/A", "Y/A": "Y/A", "Z/B": "B"}
    assert unique_suffixes(["A/X", "X"]) == {"A/X": "A/X", "X": "X"}


def test_too_wide_falls_back_to_an_indented_flow() -> None:
    chain = [(f"U{i}", f"U{i + 1}") for i in range(12)]
    lines = render_graph(chain, 40)
    assert_fits(lines, 40)
    assert lines[0] == "U0" and lines[1] == "└─▶ U1" and lines[2] == "    └─▶ U2"


def test_a_cycle_is_drawn_as_a_flow_with_a_marker() -> None:
    lines = render_graph([("A", "B"), ("B", "C"), ("C", "A")], 60)
    assert "A ↻" in "\n".join(lines) and lines[0].startswith("↑")


def test_internal_topics_are_left_out() -> None:
    edges = [("A/OUT", "B/IN"), ("CTRL/OUT", "B/INPUT_SETTINGS")]
    shown = render_graph(edges, 60, node_of=unit_of)
    assert "CTRL" in "\n".join(shown)
    hidden = render_graph(edges, 60, node_of=unit_of, internal=tr.is_internal)
    assert "CTRL" not in "\n".join(hidden) and line_with(hidden, "A", "B")


def test_the_selected_node_has_a_heavy_box_and_bare_topics_round_ones() -> None:
    lines = render_graph([("A", "B"), ("B", "C")], 60, selected="B", rounded={"C"})
    assert "┏" in lines[0] and "┃ B ┣" in lines[1] and "╭" in lines[0]


def test_no_edges() -> None:
    assert render_graph([], 40) == [NO_EDGES]


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_fit_the_width_and_show_every_node(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"N{i}" for i in range(rng.randint(2, 12))]
    edges = {(names[a], names[b]) for a, b in (sorted(rng.sample(range(len(names)), 2))
                                               for _ in range(rng.randint(1, 18)))}
    for width in (24, 40, 66, 120):
        lines = render_graph(edges, width, nodes=names)
        assert_fits(lines, width)
        text = "\n".join(lines)
        for name in names:
            assert re.search(rf"\b{name}\b", text), (name, width, text)


def test_truncate() -> None:
    assert truncate("ABCDEFGHIJ", 10) == "ABCDEFGHIJ"
    short = truncate("ABCDEFGHIJKLMNOP", 7)
    assert len(short) == 7 and short.startswith("AB") and short.endswith("MNOP") and "…" in short


# -- topology_rows ----------------------------------------------------------------

SESSION = "s1" * 16
OTHER = "s2" * 16


def _unit(address: str, *, inputs: tuple[str, ...] = ("INPUT",), outputs: tuple[str, ...] = ("OUTPUT",)
          ) -> ComponentMetadata:
    streams = tuple(StreamMetadata(n, StreamDirection.INPUT, f"{address}/{n}") for n in (*inputs, "INPUT_SETTINGS"))
    streams += tuple(StreamMetadata(n, StreamDirection.OUTPUT, f"{address}/{n}") for n in outputs)
    return ComponentMetadata(address, address.rsplit("/", 1)[-1], ComponentType.UNIT, streams=streams)


def snapshot() -> GraphSnapshot:
    comps = (ComponentMetadata("P", "P", ComponentType.COLLECTION, children=("SRC", "MID", "OUT")),
             _unit("P/SRC", inputs=()), _unit("P/MID"), _unit("P/OUT", outputs=()))
    edges = (EdgeOwners("P/SRC/OUTPUT", "P/MID/INPUT", (SESSION,)),
             EdgeOwners("P/MID/OUTPUT", "P/OUT/INPUT", (SESSION,)),
             EdgeOwners("TEST/A", "TEST/B", (PERSISTENT_OWNER,)),
             EdgeOwners("TEST/CTL", "P/MID/INPUT_SETTINGS", (OTHER,)))
    procs = (ProcessInfo("proc1" * 6, 101, "hostA", ("P/MID", "P/SRC"), 0.0),
             ProcessInfo("proc2" * 6, 202, "hostB", ("P/OUT",), 0.0))
    pubs = (PublisherInfo("p1", "P/SRC/OUTPUT"), PublisherInfo("p2", "P/MID/OUTPUT"))
    subs = tuple(SubscriberInfo(f"s{k}", t) for k, t in enumerate(("P/MID/INPUT", "P/OUT/INPUT", "P/OUT/INPUT")))
    graph = {"P/SRC/OUTPUT": ("P/MID/INPUT",), "P/MID/OUTPUT": ("P/OUT/INPUT",), "TEST/A": ("TEST/B",)}
    return GraphSnapshot("srv", "ep", 7, 0.0, graph, edges,
                         (SessionInfo(SESSION, "runner:1", "session", "", 0.0, metadata=GraphMetadata(comps)),
                          SessionInfo(OTHER, "tuner", "session", "", 0.0)), procs, pubs, subs)


def test_tree_rows_nest_collections_units_and_streams() -> None:
    model = tr.build_model(snapshot())
    rows = tr.tree_rows(model)
    by_key = {r.key: r for r in rows}
    assert [r.key for r in rows[:5]] == ["c:P", "u:P/MID", "s:P/MID/INPUT", "s:P/MID/INPUT_SETTINGS",
                                         "s:P/MID/OUTPUT"]
    mid = by_key["u:P/MID"]
    assert (mid.depth, mid.name, mid.pid, mid.host, mid.process) == (1, "MID", 101, "hostA", "proc1p")
    assert by_key["u:P/OUT"].pid == 202
    inp = by_key["s:P/OUT/INPUT"]
    assert (inp.depth, inp.direction, inp.pubs, inp.subs, inp.unit) == (2, "IN", 0, 2, "P/OUT")
    assert by_key["s:P/SRC/OUTPUT"].direction == "OUT" and by_key["s:P/SRC/OUTPUT"].pubs == 1
    assert by_key["s:P/MID/INPUT_SETTINGS"].internal
    assert [r.key for r in rows if r.depth == 0] == ["c:P", tr.OTHER_KEY]
    assert {r.target for r in rows if r.kind == "topic"} == {"TEST/A", "TEST/B", "TEST/CTL"}
    cells = tr.tree_cells(mid, 3)
    assert cells[0][0] == 3 and str(cells[0][1]) == "  MID" and cells[2] == (101, "101")


def test_hiding_internal_topics() -> None:
    model = tr.build_model(snapshot())
    rows = tr.tree_rows(model, hide_internal=True)
    assert not any("INPUT_SETTINGS" in r.key for r in rows)
    edges = tr.visible_edges(model, True, None)
    assert ("TEST/CTL", "P/MID/INPUT_SETTINGS") not in [(f, t) for f, t, _o in edges] and len(edges) == 3
    assert "TEST/CTL" in {r.target for r in rows}  # not internal itself: only its edge is hidden


def test_focus_on_a_unit_keeps_its_one_hop_neighbourhood() -> None:
    model = tr.build_model(snapshot())
    focus = tr.focus_on(model, "P/OUT")
    assert focus.edges == {("P/MID/OUTPUT", "P/OUT/INPUT")}
    assert focus.nodes == {"P/OUT", "P/MID"}
    keys = [r.key for r in tr.tree_rows(model, focus=focus)]
    assert keys[:2] == ["c:P", "u:P/MID"] and "u:P/SRC" not in keys and "s:P/MID/INPUT" not in keys
    assert "s:P/MID/OUTPUT" in keys and "s:P/OUT/INPUT_SETTINGS" in keys
    assert tr.graph_nodes(model, False, focus) == ["P/MID", "P/OUT"]
    mid = tr.focus_on(model, "P/MID")
    assert len(mid.edges) == 3 and "TEST/CTL" in mid.nodes  # the settings edge reaches a bare topic
    assert len(tr.visible_edges(model, True, mid)) == 2


def test_focus_on_a_topic_and_on_the_collection() -> None:
    model = tr.build_model(snapshot())
    topic = tr.focus_on(model, "P/MID/INPUT")
    assert topic.edges == {("P/SRC/OUTPUT", "P/MID/INPUT")} and topic.nodes == {"P/MID", "P/SRC"}
    assert tr.focus_on(model, "TEST/A").nodes == {"TEST/A", "TEST/B"}
    assert len(tr.focus_on(model, "P").edges) == 3


def test_edge_and_event_cells() -> None:
    model = tr.build_model(snapshot())
    assert tr.owner_label(model, SESSION) == "runner:1"
    assert tr.owner_label(model, SESSION, my_session=SESSION) == "this console"
    assert tr.owner_label(model, PERSISTENT_OWNER) == "persistent"
    assert tr.owner_label(model, "f" * 32) == "f" * 8
    f, t, owners = tr.edge_cells(model, ("TEST/A", "TEST/B", (PERSISTENT_OWNER,)))
    assert (f[0], t[0], owners[0], str(owners[1])) == ("TEST/A", "TEST/B", [PERSISTENT_OWNER], "persistent")
    exported = tr.edge_export(model, tr.visible_edges(model, False, None))
    assert {"from": "P/SRC/OUTPUT", "to": "P/MID/INPUT", "from_node": "P/SRC", "to_node": "P/MID",
            "owners": [SESSION], "owner_names": ["runner:1"]} in exported
    event = TopologyEvent(9, TopologyEventType.GRAPH_CHANGED, 100.0, ("TEST/B",), source_session_id=OTHER,
                          server_epoch="ep")
    seq, kind, topics, source, age = tr.event_cells(event, model, now=165.0)
    assert (seq[0], kind[0], topics, source[0], age) == (9, "graph", (["TEST/B"], "TEST/B"), "tuner", (100.0, "1m"))
    assert tr.event_key(event) == "ep:9"
    proc = TopologyEvent(10, TopologyEventType.PROCESS_CHANGED, 100.0, (), source_process_id="abcdef123")
    assert tr.event_cells(proc, model, now=101.0)[1][0] == "process" and tr.event_source(proc, model) == "p:abcdef"
    mine = TopologyEvent(11, TopologyEventType.PROCESS_CHANGED, 100.0, (), source_process_id="proc2" * 6)
    assert str(tr.event_cells(mine, model, now=101.0)[2][1]) == "P/OUT"  # no topics: the process's units
    assert tr.is_internal("A/B/INPUT_SETTINGS") and not tr.is_internal("A/INPUT_SETTINGS/OUT")
