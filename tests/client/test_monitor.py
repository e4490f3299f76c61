"""GraphMonitor: live state, staleness and recovery across a GraphServer restart (no UI)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ezmsg_console.client.context import GraphContext
from ezmsg_console.client.monitor import ConnState, GraphMonitor
from ezmsg_console.protocol.errors import PermissionDenied
from ezmsg_console.protocol.graph import ComponentMetadata, ComponentType, GraphMetadata
from ezmsg_console.server import GraphServer

from ..conftest import TIMEOUT, eventually

META = GraphMetadata((ComponentMetadata("APP", "APP", ComponentType.UNIT, initial_settings={"gain": 1.0}),))


async def test_monitor_follows_topology_and_settings_live(server: GraphServer, make_ctx: Any) -> None:
    kinds: list[str] = []
    monitor = GraphMonitor(server.address, timeout=TIMEOUT, on_change=kinds.append)
    monitor.start()
    try:
        assert await monitor.wait_connected(TIMEOUT)
        ctx: GraphContext = await make_ctx(server.address)
        await ctx.connect("A/OUT", "B/IN")
        await ctx.register_metadata(META)
        await eventually(lambda: monitor.state.snapshot is not None and monitor.state.snapshot.edges == [
            ("A/OUT", "B/IN")], what="the edge in the monitor's snapshot")
        await eventually(lambda: "APP" in monitor.state.settings, what="APP's settings")
        assert monitor.state.initial_settings["APP"] == {"gain": 1.0}
        assert [e.changed_topics for e in monitor.state.topology_events][-1] == ("B/IN",)
        assert {"connection", "topology", "settings"} <= set(kinds)
        assert not monitor.state.stale
    finally:
        await monitor.stop()


async def test_read_only_monitor_refuses_mutations(server: GraphServer) -> None:
    monitor = GraphMonitor(server.address, timeout=TIMEOUT, read_only=True)
    monitor.start()
    try:
        assert await monitor.wait_connected(TIMEOUT)
        with pytest.raises(PermissionDenied):
            await monitor.update_setting("APP", "gain", 2.0)
        with pytest.raises(PermissionDenied):
            await monitor.set_trace("X", True)
    finally:
        await monitor.stop()


async def test_server_restart_keeps_stale_data_then_resyncs_to_the_new_epoch() -> None:
    first = GraphServer("127.0.0.1:0")
    address = first.start_in_thread(TIMEOUT)
    monitor = GraphMonitor(address, timeout=TIMEOUT)
    monitor.start()
    second: GraphServer | None = None
    try:
        assert await monitor.wait_connected(TIMEOUT)
        async with GraphContext(address, timeout=TIMEOUT) as ctx:
            await ctx.connect("OLD/OUT", "OLD/IN", persistent=True)
            await eventually(lambda: monitor.state.snapshot is not None and bool(monitor.state.snapshot.edges),
                             what="the first server's edge")
        old_epoch = monitor.state.server_epoch

        first.stop_thread()
        await eventually(lambda: monitor.state.conn_state is ConnState.RECONNECTING, what="reconnecting")
        assert monitor.state.stale and monitor.state.snapshot is not None  # the last data is kept
        assert monitor.state.snapshot.edges == [("OLD/OUT", "OLD/IN")]

        second = GraphServer(str(address))
        await asyncio.to_thread(second.start_in_thread, TIMEOUT)
        await eventually(lambda: monitor.state.conn_state is ConnState.CONNECTED, timeout=TIMEOUT,
                         what="reconnected")
        assert monitor.state.server_epoch != old_epoch
        async with GraphContext(address, timeout=TIMEOUT) as ctx:
            await ctx.connect("NEW/OUT", "NEW/IN", persistent=True)
            await eventually(lambda: monitor.state.snapshot is not None
                             and monitor.state.snapshot.edges == [("NEW/OUT", "NEW/IN")],
                             what="the new server's graph, and only it")
    finally:
        await monitor.stop()
        first.stop_thread()
        if second is not None:
            second.stop_thread()
