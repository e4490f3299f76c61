"""Profiling on real worker processes (reference-behaviour §6, §8 items 30-36).

One module-scoped run of ``profiled.ProfRig`` (three worker processes, a
GraphServer in a background thread). Traffic on TRIG is triggered by the
tests (a settings edit publishes a burst), so counts are known exactly;
TICK publishes continuously at a known period.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from typing import Any, AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from ezmsg_console.client import GraphContext
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.errors import InvalidRequest
from ezmsg_console.protocol.profiling import (
    ProcessProfilingSnapshot,
    ProfilingError,
    ProfilingStreamControl,
    ProfilingTraceControl,
    ProfilingTraceEvent,
    ProfilingTraceSample,
    PublisherProfile,
    SubscriberProfile,
)
from ezmsg_console.pubsub import payload, shm
from ezmsg_console.runtime.runner import Runner
from ezmsg_console.server import GraphServer

from ..conftest import TIMEOUT, snapshot_when
from .conftest import threaded_server
from .profiled import WIDTH, ProfRig

pytestmark = pytest.mark.asyncio(loop_scope="module")

TRIG, TICK = "PROF/A/TRIG", "PROF/A/TICK"
FAST, SLOW, LEAKY, TSINK = "PROF/B/FAST", "PROF/C/SLOW", "PROF/C/LEAKY", "PROF/B/TSINK"
TRIG_OUT = f"{TRIG}/OUTPUT"
MSG_BYTES = payload.encode(np.zeros(WIDTH, dtype=np.int64)).nbytes


@dataclasses.dataclass
class Rig:
    address: Any
    runner: Runner
    ctx: GraphContext
    pids: dict[str, int]  # unit address -> pid of its worker


@contextlib.asynccontextmanager
async def running(address: Any) -> AsyncIterator[Rig]:
    runner = Runner({"PROF": ProfRig()}, address=str(address), duration=120)
    task = asyncio.ensure_future(runner.run())
    ctx = GraphContext(address, timeout=TIMEOUT, name="profiling-tests")
    try:
        await ctx.open()

        def owners(snap: Any) -> dict[str, int]:
            return {u: p.pid for p in snap.processes for u in p.units if p.pid}

        snap = await snapshot_when(ctx, lambda s: {TRIG, TICK, FAST, SLOW, LEAKY, TSINK} <= set(owners(s)),
                                   "every unit owned", run=task)
        pids = owners(snap)
        # A unit is claimed before its endpoints exist: a snapshot may not list TSINK/INPUT yet.
        await until(ctx, TSINK, lambda s: any(e.topic == f"{TSINK}/INPUT" and e.messages_received_total > 0
                                              for e in s.subscribers), "TICK traffic")
        yield Rig(address, runner, ctx, pids)
    finally:
        await ctx.close()
        runner.request_stop("test done")
        result = await asyncio.wait_for(task, 3 * TIMEOUT)
    assert result.ok, result.errors
    assert shm.ours(runner.run_tag + "_") == []


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig() -> AsyncIterator[Rig]:
    with threaded_server() as address:
        async with running(address) as handle:
            yield handle


# --------------------------------------------------------------------------- helpers


def pub(snap: ProcessProfilingSnapshot, topic: str) -> PublisherProfile:
    rows = [p for p in snap.publishers if p.topic == topic]
    assert len(rows) == 1, f"{topic}: {[p.topic for p in snap.publishers]}"
    return rows[0]


def sub(snap: ProcessProfilingSnapshot, topic: str) -> SubscriberProfile:
    rows = [s for s in snap.subscribers if s.topic == topic]
    assert len(rows) == 1, f"{topic}: {[s.topic for s in snap.subscribers]}"
    return rows[0]


async def until(ctx: GraphContext, unit: str, predicate: Any, what: str,
                timeout: float = TIMEOUT) -> ProcessProfilingSnapshot:
    """Poll the snapshot of ``unit``'s process until ``predicate(snapshot)``; returns that snapshot."""
    async def poll() -> ProcessProfilingSnapshot:
        while True:
            snap = await ctx.process_profiling_snapshot(unit)
            if predicate(snap):
                return snap
            await asyncio.sleep(0.02)
    try:
        return await asyncio.wait_for(poll(), timeout)
    except (TimeoutError, asyncio.TimeoutError):
        raise AssertionError(f"{what} did not happen within {timeout} s") from None


