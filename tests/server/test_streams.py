"""Push streams under load: gap markers instead of silent loss or blocking."""

from __future__ import annotations

import asyncio

import pytest

from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.errors import ServerError
from ezmsg_console.protocol.graph import TopologyEvent

from ..conftest import TIMEOUT, eventually


def expand(items):
    """Seq numbers covered by a list of events and gaps, in arrival order."""
    seqs = []
    for item in items:
        if isinstance(item, m.StreamGap):
            seqs.extend(range(item.from_seq, item.to_seq + 1))
        else:
            seqs.append(item.seq)
    return seqs


async def test_slow_client_reader_gets_gap_while_normal_reader_gets_everything(server, make_ctx):
    writer = await make_ctx(server.address)
    reader = await make_ctx(server.address)
    slow = await reader.subscribe_topology_events(after_seq=None, max_queue=8)
    normal = await reader.subscribe_topology_events(after_seq=None)
    for i in range(30):
        await writer.connect("src", f"d{i}")
    await reader.sync()
    normal_items = [await normal.next(TIMEOUT) for _ in range(30)]
    assert [e.seq for e in normal_items] == list(range(1, 31))
    assert all(isinstance(e, TopologyEvent) for e in normal_items)

    slow_items = [await slow.next(TIMEOUT) for _ in range(9)]  # 8 events + 1 gap marker
    gaps = [i for i in slow_items if isinstance(i, m.StreamGap)]
    assert len(gaps) == 1 and gaps[0].reason == "overflow"
    assert (gaps[0].from_seq, gaps[0].to_seq) == (9, 30)
    assert expand(slow_items) == list(range(1, 31))
    # after the gap, the slow reader is live again
    await writer.connect("src", "late")
    assert (await slow.next(TIMEOUT)).seq == 31


async def test_server_side_overflow_for_a_peer_that_stops_reading(make_server, make_ctx, raw_peer):
    server = await make_server(stream_queue_events=16, write_deadline=TIMEOUT)
    writer = await make_ctx(server.address)
    healthy = await make_ctx(server.address)
    healthy_sub = await healthy.subscribe_topology_events(after_seq=None)
    raw = await raw_peer(server.address, rcvbuf=4096)
    assert isinstance(await raw.handshake(role=m.Role.OBSERVER), m.Welcome)
    raw.send(m.Subscribe(1, m.StreamKind.TOPOLOGY, -1))
    assert isinstance(await raw.recv(), m.Subscribed)
    # The raw peer now reads nothing while a burst of fat events is published:
    # ~8 MB, more than the kernel's socket buffers (4 MiB at most here) hold.
    topics = [f"T/{'x' * 20000}/{i}" for i in range(400)]
    for topic in topics:
        await writer.connect("src", topic)
    # the healthy subscriber is unaffected and sees every event
    got = [await healthy_sub.next(TIMEOUT) for _ in range(400)]
    assert [e.seq for e in got] == list(range(1, 401))
    # now the raw peer reads: events, then an explicit gap, then more events
    items = []
    while not expand(items) or expand(items)[-1] < 400:
        msg = await raw.recv()
        assert isinstance(msg, (m.StreamEvent, m.StreamGap))
        items.append(msg if isinstance(msg, m.StreamGap) else msg.event)
    assert any(isinstance(i, m.StreamGap) and i.reason == "overflow" for i in items)
    assert expand(items) == list(range(1, 401))


async def test_stuck_peer_is_closed_as_slow_consumer_and_others_keep_working(make_server, make_ctx, raw_peer):
    server = await make_server(stream_queue_events=4, write_deadline=0.3, max_pending_bytes=256 * 1024)
    writer = await make_ctx(server.address)
    raw = await raw_peer(server.address, rcvbuf=2048)
    await raw.handshake(role=m.Role.OBSERVER)
    raw.send(m.Subscribe(1, m.StreamKind.TOPOLOGY, -1))
    await raw.recv()
    peers_before = server.peer_count
    # fill the stuck peer's socket buffers (~6 MB > 4 MiB kernel maximum); it never reads
    for i in range(300):
        await writer.connect("src", f"{'y' * 20000}/{i}")
        assert await writer.ping() < TIMEOUT  # nobody waits on the stuck peer
    await eventually(lambda: server.peer_count < peers_before, what="the stuck peer dropped")
    assert await raw.closed_by_server()
    await writer.revert()
    await writer.connect("after", "stuck")
    assert (await writer.snapshot(timeout=TIMEOUT)).edges == [("after", "stuck")]


async def test_a_reply_over_the_frame_limit_arrives_in_chunks(make_server, make_ctx):
    server = await make_server(max_frame_size=64 * 1024)
    ctx = await make_ctx(server.address)
    for i in range(40):
        await ctx.connect("src", f"{'z' * 5000}/{i}")  # ~200 KB of topics: a snapshot of 4 frames
    snap = await ctx.snapshot()
    assert sorted(snap.edges) == sorted(("src", f"{'z' * 5000}/{i}") for i in range(40))
    assert await ctx.ping() >= 0


async def test_reply_over_the_message_limit_is_a_typed_error_not_a_dead_connection(make_server, make_ctx):
    server = await make_server(max_frame_size=64 * 1024, max_message_size=128 * 1024)
    ctx = await make_ctx(server.address)
    for i in range(40):
        await ctx.connect("src", f"{'z' * 5000}/{i}")
    with pytest.raises(ServerError) as info:
        await ctx.snapshot()
    assert info.value.details["code"] == "RESPONSE_TOO_LARGE"
    assert "131072" in str(info.value)
    assert await ctx.ping() >= 0  # the connection survived


async def test_unsubscribe_ends_the_stream(server, make_ctx):
    ctx = await make_ctx(server.address)
    sub = await ctx.subscribe_topology_events(after_seq=None)
    await sub.close()
    await ctx.connect("a", "b")
    assert await sub.next(TIMEOUT) is None


async def test_a_slow_but_progressing_reader_gets_gap_markers_not_a_close(make_server, make_ctx, raw_peer):
    """The write deadline counts time without progress: a reader that keeps reading, only slower
    than events come, stays connected; what it cannot keep up with becomes gap markers."""
    server = await make_server(stream_queue_events=64, write_deadline=0.3)
    writer = await make_ctx(server.address)
    raw = await raw_peer(server.address, rcvbuf=16 * 1024)
    assert isinstance(await raw.handshake(role=m.Role.OBSERVER), m.Welcome)
    raw.send(m.Subscribe(1, m.StreamKind.TOPOLOGY, -1))
    assert isinstance(await raw.recv(), m.Subscribed)
    items: list = []

    async def read_slowly() -> None:
        while not expand(items) or expand(items)[-1] < 300:
            data = await asyncio.wait_for(raw.reader.read(64 * 1024), TIMEOUT)
            assert data, "closed by the server"
            for msg in raw.conn.receive_data(data):
                assert isinstance(msg, (m.StreamEvent, m.StreamGap))
                items.append(msg if isinstance(msg, m.StreamGap) else msg.event)
            await asyncio.sleep(0.03)  # ~0.5 MB/s: a batch of 64 events (1.3 MB) takes ~2.5 s; the deadline is 0.3 s

    reader = asyncio.ensure_future(read_slowly())
    for i in range(300):  # ~6 MB of events, more than the kernel's buffers hold
        await writer.connect("src", f"T/{'z' * 20000}/{i}")
    await asyncio.wait_for(reader, 6 * TIMEOUT)
    assert any(isinstance(i, m.StreamGap) and i.reason == "overflow" for i in items)
    assert expand(items) == list(range(1, 301))
    assert await writer.ping() >= 0
