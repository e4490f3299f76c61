"""The snapshot document and its writers, without a server: JSON, CSV, DOT, Mermaid, and the CLI helpers."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import re
import sys

import pytest

from ezmsg_console.export import formats
from ezmsg_console.export.commands import UsageError, plan
from ezmsg_console.export.document import SCHEMA, build_document
from ezmsg_console.export.formats import table_csv
from ezmsg_console.export.live import event_record, event_text, parse_value, settings_summary, \
    settings_text
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.graph import (
    ComponentMetadata,
    ComponentType,
    EdgeOwners,
    EdgeRef,
    GraphMetadata,
    GraphSnapshot,
    ProcessInfo,
    SessionInfo,
    StreamDirection,
    StreamMetadata,
    TopologyEvent,
    TopologyEventType,
)
from ezmsg_console.protocol.profiling import ProcessProfilingSnapshot, ProfilingError, PublisherProfile, \
    SubscriberProfile
from ezmsg_console.protocol.settings import SettingsChangedEvent, SettingsEventType, SettingsSnapshotValue, \
    SettingsState
from ezmsg_console.settings.values import at_path

from ..conftest import TIMEOUT

SCHEMA_PLAIN = {"provider": "dataclass", "settings_type": "demo.Gain", "fields": [
    {"name": "gain", "kind": "float", "field_type": "builtins.float", "default": 1.0, "bounds": [0.0, 10.0],
     "unit": "x", "read_only": False, "description": "Gain", "choices": None, "fields": []},
    {"name": "label", "kind": "str", "field_type": "builtins.str", "default": "", "bounds": None,
     "read_only": False, "description": "Label, free text", "choices": None, "fields": []},
    {"name": "inner", "kind": "nested", "field_type": "demo.Inner", "default": None, "fields": [
        {"name": "taps", "kind": "list", "field_type": "list[int]", "default": [], "fields": []},
        {"name": "mode", "kind": "enum", "field_type": "demo.Mode", "choices": ["a", "b"], "fields": []}]},
]}
VALUE = {"gain": 2.5, "label": 'say "hi", then\nleave', "inner": {"taps": [1, 2], "mode": "a"}}


def unit(address: str, inputs: tuple[str, ...] = ("IN",), outputs: tuple[str, ...] = ("OUT",)) -> ComponentMetadata:
    streams = tuple(StreamMetadata(n, StreamDirection.INPUT, f"{address}/{n}") for n in inputs) + \
        tuple(StreamMetadata(n, StreamDirection.OUTPUT, f"{address}/{n}") for n in outputs)
    return ComponentMetadata(address, address.rsplit("/", 1)[-1], ComponentType.UNIT, streams=streams)


def graph_snapshot(shuffle: random.Random | None = None) -> GraphSnapshot:
    def order(items: list) -> tuple:
        items = list(items)
        if shuffle is not None:
            shuffle.shuffle(items)
        return tuple(items)

    edges = [("A/SRC/OUT", "A/MID/IN"), ("A/MID/OUT", "A/SINK/IN"), ('Q/"odd"\\name/OUT', "A/SINK/IN")]
    comps = [unit("A/SRC", inputs=()), unit("A/MID"), unit("A/SINK", outputs=()),
             unit('Q/"odd"\\name', inputs=())]
    graph = {"A/SRC/OUT": ("A/MID/IN",), "A/MID/OUT": ("A/SINK/IN",), 'Q/"odd"\\name/OUT': ("A/SINK/IN",),
             "A/MID/IN": (), "A/SINK/IN": ()}
    return GraphSnapshot(
        server_id="srv", server_epoch="ep", topology_seq=7, timestamp=1.0,
        graph=dict(order(list(graph.items()))),
        edge_owners=order([EdgeOwners(a, b, ("s1",) if a != 'Q/"odd"\\name/OUT' else ("persistent",))
                           for a, b in edges]),
        sessions=order([SessionInfo("s1", "runner", "session", "127.0.0.1:1", 1.0,
                                    order([EdgeRef(a, b) for a, b in edges[:2]]), GraphMetadata(order(comps))),
                        SessionInfo("me", "ezmsg-console snapshot", "session", "127.0.0.1:2", 2.0)]),
        processes=order([ProcessInfo("p2", 202, "h", ("A/SINK",), 1.0),
                         ProcessInfo("p1", 101, "h", ("A/SRC", "A/MID"), 1.0)]),
    )


def profile(process_id: str) -> ProcessProfilingSnapshot:
    return ProcessProfilingSnapshot(
        process_id, 101, "h", 5, 2.0, 0.5, True, (0, 1, 2),
        publishers=(PublisherProfile("e1", "A/SRC/OUT", 32, 0, 10, 100, 0, 0, publish_rate_hz_window=20.0),),
        subscribers=(SubscriberProfile("e2", "A/MID/IN", 10, 100, 0, "SHM"),))


def document(seed: int | None = None) -> dict:
    rng = random.Random(seed) if seed is not None else None
    states = [SettingsState("A/MID", SettingsSnapshotValue(VALUE, VALUE, SCHEMA_PLAIN), "s1", "p1", 4),
              SettingsState("A", SettingsSnapshotValue(None, None), "s1", None, 1)]
    if rng is not None:
        rng.shuffle(states)
    errors = [{"process_id": "p2", "section": "profiling", "error_code": "TIMEOUT", "error": "no answer"},
              {"process_id": "p2", "section": "processes", "error_code": "TIMEOUT", "error": "no answer"}]
    return build_document(
        address="127.0.0.1:9", snapshot=graph_snapshot(rng),
        sections=["profiling", "topology", "settings", "processes"],
        captured=1_700_000_000.25, settings=states,
        stats={"p1": {"pid": 101, "cpu_percent": 1.5, "ping_ms": 0.7}, "p2": {"error": "no answer"}},
        profiling={"p2": ProfilingError("p2", "TIMEOUT", "no answer"), "p1": profile("p1")},
        errors=errors[::-1] if rng is not None else errors, own_session="me")


# -- the document and JSON ------------------------------------------------------------


def test_unmeasured_counters_are_null_not_zero():
    """An ezmsg 3.9 process measures no bytes, drops, queue or links: JSON null and empty CSV cells."""
    snap = dataclasses.replace(profile("p1"), unmeasured=("bytes", "backpressure", "drops", "queue", "links",
                                                           "histograms", "latency"))
    doc = build_document(address="127.0.0.1:9", snapshot=graph_snapshot(None), sections=["profiling"],
                         captured=1.0, profiling={"p1": snap}, backend="ezmsg", server_label="ezmsg 3.9.0")
    assert doc["backend"] == "ezmsg" and doc["server"]["label"] == "ezmsg 3.9.0"
    pub, sub = doc["profiling"]["p1"]["publishers"][0], doc["profiling"]["p1"]["subscribers"][0]
    assert pub["messages_published_total"] == 10 and pub["publish_rate_hz_window"] == 20.0  # measured: kept
    assert pub["bytes_published_total"] is None and pub["backpressure_waits_total"] is None
    assert pub["shm_links"] is None and pub["fanout"] is None
    assert sub["messages_received_total"] == 10 and sub["channel_kind_last"] == "SHM"
    assert sub["bytes_received_total"] is None and sub["drops_total"] is None and sub["queue_depth"] is None
    assert sub["latency_ns"] is None and sub["handler_ns"] is None  # nothing traced: no percentiles
    row = next(csv.DictReader(io.StringIO(table_csv(doc, "subscribers"))))
    assert row["messages_received_total"] == "10" and row["bytes_received_total"] == "" and row["drops_total"] == ""
    native = document()["profiling"]["p1"]["publishers"][0]
    assert native["bytes_published_total"] == 100 and native["backpressure_waits_total"] == 0  # real zeros stay


def test_document_shape():
    doc = document()
    assert doc["schema"] == SCHEMA == "ezmsg-console.snapshot/1"
    assert doc["captured"] == {"epoch": 1_700_000_000.25, "iso": "2023-11-14T22:13:20.250+00:00"}
    assert doc["server"] == {"id": "srv", "epoch": "ep", "topology_seq": 7, "label": "native"}
    assert doc["backend"] == "native"
    assert doc["sections"] == ["processes", "profiling", "settings", "topology"]
    assert [s["session_id"] for s in doc["topology"]["sessions"]] == ["s1"]  # not the collecting session
    assert {"from": "A/SRC/OUT", "to": "A/MID/IN", "owners": ["s1"]} in doc["topology"]["edges"]
    assert [p["process_id"] for p in doc["processes"]] == ["p1", "p2"]  # by first unit: A/MID < A/SINK
    assert doc["processes"][0]["units"] == ["A/MID", "A/SRC"]
    assert doc["processes"][0]["ping_ms"] == 0.7 and doc["processes"][0]["stats"]["cpu_percent"] == 1.5
    assert doc["processes"][1]["error"] == "no answer" and doc["processes"][1]["stats"] is None
    assert doc["settings"]["A/MID"] == {"value": VALUE, "schema": SCHEMA_PLAIN, "seq": 4, "source": "p1",
                                        "session": "s1"}
    assert doc["profiling"]["p2"] == {"error_code": "TIMEOUT", "error": "no answer"}
    assert doc["profiling"]["p1"]["publishers"][0]["topic"] == "A/SRC/OUT"
    assert [e["section"] for e in doc["errors"]] == ["processes", "profiling"]


def test_json_keys_sorted_and_stable():
    text = formats.to_json(document())
    assert text == formats.to_json(document())
    assert text == formats.to_json(document(seed=3)) == formats.to_json(document(seed=11))  # input order irrelevant
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert text.index('"address"') < text.index('"captured"') < text.index('"schema"')


def test_json_is_strict():
    data = {"b": (1, float("nan")), "a": [float("inf"), -float("inf")], "c": b"\x00\xff", "d": {3: {2, 1}},
            "e": SettingsEventType.SETTINGS_UPDATED}
    text = formats.to_json(data)
    assert json.loads(text) == {"a": ["inf", "-inf"], "b": [1, "nan"], "c": "AP8=", "d": {"3": [1, 2]},
                                "e": "SETTINGS_UPDATED"}
    assert formats.to_json_line({"z": 1, "a": [1]}) == '{"a": [1], "z": 1}'


# -- CSV ------------------------------------------------------------------------------


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_escaping_round_trips():
    columns = ("name", "value")
    rows = [['a,b', 'say "hi"'], ["multi\nline", None], ["flag", True], ["list", [1, "x"]], ["f", 0.1],
            ["d", {"b": 1, "a": 2}]]
    text = formats.to_csv(columns, rows)
    assert parse_csv(text) == [["name", "value"], ["a,b", 'say "hi"'], ["multi\nline", ""], ["flag", "true"],
                               ["list", '[1,"x"]'], ["f", "0.1"], ["d", '{"a":2,"b":1}']]
    assert '"say ""hi"""' in text and text.endswith("\n") and "\r" not in text