async def burst(ctx: GraphContext, n: int) -> None:
    await ctx.update_setting(TRIG, "burst", n)


async def published(ctx: GraphContext) -> int:
    return pub(await ctx.process_profiling_snapshot(TRIG), TRIG_OUT).messages_published_total


async def burst_delivered(ctx: GraphContext, n: int) -> int:
    """Publish a burst of ``n`` and wait until FAST and SLOW handled all of it; returns the first msg id."""
    first = await published(ctx)
    await burst(ctx, n)
    for unit in (FAST, SLOW):
        await until(ctx, unit, lambda s, u=unit: handled_all(sub(s, f"{u}/INPUT"), first + n),
                    f"{unit} handling the burst", timeout=TIMEOUT + n * 0.05)
    return first


def handled_all(row: SubscriberProfile, n: int) -> bool:
    """``row`` received ``n`` messages, none is queued, and every timed one's handler is done."""
    return row.messages_received_total >= n and row.queue_depth == 0 \
        and row.handler_ns.count == row.timed_messages_total


# --------------------------------------------------------------------------- counters


async def test_counts_and_bytes_match_what_was_sent(rig: Rig) -> None:
    ctx = rig.ctx
    before_pub = pub(await ctx.process_profiling_snapshot(TRIG), TRIG_OUT)
    before_fast = sub(await ctx.process_profiling_snapshot(FAST), f"{FAST}/INPUT")
    n = 40
    await burst_delivered(ctx, n)
    after_pub = pub(await ctx.process_profiling_snapshot(TRIG), TRIG_OUT)
    fast = sub(await ctx.process_profiling_snapshot(FAST), f"{FAST}/INPUT")

    assert after_pub.messages_published_total - before_pub.messages_published_total == n
    assert after_pub.bytes_published_total - before_pub.bytes_published_total == n * MSG_BYTES
    assert fast.messages_received_total - before_fast.messages_received_total == n
    assert fast.bytes_received_total - before_fast.bytes_received_total == n * MSG_BYTES
    assert fast.channel_kind_last == "SHM"
    # Far under the timing budget: every message is timed, and is in both histograms.
    assert fast.timing_sample_k == 1
    assert fast.timed_messages_total == fast.messages_received_total
    assert fast.handler_ns.count == fast.latency_ns.count == fast.timed_messages_total
    assert sum(fast.handler_ns.bucket_counts) == fast.handler_ns.count
    assert 0 < fast.latency_ns.p50_ns < 1e9  # same host: publish -> handler start, well under a second
    assert after_pub.num_buffers == 4 and after_pub.fanout == 3 and after_pub.shm_links == 3


async def test_rate_over_a_window_matches_the_known_rate(rig: Rig) -> None:
    ctx = rig.ctx
    await ctx.process_profiling_snapshot(TICK)  # opens this observer's window
    await asyncio.sleep(1.0)  # the window itself: time has to pass
    snap = await ctx.process_profiling_snapshot(TICK)
    row = pub(snap, f"{TICK}/OUTPUT")
    assert 0.9 < snap.window_seconds < 5.0
    assert row.publish_rate_hz_window == pytest.approx(row.messages_published_window / snap.window_seconds)
    assert 60.0 <= row.publish_rate_hz_window <= 110.0, row  # TICK publishes every 10 ms
    assert row.bytes_rate_window == pytest.approx(row.publish_rate_hz_window * MSG_BYTES)


