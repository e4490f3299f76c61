"""The GraphServer's profiling trace buffers and ``profiling`` push streams, over real sockets.

Fake workers are ``process`` connections that push hand-made
ProcessProfilingTraceUpdate frames; a SYNC on the same connection afterwards
proves the server has ingested them (frames are handled in order).
"""

from __future__ import annotations

import asyncio
import math
import os
import random

import pytest

from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.errors import InvalidRequest, RequestTimeout
from ezmsg_console.protocol.profiling import (
    ProcessProfilingTraceUpdate,
    ProfilingStreamControl,
    ProfilingTraceBatch,
    ProfilingTraceEvent,
    ProfilingTraceSample,
)
from ezmsg_console.runtime.process_control import ProcessControlClient
from ezmsg_console.server.profiling_hub import ProfilingHub
from ezmsg_console.server.registry import Registry

from ..conftest import TIMEOUT, eventually

FAST = 0.01


def sample(seq: int, metric: str = "publish_delta_ns") -> ProfilingTraceSample:
    return ProfilingTraceSample(timestamp_mono_ns=1000 + seq, endpoint_id="pub-1", topic="SYS/A/OUT",
                                metric=metric, value_ns=10 * seq, channel_kind="LOCAL", sample_seq=seq)


class FakeWorker:
    def __init__(self, conn: ClientConnection, pcc: ProcessControlClient) -> None:
        self.conn = conn
        self.pcc = pcc

    @property
    def process_id(self) -> str:
        return self.pcc.process_id

    async def push(self, seqs, *, pid: int = 4242, host: str = "elsewhere", dropped: int = 0) -> None:
        batch = ProfilingTraceBatch(process_id="ignored", pid=pid, host=host,
                                    samples=tuple(sample(s) for s in seqs), dropped=dropped, tracing=True)
        self.conn.send(ProcessProfilingTraceUpdate(batch))
        await self.conn.request(m.SyncRequest, m.Ack, TIMEOUT)  # ingested once this is answered


@pytest.fixture
async def make_worker(server):
    made: list[FakeWorker] = []

    async def factory(units=None, srv=None):
        address = (srv or server).address
        conn = await ClientConnection.open(address, role=m.Role.PROCESS, name="fake-worker", token=None,
                                           timeout=TIMEOUT)
        pcc = ProcessControlClient(conn)
        if units is not None:
            await pcc.register(units)
        made.append(FakeWorker(conn, pcc))
        return made[-1]

    yield factory
    for worker in made:
        await worker.pcc.close()
        await worker.conn.close()


async def collect(sub, process_id: str, count: int) -> tuple[list[int], list[ProfilingTraceEvent]]:
    """Read events until ``count`` samples of ``process_id`` arrived; their sample_seqs and the events."""
    seqs: list[int] = []
    events: list[ProfilingTraceEvent] = []
    while len(seqs) < count:
        event = await sub.next(TIMEOUT)
        assert isinstance(event, ProfilingTraceEvent), event
        events.append(event)
        for batch in event.batches:
            if batch.process_id == process_id:
                seqs.extend(s.sample_seq for s in batch.samples)
    return seqs, events


async def test_two_streams_each_get_every_sample(server, make_ctx, make_worker):
    ctx = await make_ctx(server.address)
    worker = await make_worker(["SYS/A"])
    control = ProfilingStreamControl(interval=FAST, max_samples=4)
    first = await ctx.subscribe_profiling_trace(control)
    second = await ctx.subscribe_profiling_trace(control)
    for start in (0, 5, 10):
        await worker.push(range(start, start + 5))
    seqs_a, events_a = await collect(first, worker.process_id, 15)
    seqs_b, events_b = await collect(second, worker.process_id, 15)
    assert seqs_a == seqs_b == list(range(15))  # reads are non-destructive
    for events in (events_a, events_b):
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        for event in events:
            assert event.timestamp_wall_s > 0
            for batch in event.batches:
                assert len(batch.samples) <= 4 and batch.tracing and batch.gap_from is None
                assert batch.timestamp_wall_s == event.timestamp_wall_s
                # a registered worker is described by the registry, not by what it pushed
                assert (batch.pid, batch.host) == (os.getpid(), worker.pcc.host)


