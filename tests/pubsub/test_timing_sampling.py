"""A fast publisher over shared memory, a subscriber with a small timing budget, and its routed snapshot.

The subscriber's host has a worker's control plane (ProcessControlClient claiming
``S/U`` and ProfilingOps), so the snapshot is the one a console gets
(GET_PROFILING_SNAPSHOT over the GraphServer, msgpack both ways).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import messages as m
from ezmsg_console.pubsub.host import EndpointHost
from ezmsg_console.pubsub.spans import bind_subscriber, profile_span
from ezmsg_console.runtime.process_control import ProcessControlClient
from ezmsg_console.runtime.profiling_ops import ProfilingOps

from ..conftest import TIMEOUT

UNIT = "S/U"
BUDGET = 200
"""Timed messages per second: far below what one test process moves over shared memory."""
N = 10_000


async def test_over_the_budget_counts_stay_exact_and_only_a_sample_is_timed(server: Any, make_host: Any,
                                                                             make_ctx: Any) -> None:
    conn = await ClientConnection.open(server.address, role=m.Role.PROCESS, name="sampled", token=None,
                                       timeout=TIMEOUT)
    host = EndpointHost(conn, timed_budget=BUDGET)
    await host.start()
    control = ProcessControlClient(conn)
    await control.register([UNIT])
    ops = ProfilingOps(control, host, push=False)
    try:
        pub_host = await make_host()  # another "process" on this host: shared memory
        pub = await pub_host.publisher("S/OUT", num_buffers=32)
        sub = await host.subscriber("S/OUT", zero_copy=True)
        await sub.wait_for_publishers(1, TIMEOUT)
        ctx = await make_ctx(server.address)
        await ctx.process_profiling_snapshot(UNIT)  # opens this observer's window

        async def consume() -> None:
            bind_subscriber(sub)  # as a unit's consumer task does: spans here are this subscriber's
            for _ in range(N):
                delivery = await sub.recv_delivery()
                with profile_span("handle"):
                    pass
                delivery.done()
                with profile_span("after done"):  # the message is finished: not timed
                    pass

        async def produce() -> None:
            msg = np.zeros(8, dtype=np.uint8)
            for _ in range(N):
                await pub.broadcast(msg)

        await asyncio.wait_for(asyncio.gather(consume(), produce()), TIMEOUT * 3)
        snap = await ctx.process_profiling_snapshot(UNIT)
    finally:
        await ops.close()
        await control.close()
        await host.close()
        await conn.close()

    (row,) = snap.subscribers
    assert row.channel_kind_last == "SHM"
    assert row.messages_received_total == row.messages_received_window == N  # every message counted
    assert row.drops_total == 0
    assert row.timing_sample_k > 1, row
    assert row.timed_messages_total is not None and 0 < row.timed_messages_total < N // 2
    assert row.timed_messages_window == row.timed_messages_total
    # The histograms hold the timed messages, not every message.
    for hist in (row.handler_ns, row.latency_ns, row.handler_ns_window, row.latency_ns_window):
        assert hist.count == sum(hist.bucket_counts) == row.timed_messages_total
    # A span is timed for the timed messages only, and only while the message is being handled.
    (span,) = row.user_spans
    assert span.label == "handle" and span.span_ns.count == span.span_ns_window.count == row.timed_messages_total
    assert span.span_ns.p50_ns <= row.handler_ns.p99_ns
    assert 0 < row.latency_ns.p50_ns <= row.latency_ns.p99_ns


def test_a_span_outside_a_handler_records_nothing_and_a_label_must_be_a_string() -> None:
    outside = profile_span("outside")  # no subscriber bound in this context: nothing to record on
    assert outside is profile_span("other")  # the shared no-op: nothing allocated, no clock read
    with outside:
        pass
    with pytest.raises(TypeError, match="label must be a str"):
        profile_span(3)  # type: ignore[arg-type]