async def test_a_slow_handler_shows_in_handler_time_and_as_backpressure(rig: Rig) -> None:
    ctx = rig.ctx
    waits_before = pub(await ctx.process_profiling_snapshot(TRIG), TRIG_OUT).backpressure_waits_total
    await burst_delivered(ctx, 20)
    slow = sub(await ctx.process_profiling_snapshot(SLOW), f"{SLOW}/INPUT")
    fast = sub(await ctx.process_profiling_snapshot(FAST), f"{FAST}/INPUT")
    trig = pub(await ctx.process_profiling_snapshot(TRIG), TRIG_OUT)
    assert 15e6 <= slow.handler_ns.p50_ns <= 200e6, slow.handler_ns  # sleeps 20 ms per message
    assert fast.handler_ns.p50_ns < slow.handler_ns.p50_ns / 10
    # The handler's profile_span("wait") is the sleep: timed for every timed message, by label.
    (span,) = slow.user_spans
    assert span.label == "wait" and span.span_ns.count == slow.timed_messages_total
    assert 15e6 <= span.span_ns.p50_ns <= slow.handler_ns.p50_ns * 1.3, (span, slow.handler_ns)
    assert fast.user_spans[0].span_ns.p50_ns < span.span_ns.p50_ns / 10
    assert slow.user_spans_untracked == 0
    # 20 messages into 4 buffers, drained at 20 ms each: the publisher had to wait.
    assert trig.backpressure_waits_total > waits_before
    assert trig.backpressure_wait_ns_total > 0


async def test_leaky_drops_are_the_messages_its_handler_never_saw(rig: Rig) -> None:
    ctx = rig.ctx
    await burst_delivered(ctx, 30)
    published_total = await published(ctx)

    def settled(s: ProcessProfilingSnapshot) -> bool:
        row = sub(s, f"{LEAKY}/INPUT")
        return row.queue_depth == 0 and row.messages_received_total == published_total \
            and row.timed_messages_total is not None \
            and row.timed_messages_total + row.drops_total == row.messages_received_total \
            and row.handler_ns.count == row.timed_messages_total

    snap = await until(ctx, LEAKY, settled, "LEAKY settling")
    row = sub(snap, f"{LEAKY}/INPUT")
    assert row.leaky and row.timing_sample_k == 1  # a slow handler: far under the budget, all timed
    assert row.drops_total > 0
    assert row.drops_total == published_total - row.timed_messages_total


async def test_two_observers_each_get_their_own_window(rig: Rig) -> None:
    a = rig.ctx
    async with GraphContext(rig.address, timeout=TIMEOUT, name="observer-b") as b:
        first_b = await b.process_profiling_snapshot(TICK)
        assert first_b.window_seconds == 0.0  # b's first snapshot
        assert pub(first_b, f"{TICK}/OUTPUT").messages_published_window == 0
        await a.process_profiling_snapshot(TICK)
        t_a = time.monotonic()
        await asyncio.sleep(0.3)
        second_b = await b.process_profiling_snapshot(TICK)  # must not shorten a's window
        await asyncio.sleep(0.3)
        second_a = await a.process_profiling_snapshot(TICK)
        elapsed_a = time.monotonic() - t_a
        assert 0.3 <= second_b.window_seconds
        # a's window spans both sleeps: b's snapshot in between did not shorten it.
        assert second_a.window_seconds >= 0.6
        assert second_a.window_seconds == pytest.approx(elapsed_a, abs=0.25)
        row_a = pub(second_a, f"{TICK}/OUTPUT")
        assert row_a.messages_published_window > 0


# --------------------------------------------------------------------------- traces


def samples_of(events: list[ProfilingTraceEvent]) -> list[ProfilingTraceSample]:
    return [s for ev in events for b in ev.batches for s in b.samples]


async def collect(stream: Any, until_: Any, what: str) -> list[ProfilingTraceEvent]:
    """Read trace events until ``until_(samples so far)``."""
    events: list[ProfilingTraceEvent] = []

    async def read() -> None:
        while not until_(samples_of(events)):
            item = await stream.next(TIMEOUT)
            assert item is not None, "the stream ended"
            assert not isinstance(item, m.StreamGap), item
            assert isinstance(item, ProfilingTraceEvent)
            events.append(item)
    try:
        await asyncio.wait_for(read(), TIMEOUT)
    except (TimeoutError, asyncio.TimeoutError):
        raise AssertionError(f"{what}: only {len(samples_of(events))} samples") from None
    return events


