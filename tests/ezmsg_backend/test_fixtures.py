"""The upstream-ezmsg fixtures work, checked with upstream's own GraphContext only."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Awaitable, Callable, TypeVar

import psutil
import pytest

from ezmsg.core.graphcontext import GraphContext
from ezmsg.core.graphmeta import SettingsChangedEvent, SettingsEventType

from ..conftest import TIMEOUT
from .conftest import EzmsgPipeline, EzmsgServer, read_greeting

T = TypeVar("T")


async def poll_until(fetch: Callable[[], Awaitable[T]], ok: Callable[[T], bool],
                     what: str, timeout: float = TIMEOUT) -> T:
    """Await ``fetch()`` every 50 ms until ``ok(result)``, bounded by ``timeout``."""
    async def loop() -> T:
        while True:
            value = await fetch()
            if ok(value):
                return value
            await asyncio.sleep(0.05)
    try:
        return await asyncio.wait_for(loop(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise AssertionError(f"{what} not seen within {timeout} s") from None


async def next_event_for(events: Any, address: str) -> SettingsChangedEvent:
    """The next settings event of ``address`` from a subscribe_settings_events iterator."""
    async def loop() -> SettingsChangedEvent:
        async for event in events:
            if event.component_address == address:
                return event
        raise AssertionError("settings event stream ended")
    return await asyncio.wait_for(loop(), TIMEOUT)


def ctx_for(server: EzmsgServer) -> GraphContext:
    return GraphContext(graph_address=(server.host, server.port), auto_start=False)


async def test_server_greets_and_restarts_on_same_port(ezmsg_server: EzmsgServer) -> None:
    import ezmsg.core

    assert ezmsg_server.version == ezmsg.core.__version__
    assert ezmsg_server.address == f"127.0.0.1:{ezmsg_server.port}"
    old_pid, port = ezmsg_server.proc.pid, ezmsg_server.port
    ezmsg_server.restart()
    assert ezmsg_server.port == port and ezmsg_server.proc.pid != old_pid
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    assert await asyncio.to_thread(read_greeting, ezmsg_server.host, port, TIMEOUT) == ezmsg_server.version
    async with ctx_for(ezmsg_server) as ctx:
        snap = await asyncio.wait_for(ctx.snapshot(), TIMEOUT)
    assert snap.processes == {}


async def test_units_spread_over_processes(ezmsg_pipeline: EzmsgPipeline) -> None:
    async with ctx_for(ezmsg_pipeline.server) as ctx:
        snap = await asyncio.wait_for(ctx.snapshot(), TIMEOUT)
        stats = await asyncio.wait_for(ctx.process_stats("DEMO/SINK", timeout=TIMEOUT), TIMEOUT + 1)
    owner = {unit: proc for proc in snap.processes.values() for unit in proc.units}
    assert sorted(owner) == sorted(ezmsg_pipeline.units)
    assert len({owner[u].process_id for u in ezmsg_pipeline.units}) >= 3
    assert {owner[u].pid for u in ezmsg_pipeline.units} <= set(ezmsg_pipeline.worker_pids)
    assert stats.owned_units == ["DEMO/SINK"] and stats.pid == owner["DEMO/SINK"].pid

    # The demo's session carries the metadata: which units take dynamic settings.
    components = {
        address: meta
        for session in snap.sessions.values() if session.metadata is not None
        for address, meta in session.metadata.components.items()
    }
    dynamic = {a for a, m in components.items() if m.dynamic_settings.enabled}
    assert dynamic == set(ezmsg_pipeline.dynamic_units)
    assert components["DEMO/GEN"].dynamic_settings.input_topic == "DEMO/GEN/INPUT_SETTINGS"
    assert components["DEMO"].children == sorted(ezmsg_pipeline.units)


async def test_settings_snapshot_schema(ezmsg_pipeline: EzmsgPipeline) -> None:
    async with ctx_for(ezmsg_pipeline.server) as ctx:
        settings = await asyncio.wait_for(ctx.settings_snapshot(), TIMEOUT)
    assert set(settings) == {"DEMO", *ezmsg_pipeline.units}
    gen = {f.name: f for f in settings["DEMO/GEN"].settings_schema.fields}
    assert gen["rate_hz"].bounds == (1.0, 1000.0)
    assert gen["rate_hz"].field_type == "builtins.float"
    assert gen["rate_hz"].description
    assert gen["channels"].bounds == (1.0, 256.0)
    assert gen["waveform"].choices == ["sine", "square", "noise"]
    assert settings["DEMO/GEN"].structured_value == {
        "rate_hz": 20.0, "channels": 8, "waveform": "sine", "enabled": True}
    filt = {f.name: f for f in settings["DEMO/FILTER"].settings_schema.fields}
    assert filt["window"].default == {"length": 5, "kind": "hann"}
    assert [f.name for f in settings["DEMO/STATS"].settings_schema.fields] == ["decimate"]
    assert settings["DEMO/SINK"].settings_schema.fields == []


async def test_update_setting_flat_and_nested(ezmsg_pipeline: EzmsgPipeline) -> None:
    async with ctx_for(ezmsg_pipeline.server) as ctx:
        snap = await asyncio.wait_for(ctx.snapshot(), TIMEOUT)
        owner = {u: p.process_id for p in snap.processes.values() for u in p.units}
        # The subscription connects lazily (on first iteration); starting after the
        # current last seq replays whatever happened in between, so nothing is missed.
        history = await asyncio.wait_for(ctx.settings_events(), TIMEOUT)
        events = ctx.subscribe_settings_events(after_seq=max((e.seq for e in history), default=0))
        try:
            result = await asyncio.wait_for(
                ctx.update_setting("DEMO/GEN", "rate_hz", 50.0, timeout=TIMEOUT), TIMEOUT + 1)
            assert result.structured_value["rate_hz"] == 50.0
            event = await next_event_for(events, "DEMO/GEN")
            assert event.event_type is SettingsEventType.SETTINGS_UPDATED
            assert event.source_process_id == owner["DEMO/GEN"]
            assert event.value.structured_value["rate_hz"] == 50.0

            result = await asyncio.wait_for(
                ctx.update_setting("DEMO/FILTER", "window.length", 9, timeout=TIMEOUT), TIMEOUT + 1)
            assert result.structured_value == {
                "gain": 1.0, "mode": "lowpass", "window": {"length": 9, "kind": "hann"}}
            event = await next_event_for(events, "DEMO/FILTER")
            assert event.value.structured_value["window"] == {"length": 9, "kind": "hann"}
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(events.aclose(), TIMEOUT)

        settings = await asyncio.wait_for(ctx.settings_snapshot(), TIMEOUT)
        assert settings["DEMO/GEN"].structured_value["rate_hz"] == 50.0
        assert settings["DEMO/FILTER"].structured_value["window"]["length"] == 9

        # Refusals come back as errors, not hangs.
        with pytest.raises(RuntimeError, match="does not expose INPUT_SETTINGS"):
            await asyncio.wait_for(ctx.update_setting("DEMO/STATS", "decimate", 2), TIMEOUT)
        with pytest.raises(RuntimeError, match="does not exist"):
            await asyncio.wait_for(ctx.update_setting("DEMO/FILTER", "window.nope", 1), TIMEOUT)

        # Reshaping the stream (fewer channels) keeps every unit running.
        await asyncio.wait_for(ctx.update_setting("DEMO/GEN", "channels", 3), TIMEOUT)
        total = lambda s: s.subscribers and min(x.messages_received_total for x in s.subscribers.values())  # noqa: E731
        before = total(await asyncio.wait_for(ctx.process_profiling_snapshot("DEMO/SINK"), TIMEOUT))
        await poll_until(
            lambda: asyncio.wait_for(ctx.process_profiling_snapshot("DEMO/SINK"), TIMEOUT),
            lambda s: total(s) >= before + 3, "SINK still receiving after channels=3")
    assert ezmsg_pipeline.proc.poll() is None


async def test_profiling_snapshot(ezmsg_pipeline: EzmsgPipeline) -> None:
    async with ctx_for(ezmsg_pipeline.server) as ctx:
        prof = await poll_until(
            lambda: asyncio.wait_for(ctx.process_profiling_snapshot("DEMO/FILTER"), TIMEOUT),
            lambda p: any(s.messages_received_total > 0 for s in p.subscribers.values()),
            "FILTER receiving")
        assert {p.topic for p in prof.publishers.values()} == {"DEMO/FILTER/OUTPUT"}
        assert {s.topic for s in prof.subscribers.values()} == {
            "DEMO/FILTER/INPUT", "DEMO/FILTER/INPUT_SETTINGS"}
        assert all(key.startswith(f"{v.topic}:") for key, v in prof.publishers.items())
        everything = await asyncio.wait_for(ctx.profiling_snapshot_all(timeout_per_process=TIMEOUT), TIMEOUT * 2)
    assert len(everything) == 4
