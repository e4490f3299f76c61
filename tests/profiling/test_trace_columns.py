"""The worker's tracer (hooks, rings, columnar drain) and the columnar ProfilingTraceBatch (pure, no I/O)."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from ezmsg_console.profiling.trace import METRICS, Tracer
from ezmsg_console.protocol.codec import packb, unpackb
from ezmsg_console.protocol.errors import DecodeError
from ezmsg_console.protocol.profiling import (
    ProcessProfilingTraceUpdate,
    ProfilingTraceBatch,
    ProfilingTraceControl,
    TRACE_CHANNELS,
    ProfilingTraceSample,
    int64_bytes,
    uint16_bytes,
)
from ezmsg_console.protocol.wire import decode_message, encode_message, to_wire

ON = ProfilingTraceControl(enabled=True, ttl_seconds=60.0)


class Clock:
    """A fake monotonic clock: every reading is 10 ns after the previous one."""

    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 10
        return self.now


class Pub:
    """Calls its hook as Publisher.broadcast does: with the send stamp it took."""

    def __init__(self, clock: Any, pub_id: str = "P", topic: str = "T/OUT") -> None:
        self.pub_id, self.topic, self.hook, self.clock = pub_id, topic, None, clock

    def publish(self, msg_id: int, waited: int = 0) -> int:
        now = self.clock()
        if self.hook is not None:
            self.hook((now, msg_id, waited))
        return now


class Delivery:
    def __init__(self, msg_id: int, publish_ns: int, channel: str) -> None:
        self.msg_id, self.publish_ns, self.channel, self.arrival_ns = msg_id, publish_ns, channel, 0


class Sub:
    """Stamps arrival and calls its trace hook as Subscriber and Delivery.done do."""

    def __init__(self, clock: Clock, sub_id: str = "S", topic: str = "T/OUT") -> None:
        self.sub_id, self.topic, self.trace, self.clock = sub_id, topic, None, clock
        self.trace_arrival = False
        self.handled: list[tuple[int, int, int, int, int]] = []  # msg_id, publish, arrival, start, end

    def receive(self, msg_id: int, publish_ns: int, channel: str = "SHM") -> None:
        delivery = Delivery(msg_id, publish_ns, channel)
        if self.trace_arrival:
            delivery.arrival_ns = self.clock()
        start = self.clock()
        end = self.clock()
        self.handled.append((msg_id, publish_ns, delivery.arrival_ns, start, end))
        if self.trace is not None:
            self.trace((end, start, delivery.arrival_ns, delivery.publish_ns, delivery.msg_id,
                        TRACE_CHANNELS.index(delivery.channel)))


def rig(control: ProfilingTraceControl = ON, capacity: int = 10000) -> tuple[Tracer, Clock, Pub, Sub]:
    clock = Clock()
    tracer = Tracer(capacity=capacity)
    pub, sub = Pub(clock), Sub(clock)
    tracer.configure(control, [pub], [sub])
    return tracer, clock, pub, sub


def roundtrips(clock: Clock, pub: Pub, sub: Sub, ids: range, channel: str = "SHM") -> None:
    for i in ids:
        sub.receive(i, pub.publish(i), channel)


def batch_of(tracer: Tracer, max_samples: int = 100_000) -> ProfilingTraceBatch:
    """Drain into a batch through the *checked* constructor and the wire (both must accept it)."""
    c = tracer.drain(max_samples)
    batch = ProfilingTraceBatch(
        "p", 1, "h", dropped=c.dropped, tracing=True, endpoints=c.endpoints, topics=c.topics, metrics=c.metrics,
        channels=c.channels, timestamps=c.timestamps, values=c.values, seqs=c.seqs,
        endpoint_index=c.endpoint_index, metric_index=c.metric_index, channel_index=c.channel_index)
    assert batch.n_samples == c.n_samples
    back = decode_message(unpackb(packb(encode_message(ProcessProfilingTraceUpdate(batch)))))
    assert back == ProcessProfilingTraceUpdate(batch)
    return batch


def keys(samples: Any) -> list[tuple[int, int]]:
    return [(s.timestamp_mono_ns, s.sample_seq) for s in samples]


def test_every_metric_of_both_sides_in_time_order() -> None:
    tracer, clock, pub, sub = rig()
    roundtrips(clock, pub, sub, range(5))
    batch = batch_of(tracer)
    samples = batch.samples
    assert len(samples) == 5 + 3 * 5 and batch.dropped == 0
    assert keys(samples) == sorted(keys(samples))
    by_metric = collections.defaultdict(list)
    for s in samples:
        by_metric[s.metric].append(s)
    pubs = by_metric["publish_delta_ns"]
    assert [s.sample_seq for s in pubs] == list(range(5))
    assert pubs[0].value_ns == 0 and all(s.value_ns > 0 for s in pubs[1:])
    assert [b.timestamp_mono_ns - a.timestamp_mono_ns for a, b in zip(pubs, pubs[1:])] == \
        [s.value_ns for s in pubs[1:]]
    assert {(s.endpoint_id, s.topic, s.channel_kind) for s in pubs} == {("P", "T/OUT", "")}
    for (msg_id, published, arrival, start, end), lease, handler, e2e in zip(
            sub.handled, by_metric["lease_time_ns"], by_metric["handler_ns"], by_metric["e2e_latency_ns"]):
        assert (lease.sample_seq, lease.timestamp_mono_ns, lease.value_ns) == (msg_id, end, end - arrival)
        assert (handler.sample_seq, handler.timestamp_mono_ns, handler.value_ns) == (msg_id, end, end - start)
        assert (e2e.sample_seq, e2e.timestamp_mono_ns, e2e.value_ns) == (msg_id, start, start - published)
        assert {(s.endpoint_id, s.channel_kind) for s in (lease, handler, e2e)} == {("S", "SHM")}
    assert batch.metrics == METRICS and set(batch.endpoints) == {"P", "S"}
    assert tracer.drain(10).n_samples == 0  # drained


def test_sample_mod_makes_one_decision_per_message_and_waits_are_always_recorded() -> None:
    tracer, clock, pub, sub = rig(ProfilingTraceControl(enabled=True, sample_mod=3))
    for i in range(7):
        pub.publish(i, waited=5 if i == 0 else 0)
        sub.receive(i, clock())
    samples = batch_of(tracer).samples
    seqs = collections.defaultdict(list)
    for s in samples:
        seqs[s.metric].append(s.sample_seq)
    assert seqs == {"publish_delta_ns": [2, 5], "backpressure_wait_ns": [0], "lease_time_ns": [2, 5],
                    "handler_ns": [2, 5], "e2e_latency_ns": [2, 5]}
    deltas = [s for s in samples if s.metric == "publish_delta_ns"]
    assert deltas[0].value_ns == 0 and deltas[1].value_ns == deltas[1].timestamp_mono_ns - deltas[0].timestamp_mono_ns
    assert [s.value_ns for s in samples if s.metric == "backpressure_wait_ns"] == [5]


@pytest.mark.parametrize(("metrics", "mod", "expected"), [
    (("backpressure_wait_ns",), 1, [(1, "backpressure_wait_ns", 7), (3, "backpressure_wait_ns", 9)]),
    (("publish_delta_ns",), 1, [(0, "publish_delta_ns", 0), (1, "publish_delta_ns", 10),
                                (2, "publish_delta_ns", 10), (3, "publish_delta_ns", 10)]),
    (None, 2, [(1, "backpressure_wait_ns", 7), (1, "publish_delta_ns", 0), (3, "backpressure_wait_ns", 9),
               (3, "publish_delta_ns", 20)]),
    (None, 3, [(1, "backpressure_wait_ns", 7), (2, "publish_delta_ns", 0), (3, "backpressure_wait_ns", 9)]),
])
def test_publisher_rows_give_the_wanted_waits_and_deltas(metrics: tuple[str, ...] | None, mod: int,
                                                         expected: list[tuple[int, str, int]]) -> None:
    """A wait alone (not sampled, or deltas filtered out) travels as a negative wait; folded in
    two chunks, the deltas still count from the previous *sampled* publish."""
    tracer = Tracer()
    pub = Pub(Clock())  # publishes 10 ns apart
    tracer.configure(ProfilingTraceControl(enabled=True, metrics=metrics, sample_mod=mod), [pub], [])
    pub.publish(0)
    pub.publish(1, waited=7)
    tracer.fold()
    pub.publish(2)
    pub.publish(3, waited=9)
    samples = batch_of(tracer).samples
    assert [(s.sample_seq, s.metric, s.value_ns) for s in samples] == expected


def test_partial_drains_take_the_oldest_and_leave_the_rest_in_place() -> None:
    tracer, clock, pub, sub = rig()
    roundtrips(clock, pub, sub, range(50))
    everything = []
    batches = []
    while True:
        batch = batch_of(tracer, max_samples=32)
        if not batch.n_samples:
            break
        assert batch.n_samples <= 32
        batches.append(batch.samples)
        everything.extend(batch.samples)
    assert len(everything) == 4 * 50 and len(set(everything)) == 4 * 50  # each sample exactly once
    assert len(batches) == 7
    for samples in batches:
        assert keys(samples) == sorted(keys(samples))
    first = batches[0]
    assert {s.metric for s in first} >= {"publish_delta_ns", "handler_ns", "lease_time_ns"}
    assert max(s.sample_seq for s in first) < 10  # the oldest messages, not one endpoint's backlog
    # deltas continue across drains: only the very first publish has 0
    assert [s.value_ns == 0 for s in everything if s.metric == "publish_delta_ns"].count(True) == 1


def test_ring_capacity_drops_the_oldest_samples_and_reports_them_once() -> None:
    tracer, clock, pub, sub = rig(capacity=10)
    roundtrips(clock, pub, sub, range(6))
    batch = batch_of(tracer)
    assert batch.dropped == 3 * 6 - 10
    samples = batch.samples
    assert len([s for s in samples if s.endpoint_id == "P"]) == 6
    kept = [(s.sample_seq, s.metric) for s in samples if s.endpoint_id == "S"]
    assert len(kept) == 10
    # the ring keeps the newest ten in recording order (e2e, lease, handler per message):
    # message 2's handler sample onwards
    assert min(kept) == (2, "handler_ns") and (2, "lease_time_ns") not in kept
    assert batch_of(tracer).dropped == 0


def test_folding_often_keeps_exactly_the_newest_samples() -> None:
    tracer, clock, pub, sub = rig(capacity=10)
    for start in range(0, 100, 4):
        roundtrips(clock, pub, sub, range(start, start + 4))
        tracer.fold(min_rows=2)  # as the push loop does every few ms
        assert all(len(r.rows) == 0 and r.size < 10 + 12 for r in tracer.rings.values())  # whole chunks dropped
    tracer.fold(min_rows=5)
    assert all(len(r.rows) == 0 for r in tracer.rings.values())
    batch = batch_of(tracer)
    assert batch.dropped == 100 - 10 + 300 - 10
    samples = batch.samples
    assert sorted(s.sample_seq for s in samples if s.endpoint_id == "P") == list(range(90, 100))
    kept = [(s.sample_seq, s.metric) for s in samples if s.endpoint_id == "S"]
    assert len(kept) == 10 and min(kept) == (96, "handler_ns")  # message 96's last sample, then 97..99


def test_every_publish_with_a_wait_gives_a_wait_and_a_delta_sample() -> None:
    tracer, clock, pub, sub = rig()
    stamps = [pub.publish(0), pub.publish(1, waited=7), pub.publish(2)]
    samples = batch_of(tracer).samples
    assert [(s.sample_seq, s.metric, s.timestamp_mono_ns, s.value_ns) for s in samples] == [
        (0, "publish_delta_ns", stamps[0], 0),
        (1, "backpressure_wait_ns", stamps[1], 7), (1, "publish_delta_ns", stamps[1], stamps[1] - stamps[0]),
        (2, "publish_delta_ns", stamps[2], stamps[2] - stamps[1])]


def test_filters_metrics_and_reconfigure() -> None:
    tracer, clock, pub, sub = rig(ProfilingTraceControl(enabled=True, metrics=("handler_ns",)))
    assert pub.hook is None and not sub.trace_arrival and sub.trace is not None  # no arrival stamp needed
    roundtrips(clock, pub, sub, range(3))
    assert [s.metric for s in batch_of(tracer).samples] == ["handler_ns"] * 3

    roundtrips(clock, pub, sub, range(3, 5))
    tracer.configure(ProfilingTraceControl(enabled=True, publisher_topics=("other",)), [pub], [sub])
    assert batch_of(tracer).n_samples == 0  # nothing stale survives a new control
    assert pub.hook is None and sub.trace is not None  # a publisher filter alone leaves subscribers traced
    tracer.configure(ProfilingTraceControl(enabled=True, subscriber_endpoint_ids=("nope",)), [pub], [sub])
    assert pub.hook is not None and sub.trace is None and not sub.trace_arrival
    tracer.disable()
    assert pub.hook is None and tracer.rings == {}


def test_missing_stamps_and_mixed_channels() -> None:
    tracer, clock, pub, sub = rig()
    sub.trace_arrival = False  # arrived before tracing started: no arrival stamp, so no lease sample
    sub.receive(1, 0, "TCP")  # publish time unknown: no e2e sample
    sub.trace_arrival = True
    sub.receive(2, clock(), "LOCAL")
    sub.receive(3, clock(), "SHM")
    samples = batch_of(tracer).samples
    assert [(s.sample_seq, s.metric, s.channel_kind) for s in samples if s.sample_seq == 1] == \
        [(1, "handler_ns", "TCP")]
    assert {(s.sample_seq, s.channel_kind) for s in samples if s.sample_seq > 1} == {(2, "LOCAL"), (3, "SHM")}
    assert len(samples) == 1 + 3 + 3


# -- the batch itself -----------------------------------------------------------------

SAMPLES = (
    ProfilingTraceSample(10, "pub-1", "A/OUT", "publish_delta_ns", 500, "", 3),
    ProfilingTraceSample(11, "sub-1", "A/OUT", "lease_time_ns", 700, "SHM", 3),
    ProfilingTraceSample(12, "sub-1", "A/OUT", "handler_ns", -1, "SHM", 3),
)


def test_samples_and_columns_describe_the_same_batch() -> None:
    batch = ProfilingTraceBatch("p", 1, "h", SAMPLES, dropped=2)
    assert batch.samples == SAMPLES and batch.n_samples == 3
    same = ProfilingTraceBatch(
        "p", 1, "h", dropped=2, endpoints=("pub-1", "sub-1"), topics=("A/OUT", "A/OUT"),
        metrics=("publish_delta_ns", "lease_time_ns", "handler_ns"), channels=("", "SHM"),
        timestamps=int64_bytes([10, 11, 12]), values=int64_bytes([500, 700, -1]), seqs=int64_bytes([3, 3, 3]),
        endpoint_index=uint16_bytes([0, 1, 1]), metric_index=bytes([0, 1, 2]), channel_index=bytes([0, 1, 1]))
    assert same == batch
    assert batch.select({"sub-1"}) == SAMPLES[1:] and batch.select(()) == () and batch.select(None) == SAMPLES
    assert to_wire(batch)["timestamps"] == (10).to_bytes(8, "little") + (11).to_bytes(8, "little") + \
        (12).to_bytes(8, "little")
    assert "n_samples=3" in repr(batch)
    assert ProfilingTraceBatch("p", 1, "h").samples == () == ProfilingTraceBatch("p", 1, "h", ()).samples
    with pytest.raises(TypeError):
        ProfilingTraceBatch("p", 1, "h", SAMPLES, timestamps=b"\0" * 8)


def _wire() -> dict[str, Any]:
    return encode_message(ProcessProfilingTraceUpdate(ProfilingTraceBatch("p", 1, "h", SAMPLES)))


def _mutated(**changes: Any) -> dict[str, Any]:
    wire = _wire()
    wire["batch"].update(changes)
    return wire


@pytest.mark.parametrize("changes", [
    {"timestamps": b"\0" * 7},  # not whole int64s
    {"timestamps": b"\0" * 16},  # fewer timestamps than samples
    {"values": b"\0" * 32},
    {"seqs": b""},
    {"endpoint_index": b"\0" * 5},
    {"metric_index": b"\0\0"},
    {"channel_index": b"\0\0\0\0"},
    {"endpoint_index": uint16_bytes([0, 1, 2])},  # past the endpoints table
    {"endpoint_index": uint16_bytes([0, 256, 1])},  # a high byte
    {"metric_index": bytes([0, 1, 3])},
    {"channel_index": bytes([0, 2, 1])},
    {"topics": ["A/OUT"]},  # not parallel to endpoints
    {"endpoints": [], "topics": []},
    {"metrics": [f"m{i}" for i in range(257)]},
    {"timestamps": [10, 11, 12]},  # a list, not bytes
    {"endpoints": ["pub-1", 5]},
])
def test_malformed_columns_are_decode_errors(changes: dict[str, Any]) -> None:
    assert decode_message(unpackb(packb(_wire()))) == ProcessProfilingTraceUpdate(
        ProfilingTraceBatch("p", 1, "h", SAMPLES))
    with pytest.raises(DecodeError):
        decode_message(unpackb(packb(_mutated(**changes))))


def test_a_big_endpoint_table_is_checked_too() -> None:
    names = tuple(f"e{i}" for i in range(300))
    columns = dict(endpoints=names, topics=names, metrics=("handler_ns",), channels=("",),
                   timestamps=int64_bytes([1, 2]), values=int64_bytes([1, 2]), seqs=int64_bytes([1, 2]),
                   metric_index=bytes(2), channel_index=bytes(2))
    batch = ProfilingTraceBatch("p", 1, "h", endpoint_index=uint16_bytes([299, 5]), **columns)
    assert [s.endpoint_id for s in batch.samples] == ["e299", "e5"]
    with pytest.raises(ValueError):
        ProfilingTraceBatch("p", 1, "h", endpoint_index=uint16_bytes([300, 5]), **columns)


def test_equal_timestamps_are_ordered_by_sample_seq_across_endpoints() -> None:
    tracer = Tracer()
    coarse = lambda: 5_000  # noqa: E731 - a coarse clock: every sample at the same time
    first, second = Pub(coarse, "A", "T/A"), Pub(coarse, "B", "T/B")
    tracer.configure(ON, [first, second], [])
    first.publish(5)
    first.publish(9)
    second.publish(3)
    second.publish(7)
    samples = batch_of(tracer).samples
    assert [(s.sample_seq, s.endpoint_id) for s in samples] == [(3, "B"), (5, "A"), (7, "B"), (9, "A")]
