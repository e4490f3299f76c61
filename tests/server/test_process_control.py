"""Process registration, unit ownership and routed requests over real sockets."""

from __future__ import annotations

import asyncio
import os

import pytest

from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.errors import OwnershipConflict, PermissionDenied, ProcessUnavailable
from ezmsg_console.protocol.graph import TopologyEventType
from ezmsg_console.protocol.process import RoutedResponse
from ezmsg_console.runtime.process_control import ProcessControlClient

from ..conftest import TIMEOUT


@pytest.fixture
async def make_process(server):
    made: list[tuple[ProcessControlClient, ClientConnection]] = []

    async def factory(units=None):
        conn = await ClientConnection.open(server.address, role=m.Role.PROCESS, name="test-process", token=None,
                                           timeout=TIMEOUT)
        pcc = ProcessControlClient(conn)
        if units is not None:
            await pcc.register(units)
        made.append((pcc, conn))
        return pcc

    yield factory
    for pcc, conn in made:
        await pcc.close()
        await conn.close()


async def process_events(sub, n):
    out = []
    for _ in range(n):
        ev = await sub.next(TIMEOUT)
        assert ev.event_type is TopologyEventType.PROCESS_CHANGED
        out.append(ev.source_process_id)
    return out


async def test_register_then_update_shows_in_snapshot(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    proc = await make_process(["U1", "U2"])
    await proc.update_ownership(added_units=("U3",), removed_units=("U1",))
    snap = await ctx.snapshot()
    assert len(snap.processes) == 1
    info = snap.processes[0]
    assert (info.process_id, info.pid, info.host, info.units) == (proc.process_id, os.getpid(), proc.host,
                                                                   ("U2", "U3"))


async def test_process_leaves_snapshot_and_always_emits_process_changed(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    events = await ctx.subscribe_topology_events(after_seq=None)
    silent = await make_process()  # never registers anything
    await silent.conn.close()
    assert await process_events(events, 1) == [silent.process_id]
    assert (await ctx.snapshot()).processes == ()


async def test_conflicting_register_is_atomic_and_names_the_owner(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    owner = await make_process(["SYS/A", "SYS/B"])
    other = await make_process()
    with pytest.raises(OwnershipConflict) as info:
        await other.register(["SYS/B", "SYS/NEW"])
    conflict = info.value.details["conflicts"]
    assert conflict == [{"unit": "SYS/B", "process_id": owner.process_id, "pid": os.getpid(), "host": owner.host}]
    assert "SYS/B" in str(info.value) and owner.process_id in str(info.value)
    snap = await ctx.snapshot()
    units = {p.process_id: p.units for p in snap.processes}
    assert units[other.process_id] == () and units[owner.process_id] == ("SYS/A", "SYS/B")


async def test_update_ownership_rules(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    first = await make_process(["A"])
    second = await make_process(["B"])
    with pytest.raises(OwnershipConflict):
        await second.update_ownership(added_units=("A", "C"))
    await second.update_ownership(added_units=("D",), removed_units=("D", "NOT-MINE"))  # D ends removed
    snap = await ctx.snapshot()
    assert {p.process_id: p.units for p in snap.processes} == {first.process_id: ("A",), second.process_id: ("B",)}


async def test_no_event_for_empty_or_repeated_registration(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    events = await ctx.subscribe_topology_events(after_seq=None)
    proc = await make_process()
    await proc.register([])
    await proc.register(["X"])
    await proc.register(["X"])
    await proc.update_ownership(added_units=("Y",), removed_units=("Y",))
    await proc.conn.close()
    assert await process_events(events, 2) == [proc.process_id, proc.process_id]  # [X], then the close
    await ctx.connect("a", "b")
    assert (await events.next(TIMEOUT)).event_type is TopologyEventType.GRAPH_CHANGED


async def test_sessions_cannot_own_units(server, make_ctx):
    ctx = await make_ctx(server.address)
    from ezmsg_console.protocol.process import ProcessRegister

    with pytest.raises(PermissionDenied):
        await ctx.connection.request(lambda rid: ProcessRegister(rid, 1, "h", ("U",)), m.Ack, TIMEOUT)


async def test_custom_operation_ping_and_stats(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    proc = await make_process(["SYS/A"])
    proc.set_request_handler(lambda unit, op, payload: {"unit": unit, "op": op, "echo": payload})
    response = await ctx.process_request("SYS/A", "ECHO", {"x": [1, 2.5, "z"]})
    assert response.ok and response.payload == {"unit": "SYS/A", "op": "ECHO", "echo": {"x": [1, 2.5, "z"]}}
    assert response.process_id == proc.process_id
    ping = await ctx.process_ping("SYS/A")
    assert ping["process_id"] == proc.process_id and ping["pid"] == os.getpid() > 0 and ping["host"]
    assert ping["timestamp"] > 0
    await proc.update_ownership(added_units=("SYS/B",))
    stats = await ctx.process_stats("SYS/B")
    assert stats["owned_units"] == ["SYS/A", "SYS/B"] and stats["memory_rss_bytes"] > 0
    assert stats["ping_ms"] > 0


async def test_unowned_unit_is_unroutable(server, make_ctx):
    ctx = await make_ctx(server.address)
    response = await ctx.process_request("NOBODY/HOME", "PING")
    assert not response.ok and response.error_code == "UNROUTABLE_UNIT"
    assert "No process owns unit 'NOBODY/HOME'" in response.error and response.process_id is None
    with pytest.raises(ProcessUnavailable, match=r"Process request failed \(UNROUTABLE_UNIT\)"):
        await ctx.process_ping("NOBODY/HOME")


async def test_hung_handler_times_out_while_other_processes_answer(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    hung = await make_process(["SLOW"])
    healthy = await make_process(["FAST"])
    release = asyncio.Event()

    async def never(unit, op, payload):
        await release.wait()
        return "late"

    hung.set_request_handler(never)
    slow = asyncio.ensure_future(ctx.process_request("SLOW", "WAIT", timeout=0.5))
    for _ in range(5):  # pings to the healthy process are not held up by the hung one
        assert (await ctx.process_ping("FAST"))["process_id"] == healthy.process_id
    assert not slow.done()
    response = await asyncio.wait_for(slow, TIMEOUT)
    assert response.error_code == "TIMEOUT" and response.process_id == hung.process_id
    assert "unit=SLOW" in response.error and "operation=WAIT" in response.error
    release.set()  # the late reply arrives and is dropped
    assert (await ctx.process_ping("SLOW"))["process_id"] == hung.process_id
    assert server.core.router.pending == 0


async def test_owner_disconnect_fails_pending_requests_and_frees_units(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    owner = await make_process(["SYS/U"])
    owner.set_request_handler(lambda unit, op, payload: asyncio.Event().wait())
    pending = [asyncio.ensure_future(ctx.process_request("SYS/U", "WAIT", timeout=TIMEOUT)) for _ in range(3)]
    await asyncio.sleep(0)
    await ctx.sync()
    await owner.conn.close()
    responses = await asyncio.wait_for(asyncio.gather(*pending), TIMEOUT)
    assert [r.error_code for r in responses] == ["PROCESS_DISCONNECTED"] * 3
    assert all("disconnected before response" in r.error for r in responses)
    successor = await make_process(["SYS/U"])  # the unit is free at once
    assert (await ctx.process_ping("SYS/U"))["process_id"] == successor.process_id


async def test_handler_errors_and_missing_handler(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    proc = await make_process(["U"])
    response = await ctx.process_request("U", "CUSTOM")
    assert response.error_code == "HANDLER_NOT_CONFIGURED"

    def boom(unit, op, payload):
        raise RuntimeError("kaput")

    proc.set_request_handler(boom)
    response = await ctx.process_request("U", "CUSTOM")
    assert response.error_code == "HANDLER_ERROR" and "kaput" in response.error


async def test_reply_from_the_wrong_process_is_invalid(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    owner = await make_process(["U"])
    impostor = await make_process(["V"])
    seen: asyncio.Queue = asyncio.Queue()

    def capture(unit, op, payload):
        fut = asyncio.get_running_loop().create_future()
        seen.put_nowait(fut)
        return fut

    owner.set_request_handler(capture)
    request = asyncio.ensure_future(ctx.process_request("U", "X", timeout=TIMEOUT))
    await asyncio.wait_for(seen.get(), TIMEOUT)
    route_id = next(iter(server.core.router._pending))  # noqa: SLF001 - the id the owner was given
    impostor.conn.send(RoutedResponse(route_id, ok=True, payload="forged"))
    response = await asyncio.wait_for(request, TIMEOUT)
    assert not response.ok and response.error_code == "INVALID_RESPONSE"