async def test_process_filter_with_empty_batches_yields_exactly_that_process(server, make_ctx, make_worker):
    ctx = await make_ctx(server.address)
    quiet = await make_worker(["SYS/QUIET"])
    busy = await make_worker(["SYS/BUSY"])
    await busy.push(range(3))
    sub = await ctx.subscribe_profiling_trace(
        ProfilingStreamControl(interval=FAST, process_ids=(quiet.process_id,), include_empty_batches=True))
    for _ in range(3):
        event = await sub.next(TIMEOUT)
        assert [b.process_id for b in event.batches] == [quiet.process_id]
        batch = event.batches[0]
        assert batch.samples == () and (batch.pid, batch.host) == (os.getpid(), quiet.pcc.host)
        assert not batch.tracing and batch.dropped == 0


async def test_pid_and_host_fall_back_to_last_update_then_unknown(server, make_ctx, make_worker):
    ctx = await make_ctx(server.address)
    unregistered = await make_worker()  # connected, but never told the server its pid
    await unregistered.push([1], pid=777, host="box-7")
    sub = await ctx.subscribe_profiling_trace(ProfilingStreamControl(
        interval=FAST, process_ids=("no-such-process", unregistered.process_id), include_empty_batches=True))
    event = await sub.next(TIMEOUT)
    described = {b.process_id: (b.pid, b.host) for b in event.batches}
    assert described == {unregistered.process_id: (777, "box-7"), "no-such-process": (-1, "")}
    assert [b.process_id for b in event.batches] == sorted(described)


async def test_reader_behind_retained_history_gets_a_gap(make_server, make_ctx, make_worker):
    server = await make_server(profiling_limit=10)
    ctx = await make_ctx(server.address)
    worker = await make_worker(["SYS/A"], srv=server)
    sub = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=FAST, max_samples=4))
    await worker.push(range(5))  # per-process seqs 1..5
    seqs, _ = await collect(sub, worker.process_id, 5)
    assert seqs == list(range(5))
    await worker.push(range(100, 125))  # seqs 6..30 in one update: only 21..30 are retained
    seqs, events = await collect(sub, worker.process_id, 10)
    assert seqs == list(range(115, 125))
    batches = [b for e in events for b in e.batches]
    assert (batches[0].gap_from, batches[0].gap_to) == (6, 20)
    assert all(b.gap_from is None and b.gap_to is None for b in batches[1:])


async def test_reported_drops_reach_each_reader_once(server, make_ctx, make_worker):
    ctx = await make_ctx(server.address)
    worker = await make_worker(["SYS/A"])
    control = ProfilingStreamControl(interval=FAST)
    subs = [await ctx.subscribe_profiling_trace(control) for _ in range(2)]
    await worker.push([1, 2], dropped=7)
    await worker.push([3], dropped=2)
    for sub in subs:
        _seqs, events = await collect(sub, worker.process_id, 3)
        assert sum(b.dropped for e in events for b in e.batches) == 9


async def test_an_empty_tick_sends_nothing(server, make_ctx, make_worker):
    ctx = await make_ctx(server.address)
    worker = await make_worker(["SYS/A"])
    sub = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=FAST))
    reader = server.core.profiling.readers[sub.stream_id]
    await eventually(lambda: reader.ticks >= 5, what="five empty ticks")
    await worker.push([1])
    event = await sub.next(TIMEOUT)
    assert event.seq == 1  # nothing was sent for the empty ticks
    assert [s.sample_seq for b in event.batches for s in b.samples] == [1]


@pytest.mark.parametrize("control", [
    ProfilingStreamControl(interval=0),
    ProfilingStreamControl(interval=-1.0),
    ProfilingStreamControl(interval=math.nan),
    ProfilingStreamControl(interval=math.inf),
    ProfilingStreamControl(max_samples=0),
    ProfilingStreamControl(max_samples=10**9),
    ProfilingStreamControl(process_ids=tuple(f"p{i}" for i in range(10_001))),
])
async def test_bad_control_is_invalid_request(server, make_ctx, control):
    ctx = await make_ctx(server.address)
    with pytest.raises(InvalidRequest):
        await ctx.subscribe_profiling_trace(control)
    assert server.core.profiling.readers == {}
    assert await ctx.ping() < TIMEOUT


