"""snapshot, get, set and watch as real subprocesses on a real ezmsg 3.9 pipeline (the ezmsg backend)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

import pytest

from ..conftest import TIMEOUT, free_address
from ..export.conftest import run_cli
from .conftest import DEMO_UNITS

pytest.importorskip("ezmsg")

DOCUMENT_KEYS = {"schema", "captured", "address", "backend", "embedded_demo", "server", "sections", "errors",
                 "topology", "processes", "settings", "profiling"}
"""The top-level keys of an ``ezmsg-console.snapshot/1`` document with every section (export/document.py)."""
ENDPOINT_NULLS = {"publishers": ("bytes_published_total", "backpressure_waits_total", "shm_links"),
                  "subscribers": ("bytes_received_total", "drops_total", "queue_depth", "latency_ns")}


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ezmsg-console: "), result.stderr
    return lines[0]


def gen_settings(pipeline: Any) -> dict[str, Any]:
    result = run_cli("get", "DEMO/GEN", "--format", "json", "--address", pipeline.server.address)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_snapshot_json_has_the_native_shape_and_every_unit(shared_pipeline: Any) -> None:
    result = run_cli("snapshot", "--address", shared_pipeline.server.address)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == DOCUMENT_KEYS and doc["schema"] == "ezmsg-console.snapshot/1" and doc["errors"] == []
    assert doc["backend"] == "ezmsg" and doc["server"]["label"] == f"ezmsg {shared_pipeline.server.version}"
    assert doc["address"] == shared_pipeline.server.address and doc["server"]["epoch"]
    processes = doc["processes"]
    assert sorted(u for p in processes for u in p["units"]) == sorted(DEMO_UNITS) and len(processes) == 4
    assert {p["pid"] for p in processes} == set(shared_pipeline.worker_pids) & {p["pid"] for p in processes}
    for p in processes:
        assert p["error"] is None and p["ping_ms"] > 0 and p["stats"]["memory_rss_bytes"] > 0
    components = {c["address"] for s in doc["topology"]["sessions"] for c in s["components"]}
    assert set(DEMO_UNITS) <= components
    assert {(e["from"], e["to"]) for e in doc["topology"]["edges"]} >= {("DEMO/GEN/OUTPUT", "DEMO/FILTER/INPUT")}
    rate = {f["name"]: f for f in doc["settings"]["DEMO/GEN"]["schema"]["fields"]}["rate_hz"]
    assert rate["bounds"] == [1.0, 1000.0] and rate["kind"] == "float"
    assert set(doc["profiling"]) == {p["process_id"] for p in processes}
    published = {pub["topic"]: pub["messages_published_total"]
                 for snap in doc["profiling"].values() for pub in snap["publishers"]}
    assert published["DEMO/GEN/OUTPUT"] > 0
    for snap in doc["profiling"].values():
        assert "bytes" in snap["unmeasured"]
        for table, names in ENDPOINT_NULLS.items():
            for endpoint in snap[table]:
                assert all(endpoint[n] is None for n in names), endpoint  # n/a, never a fake zero
    dot = run_cli("snapshot", "--format", "dot", "--address", shared_pipeline.server.address)
    assert dot.returncode == 0 and '"DEMO/GEN/OUTPUT" -> "DEMO/FILTER/INPUT"' in dot.stdout


def test_get_and_set_with_the_native_checks_and_exit_codes(shared_pipeline: Any) -> None:
    address = shared_pipeline.server.address
    text = run_cli("get", "DEMO/GEN", "--address", address)
    assert text.returncode == 0 and "rate_hz" in text.stdout and "1..1000" in text.stdout
    before = gen_settings(shared_pipeline)["value"]["rate_hz"]
    new = next(v for v in (25.0, 30.0) if v != before)
    ok = run_cli("set", "DEMO/GEN", "rate_hz", str(new), "--address", address)
    assert ok.returncode == 0 and ok.stdout.strip() == f"DEMO/GEN rate_hz = {new}", ok.stderr
    assert gen_settings(shared_pipeline)["value"]["rate_hz"] == new
    for args, words in ((("DEMO/GEN", "rate_hz", "5000"), "expected a float in [1, 1000]"),
                        (("DEMO/GEN", "waveform", "triangle"), "sine"),
                        (("DEMO/GEN", "nope", "1"), "nope"),
                        (("DEMO/STATS", "decimate", "2"), "DEMO/STATS"),
                        (("DEMO/NOPE", "x", "1"), "unknown component")):
        bad = run_cli("set", *args, "--address", address)
        assert bad.returncode == 1 and bad.stdout == "", (args, bad.stderr)
        assert words in one_line_error(bad), (args, bad.stderr)
    assert gen_settings(shared_pipeline)["value"]["rate_hz"] == new  # nothing refused reached the unit
    run_cli("set", "DEMO/GEN", "rate_hz", str(before), "--address", address)


def test_watch_jsonl_prints_a_settings_event(shared_pipeline: Any) -> None:
    address = shared_pipeline.server.address
    proc = subprocess.Popen([sys.executable, "-m", "ezmsg_console", "watch", "--jsonl", "--settings", "--count", "1",
                             "--address", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stderr], [], [], 3 * TIMEOUT)
        assert ready and "watching settings events" in proc.stderr.readline()
        channels = gen_settings(shared_pipeline)["value"]["channels"]
        new = 4 if channels != 4 else 6
        assert run_cli("set", "DEMO/GEN", "channels", str(new), "--address", address).returncode == 0
        out, err = proc.communicate(timeout=3 * TIMEOUT)
        assert proc.returncode == 0, err
        record = json.loads(out.splitlines()[0])
        assert record["stream"] == "settings" and record["component_address"] == "DEMO/GEN"
        assert record["value"]["channels"] == new and record["kind"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


def test_the_search_order_finds_ezmsg_when_ours_does_not_answer(shared_pipeline: Any) -> None:
    env = {**os.environ, "EZMSG_CONSOLE_ADDRESS": free_address(),
           "EZMSG_GRAPHSERVER_ADDR": shared_pipeline.server.address}
    result = subprocess.run([sys.executable, "-m", "ezmsg_console", "get", "DEMO/FILTER"], capture_output=True,
                            text=True, timeout=3 * TIMEOUT, stdin=subprocess.DEVNULL, env=env)
    assert result.returncode == 0 and "window.length" in result.stdout, result.stderr
    forced = run_cli("get", "DEMO/FILTER", "--backend", "native", "--address", shared_pipeline.server.address)
    assert forced.returncode == 64 and "is an ezmsg GraphServer, not native" in one_line_error(forced)


def test_snapshot_is_quick_enough_to_script(shared_pipeline: Any) -> None:
    """Not a timing assertion: the command must finish well within its own deadline."""
    started = time.monotonic()
    result = run_cli("snapshot", "--include", "settings", "--address", shared_pipeline.server.address)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 3 * TIMEOUT
