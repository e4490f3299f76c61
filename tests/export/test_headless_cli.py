"""snapshot, get, set and watch as real subprocesses against the real demo pipeline."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from typing import Any, Awaitable, Callable

import psutil
import pytest

from ezmsg_console.client.context import GraphContext
from ezmsg_console.pubsub import shm
from ezmsg_console.pubsub.host import RUN_TAG_ENV
from ezmsg_console.runtime.runner import RUN_TAG_PREFIX_ENV

from ..conftest import TIMEOUT, free_address
from .conftest import DEMO_EDGES, DEMO_UNITS, run_cli


def ask(demo: Any, fn: Callable[[GraphContext], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with GraphContext(demo.address, timeout=TIMEOUT, name="export-test") as ctx:
            return await fn(ctx)
    return asyncio.run(run())


def filter_settings(demo: Any) -> Any:
    async def get(ctx: GraphContext) -> Any:
        return {s.component_address: s for s in await ctx.settings_snapshot()}["DEMO/FILTER"]
    return ask(demo, get)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ezmsg-console: "), result.stderr
    return lines[0]


# -- snapshot -------------------------------------------------------------------------


def test_snapshot_json_document(demo):
    result = run_cli("snapshot", "--address", str(demo.address))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    doc = json.loads(result.stdout)
    assert result.stdout == json.dumps(doc, sort_keys=True, indent=2) + "\n"  # keys sorted, diffable
    assert doc["schema"] == "ezmsg-console.snapshot/1" and doc["errors"] == []
    assert doc["address"] == str(demo.address) and doc["embedded_demo"] is False
    assert doc["server"]["id"] and doc["server"]["epoch"] and abs(doc["captured"]["epoch"] - time.time()) < 60
    assert doc["captured"]["iso"].endswith("+00:00")
    topo = doc["topology"]
    assert {(e["from"], e["to"]) for e in topo["edges"]} >= set(DEMO_EDGES)
    assert all(e["owners"] for e in topo["edges"]) and topo["publishers"] and topo["subscribers"]
    components = {c["address"] for s in topo["sessions"] for c in s["components"]}
    assert components >= set(DEMO_UNITS) | {"DEMO"}
    for unit in DEMO_UNITS:
        entry = doc["settings"][unit]
        assert entry["schema"]["fields"] and isinstance(entry["value"], dict) and entry["seq"] >= 1
    processes = doc["processes"]
    assert sorted(u for p in processes for u in p["units"]) == sorted(DEMO_UNITS)
    for p in processes:
        assert p["pid"] > 0 and psutil.pid_exists(p["pid"]) and p["error"] is None
        assert p["ping_ms"] > 0 and p["stats"]["pid"] == p["pid"]
    assert set(doc["profiling"]) == {p["process_id"] for p in processes}
    for snap in doc["profiling"].values():
        assert snap["publishers"] and snap["subscribers"] and snap["window_seconds"] > 0
    received = {s["topic"]: s["messages_received_total"] for v in doc["profiling"].values() for s in v["subscribers"]}
    assert all(received[dst] > 0 for _src, dst in DEMO_EDGES)


def test_snapshot_dot_and_mermaid(demo):
    dot = run_cli("snapshot", "--format", "dot", "--address", str(demo.address))
    assert dot.returncode == 0, dot.stderr
    assert "digraph ezmsg {" in dot.stdout and dot.stdout.count("{") == dot.stdout.count("}")
    for src, dst in DEMO_EDGES:
        assert f'"{src}" -> "{dst}";' in dot.stdout
    for unit in DEMO_UNITS:
        assert f'label="{unit}";' in dot.stdout
    mermaid = run_cli("snapshot", "--format", "mermaid", "--address", str(demo.address))
    assert mermaid.returncode == 0 and "flowchart LR" in mermaid.stdout
    assert "t_DEMO_SOURCE_OUTPUT --> t_DEMO_FILTER_INPUT" in mermaid.stdout


def test_snapshot_csv(demo, tmp_path):
    folder = tmp_path / "snap"
    result = run_cli("snapshot", "--format", "csv", "--window", "0", "-o", str(folder), "--address",
                     str(demo.address))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(folder)) == ["edges.csv", "errors.csv", "processes.csv", "publishers.csv",
                                          "settings.csv", "spans.csv", "subscribers.csv"]
    with open(folder / "settings.csv", newline="") as f:
        settings = list(csv.DictReader(f))
    assert {(r["component"], r["field"], r["type"]) for r in settings} >= {("DEMO/FILTER", "cutoff_hz", "float"),
                                                                           ("DEMO/FILTER", "mode", "enum")}
    with open(folder / "spans.csv", newline="") as f:
        spans = list(csv.DictReader(f))
    iir = [r for r in spans if (r["topic"], r["label"]) == ("DEMO/FILTER/INPUT", "iir")]  # the demo filter's span
    assert len(iir) == 1 and int(iir[0]["count"]) > 0 and 0 < float(iir[0]["p50_ns"]) <= float(iir[0]["max_ns"])
    single = run_cli("snapshot", "--format", "csv", "--include", "edges", "--address", str(demo.address))
    assert single.returncode == 0
    rows = list(csv.reader(io.StringIO(single.stdout)))
    assert rows[0][:2] == ["from_topic", "to_topic"] and {tuple(r[:2]) for r in rows[1:]} >= set(DEMO_EDGES)
    refused = run_cli("snapshot", "--format", "csv", "--address", str(demo.address))
    assert refused.returncode == 64 and "--include" in one_line_error(refused)


# -- get and set ------------------------------------------------------------------------


def test_get(demo):
    text = run_cli("get", "DEMO/FILTER", "--address", str(demo.address))
    assert text.returncode == 0 and text.stdout.startswith("DEMO/FILTER")
    assert "cutoff_hz" in text.stdout and "Corner" in text.stdout
    data = json.loads(run_cli("get", "DEMO/FILTER", "--format", "json", "--address", str(demo.address)).stdout)
    state = filter_settings(demo)
    assert data["value"] == state.value.structured_value and data["seq"] == state.seq
    assert {f["path"] for f in data["fields"]} >= {"cutoff_hz", "order", "mode"}
    unknown = run_cli("get", "DEMO/NOPE", "--address", str(demo.address))
    assert unknown.returncode == 1 and "DEMO/NOPE" in one_line_error(unknown)


def test_set_good_value(demo):
    before = filter_settings(demo)
    target = 45.0 if before.value.structured_value["cutoff_hz"] != 45.0 else 46.0
    result = run_cli("set", "DEMO/FILTER", "cutoff_hz", f"{target:g}", "--expected-seq", str(before.seq),
                     "--address", str(demo.address))
    assert result.returncode == 0, result.stderr
    after = filter_settings(demo)
    assert after.value.structured_value["cutoff_hz"] == target and after.seq > before.seq
    assert result.stdout.strip() == f"DEMO/FILTER cutoff_hz = {target} (seq {after.seq})"
    mode = "highpass" if after.value.structured_value["mode"] == "lowpass" else "lowpass"
    plain = run_cli("set", "DEMO/FILTER", "mode", mode, "--address", str(demo.address))  # a plain string
    assert plain.returncode == 0 and filter_settings(demo).value.structured_value["mode"] == mode


@pytest.mark.parametrize("field, value, words", [
    ("cutoff_hz", "1000", ("cutoff_hz", "200", "INVALID_VALUE")),
    ("order", "3", ("order", "one of")),
    ("nope", "1", ("nope", "UNKNOWN_FIELD")),
])
def test_set_bad_value_changes_nothing(demo, field, value, words):
    before = filter_settings(demo)
    result = run_cli("set", "DEMO/FILTER", field, value, "--address", str(demo.address))
    assert result.returncode == 1 and result.stdout == ""
    line = one_line_error(result)
    assert all(w in line for w in words), line
    after = filter_settings(demo)
    assert after.seq == before.seq and after.value == before.value


def test_set_conflict_and_unknown_component(demo):
    stale = run_cli("set", "DEMO/FILTER", "order", "2", "--expected-seq", "0", "--address", str(demo.address))
    assert stale.returncode == 1 and "CONFLICT" in one_line_error(stale)
    unknown = run_cli("set", "DEMO/NOPE", "x", "1", "--address", str(demo.address))
    assert unknown.returncode == 1 and "unknown component 'DEMO/NOPE'" in one_line_error(unknown)


# -- watch ------------------------------------------------------------------------------


def test_watch_prints_topology_events_as_json_lines(demo):
    proc = subprocess.Popen([sys.executable, "-m", "ezmsg_console", "watch", "--jsonl", "--count", "2",
                             "--address", str(demo.address)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], TIMEOUT)  # the line printed once subscribed
        assert ready and "watching topology and settings" in proc.stderr.readline()

        async def change(ctx: GraphContext) -> None:
            await ctx.connect("WATCH/A/OUT", "WATCH/B/IN")
            await ctx.disconnect("WATCH/A/OUT", "WATCH/B/IN")
        ask(demo, change)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    assert [(e["stream"], e["kind"], e["changed_topics"]) for e in lines] == [
        ("topology", "GRAPH_CHANGED", ["WATCH/B/IN"])] * 2
    assert lines[1]["seq"] == lines[0]["seq"] + 1


# -- no server ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("snapshot",), ("get", "DEMO/FILTER"), ("set", "DEMO/FILTER", "order", "2"),
                                     ("watch",)])
def test_unreachable_server_exits_2(command):
    result = run_cli(*command, "--address", free_address())
    assert result.returncode == 2 and result.stdout == ""
    assert "no GraphServer answered" in one_line_error(result)


def test_help():
    for command, words in (("snapshot", ("--format", "--include", "--embed-demo", "partial")),
                           ("get", ("COMPONENT", "--format")), ("set", ("FIELD.PATH", "--expected-seq", "JSON")),
                           ("watch", ("--jsonl", "--count", "--after-seq"))):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and all(w in result.stdout for w in words), (command, result.stdout)


def test_embed_demo_snapshot_cleans_up(monkeypatch):
    prefix = f"t{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(RUN_TAG_PREFIX_ENV, prefix)
    address = free_address()
    result = run_cli("snapshot", "--embed-demo", "--address", address, "--timeout", "20")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["embedded_demo"] is True and doc["address"] == address and doc["errors"] == []
    assert sorted(u for p in doc["processes"] for u in p["units"]) == sorted(DEMO_UNITS)
    received = {s["topic"]: s["messages_received_total"] for v in doc["profiling"].values() for s in v["subscribers"]}
    assert all(received[dst] > 0 for _src, dst in DEMO_EDGES)
    assert shm.ours(prefix) == []
    pids = {p["pid"] for p in doc["processes"]}
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            ours = proc.pid in pids or proc.environ().get(RUN_TAG_ENV, "").startswith(prefix)
            if ours and proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc.info)
        except psutil.Error:
            pass
    assert left == []
    assert run_cli("get", "DEMO/FILTER", "--address", address).returncode == 2  # the server is gone too


def test_no_terminal_prints_a_snapshot(demo):
    result = run_cli("--address", str(demo.address))
    assert result.returncode == 0 and "no terminal" in result.stderr
    assert json.loads(result.stdout)["schema"] == "ezmsg-console.snapshot/1"


# -- last: a hung worker (the demo recovers, but keep it at the end of the module) ----------


def test_hung_worker_gives_a_partial_snapshot(demo):
    async def sink_process(ctx: GraphContext) -> tuple[str, int]:
        return next((p.process_id, p.pid) for p in (await ctx.snapshot()).processes if "DEMO/SINK" in p.units)
    process_id, pid = ask(demo, sink_process)
    os.kill(pid, signal.SIGSTOP)
    try:
        result = run_cli("snapshot", "--timeout", "2", "--address", str(demo.address))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.returncode == 3
    assert "partial snapshot" in one_line_error(result) and process_id in result.stderr
    doc = json.loads(result.stdout)
    assert {(e["process_id"], e["section"], e["error_code"]) for e in doc["errors"]} == {
        (process_id, "processes", "TIMEOUT"), (process_id, "profiling", "TIMEOUT")}
    assert doc["profiling"][process_id]["error_code"] == "TIMEOUT"
    assert set(doc["settings"]) >= set(DEMO_UNITS)  # the rest of the document is complete
    others = [p for p in doc["processes"] if p["process_id"] != process_id]
    assert others and all(p["error"] is None and p["stats"] for p in others)