async def test_generic_subscribe_to_profiling_is_invalid_request(server, make_ctx):
    ctx = await make_ctx(server.address)
    with pytest.raises(InvalidRequest, match="own request"):
        await ctx._subscribe(m.StreamKind.PROFILING, 0, 16, None)  # noqa: SLF001


@pytest.mark.parametrize("role", [m.Role.SESSION, m.Role.OBSERVER])
async def test_non_process_peer_cannot_push_samples(server, raw_peer, role):
    raw = await raw_peer(server.address)
    assert isinstance(await raw.handshake(role=role), m.Welcome)
    batch = ProfilingTraceBatch(process_id="forged", pid=1, host="h", samples=(sample(1),))
    raw.send(ProcessProfilingTraceUpdate(batch))
    reply = await raw.recv()
    assert isinstance(reply, m.ErrorReply) and reply.code == "PERMISSION_DENIED" and reply.request_id is None
    raw.send(m.PingRequest(7))  # the connection survives
    assert isinstance(await raw.recv(), m.Pong)
    assert server.core.profiling.traces == {}


async def test_departed_process_is_delivered_then_forgotten(server, make_ctx, make_worker):
    ctx = await make_ctx(server.address)
    hub = server.core.profiling
    leaver = await make_worker(["SYS/A"])
    await leaver.push([1])
    await leaver.conn.close()
    await eventually(lambda: leaver.process_id not in hub.traces, what="an unread-by-nobody buffer dropped")

    worker = await make_worker(["SYS/B"])
    sub = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=0.2))
    await worker.push([1, 2, 3])
    await worker.conn.close()  # most likely before the first tick; delivered anyway
    seqs, events = await collect(sub, worker.process_id, 3)
    assert seqs == [1, 2, 3]
    assert (events[0].batches[0].pid, events[0].batches[0].host) in {(os.getpid(), worker.pcc.host),
                                                                     (4242, "elsewhere")}
    await eventually(lambda: worker.process_id not in hub.traces, what="the read buffer dropped")


async def test_unsubscribe_disconnect_and_shutdown_stop_the_timers(make_server, make_ctx):
    server = await make_server()
    hub = server.core.profiling
    ctx = await make_ctx(server.address)
    sub = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=FAST, include_empty_batches=True,
                                                                     process_ids=("p",)))
    task = hub.readers[sub.stream_id].task
    await sub.next(TIMEOUT)
    await sub.close()
    assert hub.readers == {}
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), TIMEOUT)
    assert task.cancelled()

    other = await make_ctx(server.address)
    await other.subscribe_profiling_trace()
    await other.close()
    await eventually(lambda: not hub.readers, what="the departed session's stream closed")

    kept = await make_ctx(server.address)
    await kept.subscribe_profiling_trace()
    tasks = [r.task for r in hub.readers.values()]
    assert len(tasks) == 1
    await server.close()
    assert hub.readers == {}
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    assert all(t.done() for t in tasks)