async def test_sample_mod_3_samples_every_third_message_on_both_streams(rig: Rig) -> None:
    ctx = rig.ctx
    fast_sub = sub(await ctx.process_profiling_snapshot(FAST), f"{FAST}/INPUT").endpoint_id
    control = ProfilingTraceControl(enabled=True, sample_mod=3, subscriber_endpoint_ids=(fast_sub,),
                                    publisher_topics=("-none-",), ttl_seconds=30.0)
    async with GraphContext(rig.address, timeout=TIMEOUT, name="observer-b") as other:
        s1 = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=0.02))
        s2 = await other.subscribe_profiling_trace(ProfilingStreamControl(interval=0.05))
        try:
            state = await ctx.process_set_profiling_trace(FAST, control)
            assert state["enabled"] and state["traced_endpoints"] == [fast_sub]
            first = await burst_delivered(ctx, 7)

            def complete(samples: list[ProfilingTraceSample]) -> bool:
                return len([s for s in samples if s.metric in ("handler_ns", "user_span_ns")]) >= 4

            got = [samples_of(await collect(s, complete, "trace stream")) for s in (s1, s2)]
        finally:
            await ctx.process_set_profiling_trace(FAST, ProfilingTraceControl(enabled=False))
            await s1.close()
            await s2.close()
    for samples in got:
        assert {s.endpoint_id for s in samples} == {fast_sub}
        by_metric: dict[str, list[int]] = {}
        for s in samples:
            by_metric.setdefault(s.metric, []).append(s.sample_seq)
        assert by_metric["handler_ns"] == [first + 2, first + 5]
        assert by_metric["lease_time_ns"] == [first + 2, first + 5]
        assert by_metric["e2e_latency_ns"] == [first + 2, first + 5]
        # The handler's span is sampled on the same messages, named topic:label, inside the handler's time.
        assert by_metric["user_span_ns"] == [first + 2, first + 5]
        handler = {s.sample_seq: s.value_ns for s in samples if s.metric == "handler_ns"}
        spans = [s for s in samples if s.metric == "user_span_ns"]
        assert {s.topic for s in spans} == {f"{FAST}/INPUT:wait"}
        assert all(0 < s.value_ns <= handler[s.sample_seq] for s in spans), (spans, handler)
        assert all(s.value_ns >= 0 and s.channel_kind == "SHM" for s in samples)
    assert [(s.metric, s.sample_seq, s.value_ns) for s in got[0]] == \
        [(s.metric, s.sample_seq, s.value_ns) for s in got[1]]  # both observers got every sample


async def test_publisher_trace_and_ttl_expiry(rig: Rig) -> None:
    ctx = rig.ctx
    control = ProfilingTraceControl(enabled=True, publisher_topics=(TRIG_OUT,), subscriber_topics=("-none-",),
                                    metrics=("publish_delta_ns", "backpressure_wait_ns"), ttl_seconds=1.0)
    trig_process = (await ctx.process_profiling_snapshot(TRIG)).process_id
    stream = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=0.02, process_ids=(trig_process,)))
    try:
        await ctx.process_set_profiling_trace(TRIG, control)
        snap = await ctx.process_profiling_snapshot(TRIG)
        assert snap.trace is not None and snap.trace.enabled and 0 < snap.trace_ttl_remaining_s <= 1.0
        first = await burst_delivered(ctx, 12)
        events = await collect(stream, lambda s: len([x for x in s if x.metric == "publish_delta_ns"]) >= 12,
                               "publisher samples")
        deltas = [s for s in samples_of(events) if s.metric == "publish_delta_ns"]
        assert [s.sample_seq for s in deltas][:12] == list(range(first, first + 12))
        assert deltas[0].value_ns == 0 and all(s.value_ns > 0 for s in deltas[1:12])
        assert {s.topic for s in samples_of(events)} == {TRIG_OUT}
        # TTL: tracing switches itself off; nothing is recorded after that.
        await until(ctx, TRIG, lambda s: s.trace is None, "trace TTL expiry", timeout=TIMEOUT)
        await burst_delivered(ctx, 3)
        batch = await ctx.process_profiling_trace_batch(TRIG, max_samples=100)
        assert batch.samples == () and not batch.tracing
    finally:
        await stream.close()