def test_settings_table_flattens_nested_fields_with_their_types():
    columns, rows = formats.table(document(), "settings")
    assert columns == ("component", "field", "value", "type", "seq")
    assert [(r[1], r[3]) for r in rows] == [("gain", "float"), ("label", "str"), ("inner.taps", "list"),
                                            ("inner.mode", "enum")]
    parsed = parse_csv(formats.table_csv(document(), "settings"))
    assert parsed[2] == ["A/MID", "label", VALUE["label"], "str", "4"]
    assert parsed[3] == ["A/MID", "inner.taps", "[1,2]", "list", "4"]


def test_timing_sample_fields_are_exported_and_null_where_not_reported():
    sampled = SubscriberProfile("e2", "A/MID/IN", 10_000, 100, 0, "SHM", timed_messages_total=342,
                                timed_messages_window=120, timing_sample_k=114)
    snap = dataclasses.replace(profile("p1"), subscribers=(sampled,))
    doc = build_document(address="127.0.0.1:9", snapshot=graph_snapshot(None), sections=["profiling"],
                         captured=1.0, profiling={"p1": snap})
    sub = json.loads(formats.to_json(doc))["profiling"]["p1"]["subscribers"][0]
    assert (sub["timed_messages_total"], sub["timed_messages_window"], sub["timing_sample_k"]) == (342, 120, 114)
    row = next(csv.DictReader(io.StringIO(table_csv(doc, "subscribers"))))
    assert (row["messages_received_total"], row["timed_messages_total"], row["timing_sample_k"]) == \
        ("10000", "342", "114")
    ezmsg = dataclasses.replace(snap, unmeasured=("histograms",))  # handler percentiles from trace samples only
    doc = build_document(address="127.0.0.1:9", snapshot=graph_snapshot(None), sections=["profiling"],
                         captured=1.0, profiling={"p1": ezmsg}, backend="ezmsg", server_label="ezmsg 3.9.0")
    sub = doc["profiling"]["p1"]["subscribers"][0]
    assert [sub[k] for k in ("timed_messages_total", "timed_messages_window", "timing_sample_k")] == [None] * 3
    row = next(csv.DictReader(io.StringIO(table_csv(doc, "subscribers"))))
    assert row["timed_messages_total"] == "" and row["timing_sample_k"] == ""

