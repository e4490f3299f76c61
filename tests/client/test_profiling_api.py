"""GraphContext's profiling calls against fake worker operations over a real GraphServer."""

from __future__ import annotations

import asyncio

import pytest

from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.errors import ConsoleError, DecodeError, ProcessUnavailable
from ezmsg_console.protocol.process import Operation
from ezmsg_console.protocol.profiling import (
    HistogramSnapshot,
    ProcessProfilingSnapshot,
    ProfilingError,
    ProfilingTraceBatch,
    ProfilingTraceControl,
    ProfilingTraceSample,
    PublisherProfile,
    SubscriberProfile,
)
from ezmsg_console.protocol.wire import from_wire, to_wire
from ezmsg_console.runtime.process_control import ProcessControlClient

from ..conftest import TIMEOUT

SNAP = Operation.GET_PROFILING_SNAPSHOT.value


def snapshot_of(process_id: str, pid: int = 1234) -> ProcessProfilingSnapshot:
    hist = HistogramSnapshot(count=3, sum_ns=600, p50_ns=150.0, p90_ns=300.0, p99_ns=300.0, max_ns=300.0,
                             bucket_indices=(2, 5), bucket_counts=(1, 2))
    return ProcessProfilingSnapshot(
        process_id=process_id, pid=pid, host="box", timestamp_mono_ns=123456789, timestamp_wall_s=1712345678.5,
        window_seconds=1.0, histograms_enabled=True, histogram_edges_ns=(0, 100, 1000, 10000),
        publishers=(PublisherProfile("pub-1", "SYS/A/OUT", 8, 1, 3, 300, 1, 50, messages_published_window=1,
                                     publish_rate_hz_window=1.0, fanout=2, shm_links=1, local_subscribers=1),),
        subscribers=(SubscriberProfile("sub-1", "SYS/B/IN", 2, 200, 0, "SHM", publishers=1, handler_ns=hist,
                                       latency_ns_window=hist),),
        trace=ProfilingTraceControl(enabled=True, sample_mod=3, metrics=("handler_ns",), ttl_seconds=5.0),
        trace_ttl_remaining_s=4.5,
    )


@pytest.fixture
async def make_process(server):
    made: list[tuple[ProcessControlClient, ClientConnection]] = []

    async def factory(units):
        conn = await ClientConnection.open(server.address, role=m.Role.PROCESS, name="fake-worker", token=None,
                                           timeout=TIMEOUT)
        pcc = ProcessControlClient(conn)
        await pcc.register(units)
        made.append((pcc, conn))
        return pcc

    yield factory
    for pcc, conn in made:
        await pcc.close()
        await conn.close()


