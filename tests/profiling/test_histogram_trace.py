"""Histogram buckets and percentiles, trace rings, snapshot window arithmetic (pure, no I/O)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ezmsg_console.profiling.histogram import EDGES_NS, NUM_BUCKETS, Histogram, bucket_of, upper_edge
from ezmsg_console.profiling.sampling import TimingSampler
from ezmsg_console.profiling.snapshot import SnapshotBuilder
from ezmsg_console.profiling.trace import TraceRing
from ezmsg_console.pubsub.spans import SpanSet


@given(st.integers(min_value=0, max_value=2**62))
def test_every_value_falls_inside_its_bucket(value: int) -> None:
    idx = bucket_of(value)
    assert 0 <= idx < NUM_BUCKETS
    assert EDGES_NS[idx] <= value < upper_edge(idx)
    h = Histogram()
    h.record(value)
    assert h.counts[idx] == 1 and h.total == 1


def test_huge_values_share_the_last_bucket_and_edges_fit_int64() -> None:
    h = Histogram()
    h.record(2**70)
    assert h.counts[-1] == 1 and bucket_of(2**70) == NUM_BUCKETS - 1 and bucket_of(-5) == 16
    assert max(EDGES_NS) < 2**63 and len(EDGES_NS) == NUM_BUCKETS + 1


def test_buckets_are_at_most_a_quarter_wide() -> None:
    for idx in range(17, NUM_BUCKETS - 1):
        low, high = EDGES_NS[idx], upper_edge(idx)
        assert high > low
        if low >= 100:  # the +8 ns shift widens the smallest buckets a little
            assert (high - low) / low <= 0.27
    assert EDGES_NS[16] == 0 and all(EDGES_NS[i] <= EDGES_NS[i + 1] for i in range(NUM_BUCKETS))


def test_percentiles_are_within_the_bucket_resolution() -> None:
    rng = random.Random(7)
    values = sorted(int(rng.lognormvariate(11, 1.5)) + 1 for _ in range(20000))
    h = Histogram()
    for v in values:
        h.record(v)
    snap = h.snapshot()
    assert snap.count == len(values)
    for q, got in ((0.5, snap.p50_ns), (0.9, snap.p90_ns), (0.99, snap.p99_ns)):
        exact = values[int(q * len(values)) - 1]
        assert got == pytest.approx(exact, rel=0.25), q
    assert snap.sum_ns == pytest.approx(sum(values), rel=0.13)
    assert sum(snap.bucket_counts) == len(values)
    assert snap.max_ns >= values[-1]


def test_pending_values_are_bucketed_in_bulk_exactly_as_one_by_one() -> None:
    """The hot paths append raw values to ``pending``; a flush (or any read) buckets them
    exactly as :func:`bucket_of` would, edge cases included."""
    rng = random.Random(3)
    values = [rng.randrange(0, 2**k) for k in range(1, 64) for _ in range(20)]
    values += [(1 << k) + d for k in range(3, 64) for d in (-9, -8, -7, -1, 0, 1)]
    values += [-(2**63), -5, 0, 1, 2**53 - 9, 2**53 - 8, 2**63 - 1]  # negatives, the float-exact limit, int64 max
    expected = [0] * NUM_BUCKETS
    for v in values:
        expected[bucket_of(v)] += 1
    h = Histogram()
    h.pending.extend(values)
    assert h.counts == expected and h.pending == []  # reading flushes
    h.pending.extend([2**70, 5])  # not an int64: bucketed one by one
    h.flush()
    assert h.counts[-1] == expected[-1] + 1 and h.total == len(values) + 2


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50))
def test_flush_matches_bucket_of(values: list[int]) -> None:
    h, ref = Histogram(), Histogram()
    h.pending.extend(values)
    for v in values:
        ref.record(v)
    assert h.copy_counts() == ref.copy_counts()
    assert h.snapshot() == ref.snapshot()


def test_subscriber_histograms_count_every_message_and_stay_bounded() -> None:
    from ezmsg_console.protocol.graph import SubscriberInfo
    from ezmsg_console.pubsub import subscriber as subscriber_module
    from ezmsg_console.pubsub.subscriber import Delivery, Subscriber

    class Host:
        histograms = True
        timed_budget = 0  # time every message

    class Source:
        def release_local(self, slot: int) -> None:
            pass

    sub = Subscriber(SubscriberInfo(sub_id="s", topic="t"), Host())  # type: ignore[arg-type]
    n = subscriber_module.FLUSH_EVERY * 2 + 10
    for i in range(n):
        sub._queue.append(Delivery(None, Source(), 0, i, 1 if i % 2 else 0, "LOCAL", None, sub))
        coro = sub.recv_delivery()
        with pytest.raises(StopIteration) as stop:
            coro.send(None)
        stop.value.value.done()
        assert len(sub.handler_ns.pending) <= subscriber_module.FLUSH_EVERY
    assert sub.handler_ns.total == n and sub.latency_ns.total == n // 2  # publish time 0: no latency
    for i in range(n):  # recv(): latency only (no handler span), still bounded
        sub._queue.append(Delivery(None, Source(), 0, i, 1, "LOCAL", None, sub))
        coro = sub.recv()
        with pytest.raises(StopIteration):
            coro.send(None)
        assert len(sub.latency_ns.pending) <= subscriber_module.FLUSH_EVERY
    assert sub.handler_ns.total == n and sub.latency_ns.total == n // 2 + n


def test_window_is_the_difference_since_a_copy() -> None:
    h = Histogram()
    for v in (100, 200, 300):
        h.record(v)
    mark = h.copy_counts()
    for v in (10_000, 20_000):
        h.record(v)
    window = h.window(mark)
    assert window.count == 2 and 9_000 <= window.p50_ns <= 20_500
    assert h.window(None).count == 0  # no previous snapshot: an empty window
    assert h.snapshot().count == 5


def test_ring_overwrites_the_oldest_and_counts_it() -> None:
    ring = TraceRing(0, "e", "t", stride=3, capacity=4)
    for i in range(10):
        ring.rows.extend((100 + i, i, 0))  # a publisher row: (timestamp, msg_id, 0 = a publish sample)
    ring.fold()
    assert ring.rows == [] and ring.size == 10  # folded into one chunk, trimmed when read
    assert len(ring.columns()[0]) == 4 and ring.dropped == 6 and ring.size == 4
    assert list(ring.take(3)[2]) == [6, 7, 8]  # the seqs of the oldest three kept
    ring.rows.extend((110, 10, 0))
    ring.fold()
    ring.columns()
    ts, values, seqs, _metric, _channel = ring.take(100)
    assert list(seqs) == [9, 10] and list(ts) == [109, 110]
    assert list(values) == [1, 1]  # time since the previous sampled publish, also across folds
    assert ring.size == 0 and ring.dropped == 6  # the drain reports and resets dropped


class _Pub:
    def __init__(self) -> None:
        self.pub_id, self.topic, self.num_buffers = "P", "T", 4
        self.msg_id = self.bytes_sent = self.backpressure_waits = self.backpressure_wait_ns = 0
        self.in_flight = 0
        self.links: list[Any] = []
        self.local: list[Any] = ["sub"]


class _Sub:
    def __init__(self) -> None:
        self.sub_id, self.topic, self.leaky = "S", "T", False
        self.received = self.bytes_received = self.dropped = 0
        self.last_channel = "UNKNOWN"
        self.publisher_ids = ["P"]
        self.pending = 0
        self.handler_ns, self.latency_ns = Histogram(), Histogram()
        self.timing = TimingSampler(0)
        self.spans = SpanSet()

    def retune_timing(self) -> None:
        pass


def test_reference_window_arithmetic_per_observer() -> None:
    """reference-behaviour §6: the reference arithmetic, with two observers."""
    now = [0]
    builder = SnapshotBuilder(clock=lambda: now[0])
    pub, sub = _Pub(), _Sub()

    def snap(observer: str) -> Any:
        return builder.build(observer, process_id="p", pid=1, host="h", publishers=[pub], subscribers=[sub],
                             histograms=True, trace=None, trace_ttl_remaining_s=0.0)

    pub.msg_id, pub.in_flight = 2, 1
    sub.received, sub.last_channel = 1, "LOCAL"
    first = snap("A")
    p, s = first.publishers[0], first.subscribers[0]
    assert first.window_seconds == 0.0
    assert (p.messages_published_total, s.messages_received_total) == (2, 1)
    assert (p.messages_published_window, s.messages_received_window, p.publish_rate_hz_window) == (0, 0, 0.0)
    assert (p.inflight_messages_current, s.channel_kind_last) == (1, "LOCAL")

    now[0] = 500_000_000
    other = snap("B")  # another observer in between does not move A's window
    assert other.window_seconds == 0.0

    now[0] = 1_000_000_000
    pub.msg_id, pub.in_flight, pub.bytes_sent = 3, 0, 64
    sub.received, sub.last_channel, sub.bytes_received = 2, "SHM", 64
    second = snap("A")
    p, s = second.publishers[0], second.subscribers[0]
    assert second.window_seconds == 1.0
    assert (p.messages_published_total, s.messages_received_total) == (3, 2)
    assert (p.messages_published_window, s.messages_received_window) == (1, 1)
    assert p.publish_rate_hz_window == 1.0 and s.receive_rate_hz_window == 1.0
    assert p.bytes_published_window == 64 and p.bytes_rate_window == 64.0
    assert (p.inflight_messages_current, s.channel_kind_last) == (0, "SHM")
    assert snap("B").window_seconds == 0.5


def test_span_histograms_have_a_window_per_observer() -> None:
    builder = SnapshotBuilder(clock=lambda: 0)
    sub = _Sub()

    def spans(observer: str) -> dict[str, tuple[int, int]]:
        row = builder.build(observer, process_id="p", pid=1, host="h", publishers=[], subscribers=[sub],
                            histograms=True, trace=None, trace_ttl_remaining_s=0.0).subscribers[0]
        return {sp.label: (sp.span_ns.count, sp.span_ns_window.count) for sp in row.user_spans}

    sub.spans.add("fft", 1000)
    assert spans("A") == {"fft": (1, 0)}  # A's first snapshot: empty windows
    sub.spans.add("fft", 2000)
    sub.spans.add("decode", 50)  # a label new since A's previous snapshot: all of it is in A's window
    assert spans("A") == {"decode": (1, 1), "fft": (2, 1)}
    assert spans("B") == {"decode": (1, 0), "fft": (2, 0)}
    sub.spans.add("fft", 3000)
    assert spans("A") == {"decode": (1, 0), "fft": (3, 1)}
    assert spans("B") == {"decode": (1, 0), "fft": (3, 1)}


def test_observers_are_bounded_lru() -> None:
    now = [0]
    builder = SnapshotBuilder(max_observers=2, clock=lambda: now[0])

    def window(observer: str) -> float:
        now[0] += 1_000_000_000
        return builder.build(observer, process_id="p", pid=1, host="h", publishers=[], subscribers=[],
                             histograms=True, trace=None, trace_ttl_remaining_s=0.0).window_seconds

    assert [window("A"), window("B"), window("A")] == [0.0, 0.0, 2.0]
    assert window("C") == 0.0  # evicts B, the least recently seen
    assert window("A") == 2.0  # A kept its mark
    assert window("B") == 0.0  # B starts again (and evicts C)
    assert window("C") == 0.0


def test_a_subscriber_keeps_at_most_max_span_labels_and_counts_the_rest() -> None:
    from ezmsg_console.protocol.profiling import MAX_SPAN_LABELS

    spans = SpanSet()
    for i in range(MAX_SPAN_LABELS + 3):
        spans.add(f"label{i}", 100)
    spans.add("label0", 200)
    assert len(spans.histograms) == MAX_SPAN_LABELS and spans.untracked == 3
    assert spans.histograms["label0"].total == 2