async def test_bad_trace_controls_are_invalid_requests(rig: Rig) -> None:
    ctx = rig.ctx
    for bad in (ProfilingTraceControl(enabled=True, sample_mod=0),
                ProfilingTraceControl(enabled=True, ttl_seconds=0.0),
                ProfilingTraceControl(enabled=True, metrics=("cpu_ns",))):
        with pytest.raises(InvalidRequest):
            await ctx.process_set_profiling_trace(TRIG, bad)
    response = await ctx.process_request(TRIG, "SET_PROFILING_TRACE", {"enabled": "yes"})
    assert not response.ok and response.error_code == "INVALID_REQUEST"
    response = await ctx.process_request(TRIG, "GET_PROFILING_TRACE_BATCH", {"max_samples": 0})
    assert not response.ok and response.error_code == "INVALID_REQUEST"
    snap = await ctx.process_profiling_snapshot(TRIG)
    assert snap.trace is None  # nothing was switched on


# --------------------------------------------------------------------------- all processes


async def test_snapshot_all_covers_every_process_and_reports_a_hung_one(rig: Rig) -> None:
    ctx = rig.ctx
    everything = await ctx.profiling_snapshot_all(timeout_per_process=2.0)
    assert len(everything) == 3
    assert all(isinstance(v, ProcessProfilingSnapshot) for v in everything.values()), everything
    topics = {p.topic for v in everything.values() for p in v.publishers}  # type: ignore[union-attr]
    assert {TRIG_OUT, f"{TICK}/OUTPUT"} <= topics

    hung = rig.pids[SLOW]
    os.kill(hung, signal.SIGSTOP)
    try:
        start = time.monotonic()
        result = await asyncio.wait_for(ctx.profiling_snapshot_all(timeout_per_process=0.5), TIMEOUT)
        took = time.monotonic() - start
    finally:
        os.kill(hung, signal.SIGCONT)
    errors = [v for v in result.values() if isinstance(v, ProfilingError)]
    assert len(result) == 3 and len(errors) == 1, result
    assert errors[0].error_code == "TIMEOUT"
    healthy = [v for v in result.values() if isinstance(v, ProcessProfilingSnapshot)]
    assert {v.pid for v in healthy} == {rig.pids[TRIG], rig.pids[FAST]}
    assert took < 3.0  # concurrent: about one timeout, not one per process


# --------------------------------------------------------------------------- the demo


async def test_every_topic_of_the_demo_shows_rates_bytes_and_percentiles() -> None:
    """What the console's profiling tab shows: every demo topic has traffic, rates and percentiles."""
    from ezmsg_console.runtime.demo import DemoPipeline

    server = GraphServer("127.0.0.1:0")
    address = server.start_in_thread(TIMEOUT)
    runner = Runner({"DEMO": DemoPipeline()}, address=str(address), duration=60)
    task = asyncio.ensure_future(runner.run())
    try:
        async with GraphContext(address, timeout=TIMEOUT, name="demo-profiling") as ctx:
            async def poll() -> dict[str, Any]:
                while True:
                    if task.done():
                        raise AssertionError(f"the demo ended early: {task.result()!r}")
                    result = await ctx.profiling_snapshot_all(timeout_per_process=2.0)
                    snaps = [v for v in result.values() if isinstance(v, ProcessProfilingSnapshot)]
                    subs = [s for v in snaps for s in v.subscribers if not s.topic.endswith("INPUT_SETTINGS")]
                    pubs = [p for v in snaps for p in v.publishers if not p.topic.endswith("INPUT_SETTINGS")]
                    if len(snaps) == 3 and len(pubs) == 3 and len(subs) == 3 and all(
                            s.receive_rate_hz_window > 0 and s.latency_ns.count > 0 for s in subs) and all(
                            p.publish_rate_hz_window > 0 for p in pubs):  # a publisher's window may lag
                        return {"pubs": pubs, "subs": subs}
                    await asyncio.sleep(0.2)  # a rate needs a window of time
            seen = await asyncio.wait_for(poll(), 30)
    finally:
        runner.request_stop("test done")
        result = await asyncio.wait_for(task, 3 * TIMEOUT)
        server.stop_thread()
    assert result.ok, result.errors
    assert {p.topic for p in seen["pubs"]} == {"DEMO/SOURCE/OUTPUT", "DEMO/FILTER/OUTPUT", "DEMO/FEATURES/OUTPUT"}
    for p in seen["pubs"]:
        assert p.messages_published_total > 0 and p.publish_rate_hz_window > 0
        # Bytes count what left the process: FILTER hands its output to FEATURES in the same process.
        assert (p.bytes_published_total > 0) == (p.shm_links + p.tcp_links > 0)
    for s in seen["subs"]:
        assert s.channel_kind_last in ("SHM", "LOCAL")
        assert s.handler_ns.count > 0 and s.handler_ns.p99_ns >= s.handler_ns.p50_ns > 0
        assert s.latency_ns.p99_ns >= s.latency_ns.p50_ns > 0
        assert s.drops_total == 0
    assert shm.ours(runner.run_tag + "_") == []


