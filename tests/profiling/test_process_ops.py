"""The worker's profiling operations, in this process, over a real GraphServer.

A ProcessControlClient claims unit ``T/U`` and serves ProfilingOps for an
EndpointHost whose publisher and subscribers exchange real messages (local
hand-off and, through a second host, shared memory). Pushing is off
(``push=False``) so batches are read only by the test: with it on, a fold that
leaves a ring half full pushes at once, and that push would race the reads.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import numpy as np
import pytest

from ezmsg_console.client import GraphContext
from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.profiling import ProfilingTraceControl
from ezmsg_console.pubsub import payload, shm
from ezmsg_console.pubsub.host import EndpointHost
from ezmsg_console.runtime.process_control import ProcessControlClient
from ezmsg_console.runtime.profiling_ops import ProfilingOps

from ..conftest import TIMEOUT

UNIT = "T/U"


class Proc:
    def __init__(self, conn: ClientConnection, host: EndpointHost, ops: ProfilingOps) -> None:
        self.conn, self.host, self.ops = conn, host, ops


@pytest.fixture
async def proc(server: Any) -> AsyncIterator[Proc]:
    conn = await ClientConnection.open(server.address, role=m.Role.PROCESS, name="ops", token=None, timeout=TIMEOUT)
    host = EndpointHost(conn)
    await host.start()
    control = ProcessControlClient(conn)
    await control.register([UNIT])
    ops = ProfilingOps(control, host, push=False)
    yield Proc(conn, host, ops)
    await ops.close()
    await control.close()
    await host.close()
    await conn.close()
    assert shm.ours(host.run_tag + "_") == []


async def roundtrips(host: EndpointHost, n: int) -> None:
    """Publish ``n`` arrays on T/OUT to a local subscriber, handling each before the next."""
    pub = next(p for p in host.publishers.values() if p.topic == "T/OUT")
    sub = next(s for s in host.subscribers.values() if s.topic == "T/OUT")
    for i in range(n):
        await pub.broadcast(np.full(4, i, dtype=np.int64))
        delivery = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)
        delivery.done()


async def test_batch_holds_both_sides_in_time_order_and_reports_overflow(proc: Proc, server: Any,
                                                                        make_ctx: Any) -> None:
    ctx: GraphContext = await make_ctx(server.address)
    await proc.host.publisher("T/OUT", num_buffers=4)
    await proc.host.subscriber("T/OUT")
    control = ProfilingTraceControl(enabled=True, ttl_seconds=30.0)
    state = await ctx.process_set_profiling_trace(UNIT, control)
    assert state["enabled"] and len(state["traced_endpoints"]) == 2

    await roundtrips(proc.host, 64)
    batch = await ctx.process_profiling_trace_batch(UNIT, max_samples=32)
    assert len(batch.samples) == 32 and batch.tracing and batch.pid > 0
    assert {s.metric for s in batch.samples} >= {"publish_delta_ns", "handler_ns", "lease_time_ns"}
    keys = [(s.timestamp_mono_ns, s.sample_seq) for s in batch.samples]
    assert keys == sorted(keys)
    assert batch.dropped == 0
    rest = await ctx.process_profiling_trace_batch(UNIT, max_samples=1000)
    assert len(rest.samples) == 4 * 64 - 32 and rest.dropped == 0
    # A same-process delivery arrives inside the publisher's call: its arrival is the send
    # stamp, so its lease is exactly its end-to-end latency plus its handler time.
    per_message: dict[int, dict[str, int]] = {}
    for s in batch.samples + rest.samples:
        if s.channel_kind == "LOCAL":
            per_message.setdefault(s.sample_seq, {})[s.metric] = s.value_ns
    assert len(per_message) == 64
    assert all(v["lease_time_ns"] == v["e2e_latency_ns"] + v["handler_ns"] for v in per_message.values())
    assert (await ctx.process_profiling_trace_batch(UNIT)).samples == ()

    # Rings of 100: the 64 publish samples fit, 3 x 64 subscriber samples overflow, and that is reported.
    proc.ops.tracer.capacity = 100
    await ctx.process_set_profiling_trace(UNIT, control)
    await roundtrips(proc.host, 64)
    full = await ctx.process_profiling_trace_batch(UNIT, max_samples=1000)
    assert full.dropped == 3 * 64 - 100 and len(full.samples) == 64 + 100
    assert (await ctx.process_profiling_trace_batch(UNIT)).dropped == 0  # reported once

    # A new control clears what was recorded: no stale samples survive it.
    await roundtrips(proc.host, 5)
    await ctx.process_set_profiling_trace(UNIT, ProfilingTraceControl(enabled=True, metrics=("handler_ns",)))
    assert (await ctx.process_profiling_trace_batch(UNIT)).samples == ()
    await roundtrips(proc.host, 5)
    only = await ctx.process_profiling_trace_batch(UNIT)
    assert [s.metric for s in only.samples] == ["handler_ns"] * 5

    await ctx.process_set_profiling_trace(UNIT, ProfilingTraceControl(enabled=False))
    pub = next(iter(proc.host.publishers.values()))
    sub = next(iter(proc.host.subscribers.values()))
    assert pub.hook is None and not sub.trace_arrival and sub.trace is None  # off means no hook at all


async def test_byte_counters_and_histograms_count_every_message(proc: Proc, server: Any, make_ctx: Any) -> None:
    ctx: GraphContext = await make_ctx(server.address)
    pub = await proc.host.publisher("T/OUT", num_buffers=4)
    local = await proc.host.subscriber("T/OUT")
    conn = await ClientConnection.open(server.address, role=m.Role.PROCESS, name="other", token=None,
                                       timeout=TIMEOUT)
    other = EndpointHost(conn)  # another "process" on this host: shared memory
    await other.start()
    try:
        await _check_counters(ctx, pub, local, other)
    finally:
        await other.close()
        await conn.close()


async def _check_counters(ctx: GraphContext, pub: Any, local: Any, other: EndpointHost) -> None:
    remote = await other.subscriber("T/OUT")
    await remote.wait_for_publishers(1, TIMEOUT)
    sizes = [(3,), (100,), (7, 9)]
    for shape in sizes:
        await pub.broadcast(np.ones(shape, dtype=np.float32))
        for s in (local, remote):
            delivery = await asyncio.wait_for(s.recv_delivery(), TIMEOUT)
            delivery.done()
    snap = await ctx.process_profiling_snapshot(UNIT)
    expected = sum(payload.encode(np.ones(shape, dtype=np.float32)).nbytes for shape in sizes)
    row = next(p for p in snap.publishers if p.topic == "T/OUT")
    assert row.messages_published_total == 3 and row.bytes_published_total == expected
    assert row.fanout == 2 and row.shm_links == 1 and row.local_subscribers == 1
    (local_row,) = snap.subscribers
    assert local_row.channel_kind_last == "LOCAL" and local_row.bytes_received_total == 0
    assert local_row.handler_ns.count == 3 and local_row.latency_ns.count == 3
    assert remote.bytes_received == expected and remote.last_channel == "SHM"
    assert remote.handler_ns.total == 3 and remote.latency_ns.total == 3
