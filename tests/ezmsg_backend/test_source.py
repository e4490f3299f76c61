"""EzmsgSource against a real upstream GraphServer and a real multi-process ezmsg pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ezmsg_console.client.source import Backend, probe
from ezmsg_console.protocol.address import Address
from ezmsg_console.protocol.errors import InvalidRequest, InvalidValue, UnknownField
from ezmsg_console.protocol.profiling import ProcessProfilingSnapshot, ProfilingStreamControl, ProfilingTraceControl
from ezmsg_console.protocol.settings import SettingsChangedEvent

from ..conftest import TIMEOUT

pytest.importorskip("ezmsg")
from ezmsg_console.ezmsg_backend.source import EzmsgSource  # noqa: E402


async def _source(pipeline: Any) -> EzmsgSource:
    src = EzmsgSource(Address(pipeline.server.host, pipeline.server.port), timeout=TIMEOUT)
    await src.open()
    return src


async def test_probe_names_the_ezmsg_server_and_its_version(ezmsg_server: Any) -> None:
    found = await probe(Address(ezmsg_server.host, ezmsg_server.port))
    assert found.backend is Backend.EZMSG and found.version == ezmsg_server.version


async def test_snapshot_and_settings_in_our_types(ezmsg_pipeline: Any) -> None:
    src = await _source(ezmsg_pipeline)
    try:
        assert src.server_label == f"ezmsg {ezmsg_pipeline.server.version}"
        snap = await src.snapshot()
        owned = {u for p in snap.processes for u in p.units}
        assert owned == {"DEMO/GEN", "DEMO/FILTER", "DEMO/STATS", "DEMO/SINK"}
        assert len({p.pid for p in snap.processes}) == 4
        assert ("DEMO/GEN/OUTPUT", "DEMO/FILTER/INPUT") in snap.edges
        states = {s.component_address: s for s in await src.settings_snapshot()}
        gen = {f["name"]: f for f in states["DEMO/GEN"].value.settings_schema["fields"]}
        assert gen["rate_hz"]["kind"] == "float" and gen["rate_hz"]["bounds"] == [1.0, 1000.0]
        assert gen["waveform"]["choices"] == ["sine", "square", "noise"] and gen["enabled"]["kind"] == "bool"
        window = {f["name"]: f for f in states["DEMO/FILTER"].value.settings_schema["fields"]}["window"]
        assert window["kind"] == "nested" and [f["name"] for f in window["fields"]] == ["length", "kind"]
        assert states["DEMO/GEN"].source_process_id in {p.process_id for p in snap.processes}
    finally:
        await src.close()


async def test_edits_are_checked_before_sending_and_applied(ezmsg_pipeline: Any) -> None:
    src = await _source(ezmsg_pipeline)
    try:
        await src.settings_snapshot()
        events = await src.subscribe_settings_events(after_seq=src._events_seq)
        refused = [("DEMO/GEN", "rate_hz", 5000.0, InvalidValue), ("DEMO/GEN", "rate_hz", "x", InvalidValue),
                   ("DEMO/GEN", "waveform", "tri", InvalidValue), ("DEMO/GEN", "nope", 1, UnknownField),
                   ("DEMO/STATS", "decimate", 2, InvalidRequest), ("DEMO/FILTER", "window", {"length": 3},
                                                                   InvalidValue)]
        for unit, path, value, error in refused:
            with pytest.raises(error):
                await src.update_setting(unit, path, value)
        reply = await src.update_setting("DEMO/GEN", "rate_hz", 50)
        assert reply["value"]["rate_hz"] == 50.0
        event = await events.next(TIMEOUT)
        # Nothing refused reached the pipeline: the first event after them is the accepted edit.
        assert isinstance(event, SettingsChangedEvent) and event.component_address == "DEMO/GEN"
        assert event.value.structured_value["rate_hz"] == 50.0
        reply = await src.update_setting("DEMO/FILTER", "window.length", 7)
        assert reply["value"]["window"] == {"length": 7, "kind": "hann"}
        await events.close()
    finally:
        await src.close()


async def test_profiling_rates_stats_and_traced_handler_percentiles(ezmsg_pipeline: Any) -> None:
    src = await _source(ezmsg_pipeline)
    try:
        trace = await src.subscribe_profiling_trace(ProfilingStreamControl(interval=0.05))
        first = await src.profiling_snapshot_all()
        assert len(first) == 4 and all(isinstance(s, ProcessProfilingSnapshot) for s in first.values())
        assert all("bytes" in s.unmeasured for s in first.values())  # shown as n/a, never as zeros
        await src.process_set_profiling_trace("DEMO/FILTER", ProfilingTraceControl(enabled=True, ttl_seconds=30))
        event = await asyncio.wait_for(trace.next(TIMEOUT), TIMEOUT)
        assert event.batches and {s.metric for b in event.batches for s in b.samples} & {"lease_time_ns"}
        snap = await src.profiling_snapshot_all()
        pids = {p.process_id: p.pid for p in (await src.snapshot()).processes}
        filt = next(s for s in snap.values() if any(q.topic == "DEMO/FILTER/INPUT" for q in s.subscribers))
        assert filt.pid == pids[filt.process_id] and filt.trace is not None and filt.trace_ttl_remaining_s > 0
        sub = next(q for q in filt.subscribers if q.topic == "DEMO/FILTER/INPUT")
        assert sub.receive_rate_hz_window > 0 and sub.handler_ns.count > 0 and sub.handler_ns.p99_ns > 0
        # Upstream times each subscriber callable as a span (topic:callable): our user_spans, by callable.
        spans = {p.label: p for p in sub.user_spans}
        assert "process" in spans and spans["process"].span_ns.count > 0, sub.user_spans
        assert 0 < spans["process"].span_ns.p50_ns <= spans["process"].span_ns.max_ns
        stats = await src.process_stats("DEMO/FILTER")
        assert stats["pid"] == filt.pid and stats["units"] == ["DEMO/FILTER"] and stats["memory_rss_bytes"] > 0
        await src.process_set_profiling_trace("DEMO/FILTER", ProfilingTraceControl(enabled=False))
        await trace.close()
    finally:
        await src.close()


async def test_the_monitor_keeps_a_live_view_of_an_ezmsg_graph(ezmsg_pipeline: Any) -> None:
    from ezmsg_console.client.monitor import GraphMonitor

    changes: asyncio.Queue[str] = asyncio.Queue()
    monitor = GraphMonitor(f"{ezmsg_pipeline.server.host}:{ezmsg_pipeline.server.port}", backend="ezmsg",
                           profiling_interval=0.2, timeout=TIMEOUT, on_change=changes.put_nowait)
    monitor.start()
    try:
        assert await monitor.wait_connected(TIMEOUT)
        st = monitor.state
        assert {"DEMO/GEN", "DEMO/FILTER"} <= set(st.settings) and st.snapshot is not None

        async def until(check: Any, what: str) -> None:
            while not check():
                try:
                    await asyncio.wait_for(changes.get(), TIMEOUT)
                except asyncio.TimeoutError:
                    pytest.fail(f"no change within {TIMEOUT} s while waiting for {what}")

        await until(lambda: len(st.profiling) == 4, "profiling of the four processes")
        await until(lambda: len(st.process_stats) == 4, "stats of the four processes")
        await monitor.update_setting("DEMO/GEN", "channels", 4)
        await until(lambda: st.settings["DEMO/GEN"].value.structured_value["channels"] == 4, "the edit's event")
        assert monitor.undo_stack[-1] == ("DEMO/GEN", "channels", 8)
        with pytest.raises(InvalidValue):
            await monitor.update_setting("DEMO/GEN", "channels", 0)
        assert st.settings["DEMO/GEN"].value.structured_value["channels"] == 4
        undone = await monitor.undo()
        assert undone is not None and undone[:3] == ("DEMO/GEN", "channels", 8)
    finally:
        await monitor.stop()