async def test_two_observers_trace_one_worker_and_one_stopping_never_ends_the_other(rig: Rig) -> None:
    """Trace selections are per observer: A traces FAST, B traces TSINK (same worker); the worker
    records both; A's stop (and A's TTL) end only A's; B keeps its trace and its samples."""
    a = rig.ctx
    fast = sub(await a.process_profiling_snapshot(FAST), f"{FAST}/INPUT").endpoint_id
    tsink = sub(await a.process_profiling_snapshot(TSINK), f"{TSINK}/INPUT").endpoint_id

    def only(endpoint: str, ttl: float = 30.0) -> ProfilingTraceControl:
        return ProfilingTraceControl(enabled=True, subscriber_endpoint_ids=(endpoint,),
                                     publisher_endpoint_ids=("",), ttl_seconds=ttl)

    async with GraphContext(rig.address, timeout=TIMEOUT, name="observer-b") as b:
        stream = await b.subscribe_profiling_trace(ProfilingStreamControl(interval=0.02))
        try:
            state_a = await a.process_set_profiling_trace(FAST, only(fast))
            state_b = await b.process_set_profiling_trace(TSINK, only(tsink))
            assert state_a["enabled"] and state_b["enabled"] and state_b["observers"] == 2
            assert state_b["traced_endpoints"] == sorted([fast, tsink])  # the union is recorded
            # A stops: B's selection stands.
            state_a = await a.process_set_profiling_trace(FAST, ProfilingTraceControl(enabled=False))
            assert not state_a["enabled"] and state_a["traced_endpoints"] == [tsink]
            mine_b = (await b.process_profiling_snapshot(TSINK)).trace
            assert mine_b is not None and mine_b.subscriber_endpoint_ids == (tsink,)
            assert (await a.process_profiling_snapshot(TSINK)).trace is None  # A's view: A traces nothing
            # B still gets TSINK samples (TICK feeds it every 10 ms) after A's stop.
            await collect(stream, lambda s: len([x for x in s if x.endpoint_id == tsink]) >= 3,
                          "B's samples after A stopped")
            # A traces again, briefly: its TTL ends its own selection only.
            await a.process_set_profiling_trace(FAST, only(fast, ttl=0.3))
            await until(a, FAST, lambda s: s.trace is None, "A's short TTL", timeout=TIMEOUT)
            assert (await b.process_profiling_snapshot(TSINK)).trace is not None
            state = await b.process_set_profiling_trace(TSINK, only(tsink))
            assert state["traced_endpoints"] == [tsink] and state["observers"] == 1
        finally:
            await b.process_set_profiling_trace(TSINK, ProfilingTraceControl(enabled=False))
            await a.process_set_profiling_trace(FAST, ProfilingTraceControl(enabled=False))
            await stream.close()