async def test_a_big_backlog_is_sent_in_events_that_fit(make_server, make_ctx, make_worker):
    server = await make_server(stream_queue_bytes=64 * 1024)  # events are kept under 32 KiB
    ctx = await make_ctx(server.address)
    worker = await make_worker(["SYS/A"], srv=server)
    other = await make_worker(["SYS/B"], srv=server)
    sub = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=FAST, max_samples=5000))
    await worker.push(range(10_000), dropped=3)  # ~280 KB of samples (28 bytes each)
    await other.push(range(10))
    seqs, events = await collect(sub, worker.process_id, 10_000)
    assert seqs == list(range(10_000))  # nothing lost: what did not fit waited for the next tick
    assert len(events) > 4 and [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(b.dropped for e in events for b in e.batches) == 3
    assert all(b.gap_from is None for e in events for b in e.batches)
    # the small process is not starved behind the big one: it shares the first events
    arrived = [i for i, e in enumerate(events) for b in e.batches if b.process_id == other.process_id]
    assert len(arrived) == 1 and arrived[0] < len(events) - 1
    assert [s.sample_seq for b in events[arrived[0]].batches if b.process_id == other.process_id
            for s in b.samples] == list(range(10))


async def test_hub_keeps_the_backlog_while_the_previous_event_is_unsent() -> None:
    hub = ProfilingHub(Registry(), limit=5)
    hub.ingest("p1", 1, "h", ProfilingTraceBatch("p1", 1, "h", tuple(sample(i) for i in range(3))))
    woken: list[int] = []
    sub = hub.subscribe("s1", ProfilingStreamControl(interval=1000.0), lambda: woken.append(1))
    reader = hub.readers["s1"]
    hub.tick(reader)
    assert len(sub.queue) == 1 and woken == [1]
    hub.ingest("p1", 1, "h", ProfilingTraceBatch("p1", 1, "h", tuple(sample(i) for i in range(3, 10))))
    hub.tick(reader)  # the peer has not taken the first event yet: nothing more is queued
    assert len(sub.queue) == 1 and woken == [1]
    first = sub.queue.pop()
    assert [s.sample_seq for s in first.batches[0].samples] == [0, 1, 2]
    hub.tick(reader)
    second = sub.queue.pop()
    batch = second.batches[0]
    assert second.seq == 2 and (batch.gap_from, batch.gap_to) == (4, 5)  # seqs 6..10 retained
    assert [s.sample_seq for s in batch.samples] == [5, 6, 7, 8, 9]
    hub.close()
    assert hub.readers == {}


async def test_stream_times_out_cleanly_when_nothing_happens(server, make_ctx):
    ctx = await make_ctx(server.address)
    sub = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=FAST))
    with pytest.raises(RequestTimeout):
        await sub.next(0.1)


# -- columnar storage ---------------------------------------------------------------


async def test_a_malformed_batch_only_costs_its_sender_the_connection(server, make_ctx, make_worker):
    """Columns that disagree (here: an endpoint index past the table) are a DecodeError when
    the frame is read: that process's connection is closed, as for any malformed frame,
    and nothing of it reaches the hub; the server and everyone else carry on."""
    ctx = await make_ctx(server.address)
    good = await make_worker(["SYS/GOOD"])
    bad = await make_worker(["SYS/BAD"])
    sub = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=FAST))
    forged = ProfilingTraceBatch.unchecked(  # unchecked: to_wire does not validate, so it reaches the wire
        "x", 1, "h", 0, True, 0.0, None, None, ("pub-1",), ("SYS/BAD/OUT",), ("publish_delta_ns",), ("",),
        bytes(16), bytes(16), bytes(16), b"\x00\x00\x07\x00", b"\x00\x00", b"\x00\x00")
    bad.conn.send(ProcessProfilingTraceUpdate(forged))
    await asyncio.wait_for(bad.conn.wait_closed(), TIMEOUT)
    assert bad.process_id not in server.core.profiling.traces
    await good.push(range(3))
    seqs, _events = await collect(sub, good.process_id, 3)
    assert seqs == [0, 1, 2]
    assert await ctx.ping() < TIMEOUT


def _batch(*rows: tuple[int, str, str, str]) -> ProfilingTraceBatch:
    """A pushed batch of (seq, endpoint id, metric, channel) samples."""
    return ProfilingTraceBatch("p1", 1, "h", tuple(
        ProfilingTraceSample(1000 + seq, endpoint, f"T/{endpoint}", metric, seq, channel, seq)
        for seq, endpoint, metric, channel in rows))


def _everything(hub: ProfilingHub, reader) -> list[ProfilingTraceBatch]:
    out = []
    while True:
        hub.tick(reader)
        event = reader.sub.queue.pop() if len(reader.sub.queue) else None
        if event is None:
            return out
        out.extend(event.batches)