def test_other_tables():
    doc = document()
    assert formats.table(doc, "edges")[1][0] == ["A/MID/OUT", "A/SINK/IN", "A/MID", "A/SINK", "s1"]
    assert [r[0] for r in formats.table(doc, "processes")[1]] == ["p1", "p2"]
    assert formats.table(doc, "publishers")[1][0][:4] == ["A/SRC/OUT", "p1", "e1", 10]
    assert formats.table(doc, "subscribers")[1][0][:3] == ["A/MID/IN", "p1", "e2"]
    assert formats.table(doc, "errors")[1][0] == ["processes", "p2", "TIMEOUT", "no answer"]
    for name, columns in formats.TABLE_COLUMNS.items():
        assert all(len(row) == len(columns) for row in formats.table(doc, name)[1]), name


def test_output_plan():
    assert plan("json", None, "-") == ({"topology", "settings", "profiling", "processes"}, None)
    assert plan("dot", ("settings",), "-") == ({"topology"}, None)
    assert plan("csv", ("publishers",), "-") == ({"profiling"}, ["publishers"])
    assert plan("csv", "edges", "out.csv") == ({"topology"}, ["edges"])
    assert plan("csv", None, "folder") == ({"topology", "settings", "profiling", "processes"},
                                           ["edges", "settings", "publishers", "subscribers", "spans", "processes",
                                            "errors"])
    with pytest.raises(UsageError, match="--include"):
        plan("csv", None, "-")
    with pytest.raises(UsageError, match="publishers, subscribers, spans"):
        plan("csv", ("profiling",), "x.csv")
    with pytest.raises(UsageError):
        plan("csv", ("edges", "settings"), "-")


