"""Topology, sessions and metadata over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from ezmsg_console.protocol.errors import AddressCollision, CycleError, PermissionDenied
from ezmsg_console.protocol.graph import (
    PERSISTENT_OWNER,
    ComponentMetadata,
    ComponentType,
    GraphMetadata,
    StreamDirection,
    StreamMetadata,
    TopologyEvent,
    TopologyEventType,
)
from ezmsg_console.protocol.messages import Role, StreamGap

from ..conftest import TIMEOUT


def metadata(*addresses: str) -> GraphMetadata:
    comps = []
    for address in addresses:
        name = address.rsplit("/", 1)[-1]
        comps.append(
            ComponentMetadata(
                address=address,
                name=name,
                component_type=ComponentType.UNIT,
                python_type="demo.Unit",
                streams=(StreamMetadata("INPUT", StreamDirection.INPUT, f"{address}/INPUT", "numpy.ndarray"),),
                settings_type="demo.Settings",
                initial_settings={"gain": 1.5, "name": name},
                dynamic_settings=True,
            )
        )
    return GraphMetadata(tuple(comps))


async def test_connect_shows_in_snapshot_with_owner(server, make_ctx):
    ctx = await make_ctx(server.address)
    await ctx.connect("A/OUT", "B/IN")
    await ctx.connect("B/OUT", "C/IN", persistent=True)
    snap = await ctx.snapshot()
    assert snap.graph == {"A/OUT": ("B/IN",), "B/IN": (), "B/OUT": ("C/IN",), "C/IN": ()}
    owners = {(e.from_topic, e.to_topic): e.owners for e in snap.edge_owners}
    assert owners == {("A/OUT", "B/IN"): (ctx.session_id,), ("B/OUT", "C/IN"): (PERSISTENT_OWNER,)}
    me = snap.session(ctx.session_id)
    assert me is not None and [(e.from_topic, e.to_topic) for e in me.edges] == [("A/OUT", "B/IN")]
    assert snap.server_epoch == ctx.server_epoch and snap.topology_seq == 2


async def test_cycles_and_self_loops_are_refused_and_change_nothing(server, make_ctx):
    ctx = await make_ctx(server.address)
    events = await ctx.subscribe_topology_events(after_seq=None)
    await ctx.connect("a", "b")
    await ctx.connect("b", "c")
    before = await ctx.snapshot()
    with pytest.raises(CycleError, match="cycle"):
        await ctx.connect("c", "a")
    with pytest.raises(CycleError):
        await ctx.connect("b", "b")
    after = await ctx.snapshot()
    assert after.graph == before.graph and after.topology_seq == before.topology_seq == 2
    seqs = [(await events.next(TIMEOUT)).seq for _ in range(2)]
    assert seqs == [1, 2]
    await ctx.connect("a", "c")  # a diamond is not a cycle
    ev = await events.next(TIMEOUT)
    assert isinstance(ev, TopologyEvent) and ev.seq == 3 and ev.changed_topics == ("c",)


async def test_session_close_removes_its_edges_with_one_event(server, make_ctx):
    owner = await make_ctx(server.address)
    watcher = await make_ctx(server.address)
    await owner.connect("x", "y")
    await owner.connect("y", "z")
    await owner.connect("p", "q", persistent=True)
    owner_id = owner.session_id
    events = await watcher.subscribe_topology_events(after_seq=None)
    await owner.close()
    ev = await events.next(TIMEOUT)
    assert isinstance(ev, TopologyEvent)
    assert ev.event_type is TopologyEventType.GRAPH_CHANGED
    assert ev.changed_topics == ("y", "z") and ev.source_session_id == owner_id
    snap = await watcher.snapshot()
    assert snap.edges == [("p", "q")]
    assert snap.session(owner_id) is None
    # exactly one event: the next one we cause has the next seq
    await watcher.connect("m", "n")
    nxt = await events.next(TIMEOUT)
    assert nxt.seq == ev.seq + 1


async def test_revert_clears_edges_and_metadata_but_keeps_session(server, make_ctx):
    ctx = await make_ctx(server.address)
    await ctx.register_metadata(metadata("SYS/A"))
    await ctx.connect("SYS/A/OUT", "SYS/B/IN")
    await ctx.revert()
    snap = await ctx.snapshot()
    me = snap.session(ctx.session_id)
    assert snap.edges == [] and me is not None and me.metadata is None
    other = await make_ctx(server.address)
    await other.register_metadata(metadata("SYS/A"))  # the address is free again


async def test_shared_edge_lives_until_last_owner_leaves(server, make_ctx):
    first = await make_ctx(server.address)
    second = await make_ctx(server.address)
    watcher = await make_ctx(server.address)
    events = await watcher.subscribe_topology_events(after_seq=None)
    await first.connect("s", "t")
    await second.connect("s", "t")  # a second owner: no event
    await second.disconnect("u", "v")  # not an edge: silent no-op
    await first.close()
    assert (await watcher.snapshot()).edges == [("s", "t")]
    await second.disconnect("s", "t")
    seen = [await events.next(TIMEOUT) for _ in range(2)]
    assert [(e.seq, e.changed_topics) for e in seen] == [(1, ("t",)), (2, ("t",))]
    assert seen[1].source_session_id == second.session_id
    assert (await watcher.snapshot()).edges == []


async def test_metadata_collision_names_every_address_and_changes_nothing(server, make_ctx):
    first = await make_ctx(server.address)
    second = await make_ctx(server.address)
    await first.register_metadata(metadata("SYS/A", "SYS/B", "SYS/C"))
    await second.register_metadata(metadata("OTHER/X"))
    with pytest.raises(AddressCollision) as info:
        await second.register_metadata(metadata("SYS/C", "NEW/Y", "SYS/A"))
    assert "SYS/A, SYS/C" in str(info.value)
    assert info.value.details["addresses"] == ["SYS/A", "SYS/C"]
    snap = await second.snapshot()
    mine = snap.session(second.session_id)
    assert mine is not None and mine.metadata is not None
    assert mine.metadata.addresses == ["OTHER/X"]  # unchanged by the refused call
    # re-registering one's own addresses (a replacement) is fine
    await first.register_metadata(metadata("SYS/A", "SYS/B"))
    theirs = (await first.snapshot()).session(first.session_id)
    assert theirs is not None and theirs.metadata is not None
    assert theirs.metadata.addresses == ["SYS/A", "SYS/B"]
    assert theirs.metadata.components[0].initial_settings == {"gain": 1.5, "name": "A"}
    await second.register_metadata(metadata("SYS/C"))  # released by the replacement


async def test_observers_cannot_mutate(server, make_ctx):
    observer = await make_ctx(server.address, role=Role.OBSERVER)
    with pytest.raises(PermissionDenied):
        await observer.connect("a", "b")
    with pytest.raises(PermissionDenied):
        await observer.register_metadata(metadata("SYS/A"))
    assert (await observer.snapshot()).edges == []


async def test_after_seq_replays_history_then_streams_live(server, make_ctx):
    ctx = await make_ctx(server.address)
    for i in range(5):
        await ctx.connect(f"n{i}", f"n{i + 1}")
    sub = await ctx.subscribe_topology_events(after_seq=3)
    assert sub.current_seq == 5
    replayed = [await sub.next(TIMEOUT) for _ in range(2)]
    assert [e.seq for e in replayed] == [4, 5]
    await ctx.connect("n9", "n10")
    live = await sub.next(TIMEOUT)
    assert live.seq == 6 and live.changed_topics == ("n10",)
    everything = ctx.subscribe_topology_events(after_seq=0)
    seqs = []
    async for ev in everything:
        seqs.append(ev.seq)
        if len(seqs) == 6:
            break
    await everything.close()
    assert seqs == [1, 2, 3, 4, 5, 6]


async def test_after_seq_older_than_history_starts_with_gap(make_server, make_ctx):
    server = await make_server(history_limit=5)
    ctx = await make_ctx(server.address)
    for i in range(10):
        await ctx.connect(f"h{i}", f"h{i + 1}")
    sub = await ctx.subscribe_topology_events(after_seq=2)
    first = await sub.next(TIMEOUT)
    assert isinstance(first, StreamGap)
    assert (first.from_seq, first.to_seq, first.reason) == (3, 5, "history")
    rest = [(await sub.next(TIMEOUT)).seq for _ in range(5)]
    assert rest == [6, 7, 8, 9, 10]


async def test_events_arrive_in_order_on_many_subscribers(server, make_ctx):
    writer = await make_ctx(server.address)
    readers = [await make_ctx(server.address) for _ in range(3)]
    subs = [await r.subscribe_topology_events(after_seq=None) for r in readers]
    for i in range(40):
        await writer.connect("src", f"dst{i}")
    for sub in subs:
        got = [await sub.next(TIMEOUT) for _ in range(40)]
        assert [e.seq for e in got] == list(range(1, 41))
        assert got[-1].changed_topics == ("dst39",)


async def test_concurrent_requests_on_one_session(server, make_ctx):
    ctx = await make_ctx(server.address)
    await asyncio.gather(*(ctx.connect("fan", f"out{i}") for i in range(50)), ctx.sync())
    snap = await ctx.snapshot()
    assert len(snap.edges) == 50