async def test_each_update_is_stored_in_the_process_tables() -> None:
    hub = ProfilingHub(Registry())
    hub.ingest("p1", 1, "h", _batch((1, "a", "handler_ns", "SHM"), (2, "b", "lease_time_ns", "")))
    # another worker-side table order (after a reconfigure), and names the process did not use yet
    hub.ingest("p1", 1, "h", _batch((3, "c", "e2e_latency_ns", "TCP"), (4, "a", "lease_time_ns", "SHM"),
                                    (5, "b", "handler_ns", "")))
    hub.subscribe("s1", ProfilingStreamControl(interval=1000.0), lambda: None)
    (batch,) = _everything(hub, hub.readers["s1"])
    assert [(s.sample_seq, s.endpoint_id, s.topic, s.metric, s.channel_kind) for s in batch.samples] == [
        (1, "a", "T/a", "handler_ns", "SHM"), (2, "b", "T/b", "lease_time_ns", ""),
        (3, "c", "T/c", "e2e_latency_ns", "TCP"), (4, "a", "T/a", "lease_time_ns", "SHM"),
        (5, "b", "T/b", "handler_ns", "")]
    assert batch.endpoints == ("a", "b", "c") and len(hub.traces["p1"].chunks) == 1  # small updates merged
    hub.close()


async def test_reads_across_chunks_match_a_plain_list_model() -> None:
    """Random update sizes, retention limits and read sizes against a list of every sample."""
    rng = random.Random(5)
    for limit in (1, 7, 500, 3000):
        hub = ProfilingHub(Registry(), limit=limit, max_event_bytes=1 << 30)
        model: list[int] = []  # every sample's seq, in order; per-process seq = index + 1
        hub.subscribe("s", ProfilingStreamControl(interval=1000.0, max_samples=rng.choice((1, 3, 900, 5000))),
                      lambda: None)
        reader = hub.readers["s"]
        got: list[int] = []
        gaps: list[tuple[int, int]] = []
        for _round in range(40):
            n = rng.choice((0, 1, 2, 50, 1023, 1024, 1500, 4000))
            base = len(model)
            hub.ingest("p1", 1, "h", _batch(*[(base + i, "a", "handler_ns", "") for i in range(n)]))
            model.extend(range(base, base + n))
            trace = hub.traces["p1"]
            assert trace.size == min(limit, len(model)) == sum(c.n - c.lo for c in trace.chunks)
            if rng.random() < 0.5:
                for batch in _everything(hub, reader):
                    if batch.gap_from is not None:
                        gaps.append((batch.gap_from, batch.gap_to))
                    got.extend(s.sample_seq for s in batch.samples)
        for batch in _everything(hub, reader):
            if batch.gap_from is not None:
                gaps.append((batch.gap_from, batch.gap_to))
            got.extend(s.sample_seq for s in batch.samples)
        skipped = {seq - 1 for a, b in gaps for seq in range(a, b + 1)}  # per-process seq -> model value
        assert sorted(set(got) | skipped) == model and len(got) == len(set(got))  # each sample once, or a gap
        assert got == sorted(got) and got[-min(limit, len(model)):] == model[-min(limit, len(model)):]
        hub.close()


async def test_a_process_outgrowing_the_tables_starts_new_ones(monkeypatch) -> None:
    import ezmsg_console.server.profiling_hub as hub_module

    monkeypatch.setattr(hub_module, "MAX_TRACE_ENDPOINTS", 3)
    hub = ProfilingHub(Registry())
    hub.ingest("p1", 1, "h", _batch((1, "a", "handler_ns", ""), (2, "b", "handler_ns", "")))
    hub.ingest("p1", 1, "h", _batch((3, "c", "handler_ns", ""), (4, "d", "handler_ns", "")))  # 4 names > 3
    hub.ingest("p1", 1, "h", _batch((5, "d", "handler_ns", "")))
    hub.subscribe("s1", ProfilingStreamControl(interval=1000.0), lambda: None)
    batches = _everything(hub, hub.readers["s1"])
    assert [b.endpoints for b in batches] == [("a", "b"), ("c", "d")]  # a read stops where the tables change
    assert [[(s.sample_seq, s.endpoint_id) for s in b.samples] for b in batches] == [
        [(1, "a"), (2, "b")], [(3, "c"), (4, "d"), (5, "d")]]
    hub.close()