# -- DOT and Mermaid ----------------------------------------------------------------------


DOT_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|->|[{}\[\];=,]|//[^\n]*|[A-Za-z0-9_.]+|\s+')


def dot_tokens(text: str) -> list[str]:
    """Tokenize DOT (quoted IDs with escapes, identifiers, punctuation); fail on anything else."""
    tokens, pos = [], 0
    while pos < len(text):
        match = DOT_TOKEN.match(text, pos)
        assert match, f"not DOT at {text[pos:pos + 30]!r}"
        if not match.group().isspace() and not match.group().startswith("//"):
            tokens.append(match.group())
        pos = match.end()
    return tokens


def unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def test_dot_is_a_digraph_with_every_edge():
    dot = formats.to_dot(document())
    tokens = dot_tokens(dot)
    assert tokens[:3] == ["digraph", "ezmsg", "{"] and tokens[-1] == "}"
    depth = 0
    for i, tok in enumerate(tokens):
        depth += {"{": 1, "}": -1}.get(tok, 0)
        assert depth >= 0
        assert depth > 0 or i < 2 or i == len(tokens) - 1  # balanced: closes only at the very end
    edges = {(unquote(tokens[i - 1]), unquote(tokens[i + 1])) for i, tok in enumerate(tokens) if tok == "->"}
    assert edges == {("A/SRC/OUT", "A/MID/IN"), ("A/MID/OUT", "A/SINK/IN"), ('Q/"odd"\\name/OUT', "A/SINK/IN")}
    assert '"A/SRC/OUT" -> "A/MID/IN";' in dot
    assert '"Q/\\"odd\\"\\\\name/OUT" -> "A/SINK/IN" [style=dashed];' in dot  # persistent only
    assert 'label="A/MID";' in dot and dot.count("subgraph cluster_") == 4