async def test_process_profiling_snapshot_decodes(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    proc = await make_process(["SYS/A"])
    expected = snapshot_of(proc.process_id)
    seen = []

    def op(msg):
        seen.append((msg.unit_address, msg.payload, msg.source_session_id))
        return to_wire(expected)

    proc.set_operation(SNAP, op)
    got = await ctx.process_profiling_snapshot("SYS/A", timeout=TIMEOUT)
    assert got == expected and isinstance(got.subscribers[0].handler_ns, HistogramSnapshot)
    assert got.subscribers[0].handler_ns.mean_ns == 200.0
    assert seen == [("SYS/A", None, ctx.session_id)]  # the observer the process keeps windows for


async def test_undecodable_snapshot_is_a_decode_error(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    proc = await make_process(["SYS/A"])
    proc.set_operation(SNAP, lambda msg: {"process_id": 5})
    with pytest.raises(DecodeError) as info:
        await ctx.process_profiling_snapshot("SYS/A", timeout=TIMEOUT)
    assert isinstance(info.value, ConsoleError)
    assert info.value.details["error_code"] == "INVALID_RESPONSE"
    assert info.value.details["process_id"] == proc.process_id
    assert "SYS/A" in str(info.value)
    with pytest.raises(ProcessUnavailable):
        await ctx.process_profiling_snapshot("NOBODY", timeout=TIMEOUT)


async def test_trace_batch_round_trip(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    proc = await make_process(["SYS/A"])
    batch = ProfilingTraceBatch(
        process_id=proc.process_id, pid=99, host="box", dropped=2, tracing=True, timestamp_wall_s=5.5,
        samples=(ProfilingTraceSample(10, "pub-1", "SYS/A/OUT", "publish_delta_ns", 500, "LOCAL", 3),
                 ProfilingTraceSample(11, "sub-1", "SYS/A/OUT", "lease_time_ns", 700, "SHM", 3)))
    payloads = []

    def op(msg):
        payloads.append(msg.payload)
        return to_wire(batch)

    proc.set_operation(Operation.GET_PROFILING_TRACE_BATCH.value, op)
    assert await ctx.process_profiling_trace_batch("SYS/A", 7, timeout=TIMEOUT) == batch
    assert payloads == [{"max_samples": 7}]
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError):
            await ctx.process_profiling_trace_batch("SYS/A", bad)
    assert len(payloads) == 1


async def test_set_profiling_trace_round_trip(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    proc = await make_process(["SYS/A"])
    received = []

    def op(msg):
        control = from_wire(ProfilingTraceControl, msg.payload)
        received.append(control)
        return {"enabled": control.enabled, "sample_mod": control.sample_mod, "ttl_remaining_s": 9.5}

    proc.set_operation(Operation.SET_PROFILING_TRACE.value, op)
    control = ProfilingTraceControl(enabled=True, sample_mod=4, publisher_topics=("SYS/A/OUT",),
                                    subscriber_endpoint_ids=("sub-1", "sub-2"), metrics=("publish_delta_ns",),
                                    ttl_seconds=9.5)
    answer = await ctx.process_set_profiling_trace("SYS/A", control, timeout=TIMEOUT)
    assert answer == {"enabled": True, "sample_mod": 4, "ttl_remaining_s": 9.5}
    assert received == [control]


async def test_snapshot_all_is_concurrent_and_reports_every_failure(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    first = await make_process(["A/Z", "A/B"])  # asked through A/B, its first unit
    second = await make_process(["B/A"])
    hung = await make_process(["C/A"])
    broken = await make_process(["D/A"])
    failing = await make_process(["E/A"])
    await make_process([])  # owns no units: not asked, not listed
    expected = {p.process_id: snapshot_of(p.process_id) for p in (first, second)}
    asked: dict[str, str] = {}
    every_request_arrived = asyncio.Event()
    loop = asyncio.get_running_loop()
    received_at: dict[str, float] = {}

    def arrived(proc, msg):
        asked[proc.process_id] = msg.unit_address
        received_at[proc.process_id] = loop.time()
        if len(asked) == 5:
            every_request_arrived.set()

    def healthy(proc):
        async def op(msg):
            arrived(proc, msg)
            # Answer only once every process has its request: one-by-one asking would time out here.
            await every_request_arrived.wait()
            return to_wire(expected[proc.process_id])
        return op

    async def never(msg):
        arrived(hung, msg)
        await asyncio.Event().wait()

    async def garbage(msg):
        arrived(broken, msg)
        return {"not": "a snapshot"}

    async def boom(msg):
        arrived(failing, msg)
        raise RuntimeError("kaput")

    for proc, op in ((first, healthy(first)), (second, healthy(second)), (hung, never), (broken, garbage),
                     (failing, boom)):
        proc.set_operation(SNAP, op)
    timeout_per_process = 1.0
    start = loop.time()
    result = await asyncio.wait_for(ctx.profiling_snapshot_all(timeout_per_process), 5.0)
    assert set(result) == {first.process_id, second.process_id, hung.process_id, broken.process_id,
                           failing.process_id}
    assert asked[first.process_id] == "A/B"
    for pid in (first.process_id, second.process_id):
        assert result[pid] == expected[pid]
        assert received_at[pid] - start < timeout_per_process  # asked before the hung one timed out
    assert received_at[hung.process_id] - start < timeout_per_process
    assert result[hung.process_id] == ProfilingError(hung.process_id, "TIMEOUT", result[hung.process_id].error)
    assert "timeout=1s" in result[hung.process_id].error
    assert result[broken.process_id].error_code == "INVALID_RESPONSE"
    assert result[failing.process_id].error_code == "HANDLER_ERROR" and "kaput" in result[failing.process_id].error


async def test_snapshot_all_reports_a_process_that_disconnects_midway(server, make_ctx, make_process):
    ctx = await make_ctx(server.address)
    stayer = await make_process(["A"])
    leaver = await make_process(["B"])
    leaver_asked = asyncio.Event()
    stayer.set_operation(SNAP, lambda msg: to_wire(snapshot_of(stayer.process_id)))

    async def hang(msg):
        leaver_asked.set()
        await asyncio.Event().wait()

    leaver.set_operation(SNAP, hang)
    call = asyncio.ensure_future(ctx.profiling_snapshot_all(timeout_per_process=TIMEOUT))
    await asyncio.wait_for(leaver_asked.wait(), TIMEOUT)
    await leaver.conn.close()
    result = await asyncio.wait_for(call, TIMEOUT)
    assert result[stayer.process_id] == snapshot_of(stayer.process_id)
    error = result[leaver.process_id]
    assert isinstance(error, ProfilingError) and error.process_id == leaver.process_id
    assert error.error_code == "PROCESS_DISCONNECTED"


async def test_snapshot_all_with_no_processes_and_bad_timeout(server, make_ctx):
    ctx = await make_ctx(server.address)
    assert await ctx.profiling_snapshot_all() == {}
    with pytest.raises(ValueError):
        await ctx.profiling_snapshot_all(0)