def test_dot_quote():
    assert formats.dot_quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_mermaid_ids_are_sanitized_and_unique():
    ids = formats.MermaidIds("t_")
    assert ids("A/B-c d") == "t_A_B_c_d" and ids("A_B_c_d") == "t_A_B_c_d_2" and ids("A/B-c d") == "t_A_B_c_d"
    text = formats.to_mermaid(document())
    lines = text.splitlines()
    assert lines[1] == "flowchart LR"
    for line in lines[2:]:
        line = re.sub(r'\["[^"]*"\]', "", line.strip())  # drop labels
        assert re.fullmatch(r"(subgraph [A-Za-z0-9_]+|end|[A-Za-z0-9_]+|[A-Za-z0-9_]+ (-->|-\.->) [A-Za-z0-9_]+)",
                            line), line
    assert "t_A_SRC_OUT --> t_A_MID_IN" in text and "-.-> t_A_SINK_IN" in text
    assert 'u_Q__odd__name["Q/#quot;odd#quot;\\name"]' in text
    assert formats.mermaid_label('<b>#1 "x"') == '"#lt;b#gt;#35;1 #quot;x#quot;"'


# -- get / set / watch helpers -------------------------------------------------------


def test_parse_value():
    assert parse_value("45") == 45 and parse_value("2.5") == 2.5 and parse_value("true") is True
    assert parse_value('"x"') == "x" and parse_value("[1, 2]") == [1, 2] and parse_value("null") is None
    assert parse_value("lowpass") == "lowpass" and parse_value("") == "" and parse_value("{bad") == "{bad"


def test_settings_summary_and_text():
    state = SettingsState("A/MID", SettingsSnapshotValue(VALUE, VALUE, SCHEMA_PLAIN), "s1", "p1", 4)
    summary = settings_summary(state)
    assert [f["path"] for f in summary["fields"]] == ["gain", "label", "inner.taps", "inner.mode"]
    assert summary["seq"] == 4 and summary["settings_type"] == "demo.Gain"
    text = settings_text(state)
    assert text.splitlines()[0].startswith("A/MID  demo.Gain  seq 4")
    assert re.search(r"gain\s+2\.5\s+float\s+0\.\.10 x\s+Gain", text)
    assert "inner.mode" in text and "a|b" in text
    assert at_path(VALUE, "inner.taps.1") == 2 and at_path(VALUE, "nope.x") is None


def test_event_records():
    topo = TopologyEvent(3, TopologyEventType.GRAPH_CHANGED, 5.0, ("A/IN",), "s1", None, "ep")
    record = event_record("topology", topo)
    assert record == {"stream": "topology", "seq": 3, "kind": "GRAPH_CHANGED", "timestamp": 5.0,
                      "changed_topics": ["A/IN"], "source_session_id": "s1", "source_process_id": None,
                      "server_epoch": "ep"}
    setting = SettingsChangedEvent(9, SettingsEventType.SETTINGS_UPDATED, "A/MID", 6.0,
                                   SettingsSnapshotValue({"gain": 3.0}, {"gain": 3.0}, SCHEMA_PLAIN))
    assert event_record("settings", setting)["value"] == {"gain": 3.0}
    gap = event_record("settings", m.StreamGap("st", m.StreamKind.SETTINGS, 4, 8, "overflow"))
    assert gap == {"stream": "settings", "gap": [4, 8], "reason": "overflow"}
    assert "#3 GRAPH_CHANGED A/IN" in event_text(record) and "gap 4..8" in event_text(gap)


def test_no_textual_import():
    import subprocess

    code = ("import sys, ezmsg_console.export.commands, ezmsg_console.export.live, ezmsg_console.export.document; "
            "print(any(n == 'textual' or n.startswith('textual.') for n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3 * TIMEOUT)
    assert out.stdout.strip() == "False", out.stderr
