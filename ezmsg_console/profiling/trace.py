"""Opt-in tracing: per-endpoint sample rings, the hooks that fill them, and columnar draining.

While tracing is off every hook attribute of every endpoint is None (and a
subscriber's ``trace_arrival`` False), so the publish and receive paths pay
one test each. Turning it on (:meth:`Tracer.configure`) installs hooks on the
endpoints the control selects. Every configure clears all rings and sampling
counters.

The hooks do as little as possible and read no clock: the endpoints pass the
timestamps they took anyway. A publisher calls ``hook(row)`` with one flat
tuple ``(publish_ns, msg_id, waited)`` per publish (the send stamp it puts in
the message, and its backpressure wait, 0 if none); a subscriber stamps
``delivery.arrival_ns`` itself (only while ``trace_arrival`` is set: the lease
metric is wanted; a same-process delivery takes the publisher's send stamp,
taken a moment before in the same call, instead of reading the clock) and calls
``trace(row)`` with one flat tuple ``(handler end, handler start, arrival,
publish, msg_id, channel code)`` per handled message (the code: the channel kind's
position in ``TRACE_CHANNELS``, the batches' channel table), from which that message's
``lease_time_ns``, ``handler_ns`` and ``e2e_latency_ns`` samples are derived.
With the ``user_span_ns`` metric, a subscriber's ``span_trace`` hook takes each
``profile_span`` of a sampled message as ``(end, span, msg_id, channel code)``
into a ring of its own per label (endpoint: the subscriber; topic: ``topic:label``).
With ``sample_mod=1`` both hooks *are* the ring's bound ``list.extend`` (no
Python frame at all); with sampling, or a metric filter that leaves the
publish deltas out, a publisher's hook is a small closure that counts and
records a wait that is not sampled as ``(publish_ns, msg_id, -waited)`` (a
negative wait: no delta sample for that publish). A publisher row yields a
``backpressure_wait_ns`` sample if it waited, then a ``publish_delta_ns``
sample.

Rings (:class:`.trace_ring.TraceRing`) convert the rows often and derive
samples once per drain (see that module). :meth:`Tracer.drain` takes up to
``max_samples`` of the oldest pending samples across endpoints (a prefix of
each ring, chosen by timestamp), leaves the rest where it is (no re-append),
orders what it took by (timestamp, sample_seq) -- no sort at all when one
ring's samples already are -- and returns wire-ready columns
(:class:`TraceColumns`); no per-sample object is built anywhere on the way.

Sampling: a publisher counts its publishes and samples ``publish_delta_ns``
on every ``sample_mod``-th (the time since the previous *sampled* publish,
0 the first time); ``backpressure_wait_ns`` is recorded for every wait. A
subscriber makes one decision per handled message (counter incremented,
sampled when ``counter % sample_mod == 0``), shared by its metrics, so with
``sample_mod=3`` messages 0..6 are sampled at 2 and 5 on every metric.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from ..protocol.errors import InvalidRequest
from ..protocol.profiling import (
    ALL_METRICS,
    MAX_SPAN_LABELS,
    MAX_TRACE_ENDPOINTS,
    MAX_TTL_S,
    TRACE_CHANNELS,
    ProfilingTraceControl,
)
from .trace_ring import (
    E2E,
    HANDLER,
    LEASE,
    METRICS,
    PUBLISH_DELTA,
    PUBLISHER_STRIDE,
    RING_CAPACITY,
    SPAN_STRIDE,
    SUBSCRIBER_STRIDE,
    USER_SPAN,
    WAIT,
    TraceRing,
)

__all__ = ["METRICS", "RING_CAPACITY", "TraceColumns", "TraceRing", "Tracer", "check_control"]

class TraceColumns(NamedTuple):
    """Drained samples as wire-ready columns (see :class:`ProfilingTraceBatch`)."""

    endpoints: tuple[str, ...]
    topics: tuple[str, ...]
    metrics: tuple[str, ...]
    channels: tuple[str, ...]
    timestamps: bytes
    values: bytes
    seqs: bytes
    endpoint_index: bytes
    metric_index: bytes
    channel_index: bytes
    dropped: int
    n_samples: int


def check_control(data: Any) -> ProfilingTraceControl:
    """Validate a decoded control; raises InvalidRequest naming the bad field."""
    control: ProfilingTraceControl = data
    if isinstance(control.sample_mod, bool) or control.sample_mod < 1:
        raise InvalidRequest("sample_mod must be an integer >= 1", {"sample_mod": control.sample_mod})
    ttl = control.ttl_seconds
    if not ttl > 0 or ttl > MAX_TTL_S:
        raise InvalidRequest(f"ttl_seconds must be > 0 and <= {MAX_TTL_S:g}", {"ttl_seconds": ttl})
    unknown = sorted(set(control.metrics or ()) - ALL_METRICS)
    if unknown:
        raise InvalidRequest(f"unknown trace metric(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_METRICS))}",
                             {"metrics": list(control.metrics or ())})
    return control


def _selected(endpoint_id: str, topic: str, topics: tuple[str, ...] | None, ids: tuple[str, ...] | None) -> bool:
    if topics and topic not in topics:
        return False
    if ids and endpoint_id not in ids:
        return False
    return True


def _in_order(ts: np.ndarray, seqs: np.ndarray) -> bool:
    """Whether samples are already ordered by (timestamp, sample_seq), as one ring's
    usually are: then a drain of one endpoint needs no sort."""
    if len(ts) < 2:
        return True
    step = ts[1:] - ts[:-1]
    if (step < 0).any():
        return False
    ties = step == 0
    return not (ties.any() and (ties & (seqs[1:] < seqs[:-1])).any())


def _ties_out_of_order(sorted_ts: np.ndarray, seqs: np.ndarray, order: np.ndarray) -> bool:
    """Whether samples sorted by time (``order``) have equal timestamps out of sample_seq order."""
    ties = np.flatnonzero(sorted_ts[1:] == sorted_ts[:-1])
    if not len(ties):
        return False
    return bool((seqs[order[ties + 1]] < seqs[order[ties]]).any())


def _prefix_counts(keys: list[np.ndarray], limit: int) -> list[int]:
    """How many of each ring's oldest samples to take so that ``limit`` are taken in all,
    oldest first. ``keys`` are each ring's running-maximum timestamps (non-decreasing),
    so every ring contributes a prefix, as a merge of the rings by time would."""
    threshold = np.partition(np.concatenate(keys), limit - 1)[limit - 1]
    counts = [int(np.searchsorted(k, threshold, "left")) for k in keys]
    rest = limit - sum(counts)
    for i, k in enumerate(keys):  # the ties at the threshold, ring by ring
        if rest <= 0:
            break
        extra = min(rest, int(np.searchsorted(k, threshold, "right")) - counts[i])
        counts[i] += extra
        rest -= extra
    return counts


class Tracer:
    """The trace state of one process: which endpoints are traced, and their rings."""

    def __init__(self, capacity: int = RING_CAPACITY) -> None:
        self.capacity = capacity
        self.control = ProfilingTraceControl()
        self.rings: dict[str, TraceRing] = {}
        self.traced: dict[str, Any] = {}  # endpoint id -> endpoint with hooks installed
        self.expires_mono = 0.0
        self.fill = 0.0  # the fullest ring at the last drain, as a fraction of its capacity

    @property
    def enabled(self) -> bool:
        return self.control.enabled

    def remaining_s(self) -> float:
        return max(0.0, self.expires_mono - time.monotonic()) if self.enabled else 0.0

    def configure(self, control: ProfilingTraceControl, publishers: Iterable[Any], subscribers: Iterable[Any]) -> None:
        """Apply ``control``: remove every hook, clear every ring, then hook the selected endpoints."""
        self.uninstall()
        self.rings.clear()
        self.control = control
        self.expires_mono = time.monotonic() + control.ttl_seconds if control.enabled else 0.0
        if control.enabled:
            self.install(publishers, subscribers)

    def install(self, publishers: Iterable[Any], subscribers: Iterable[Any]) -> None:
        """Hook endpoints that match the control and are not hooked yet (new endpoints too)."""
        c = self.control
        metrics = set(c.metrics) if c.metrics else set(ALL_METRICS)
        for pub in publishers:
            if pub.pub_id in self.traced or len(self.rings) >= MAX_TRACE_ENDPOINTS \
                    or not _selected(pub.pub_id, pub.topic, c.publisher_topics, c.publisher_endpoint_ids):
                continue
            if metrics & {PUBLISH_DELTA, WAIT}:
                pub.hook = self._publisher_hook(pub, PUBLISH_DELTA in metrics, WAIT in metrics)
                self.traced[pub.pub_id] = pub
        for sub in subscribers:
            if sub.sub_id in self.traced or len(self.rings) >= MAX_TRACE_ENDPOINTS \
                    or not _selected(sub.sub_id, sub.topic, c.subscriber_topics, c.subscriber_endpoint_ids):
                continue
            if metrics & {LEASE, HANDLER, E2E, USER_SPAN}:
                counter = [0]  # messages handled: the span hook samples the same messages as the trace
                sub.trace_arrival = LEASE in metrics
                sub.trace = self._subscriber_trace(sub, LEASE in metrics, HANDLER in metrics, E2E in metrics,
                                                   counter)
                if USER_SPAN in metrics:
                    sub.span_trace = self._span_hook(sub, counter)
                self.traced[sub.sub_id] = sub

    def uninstall(self) -> None:
        for endpoint in self.traced.values():
            if hasattr(endpoint, "trace"):
                endpoint.trace = None
                endpoint.trace_arrival = False
                endpoint.span_trace = None
            else:
                endpoint.hook = None
        self.traced.clear()

    def disable(self) -> None:
        """Turn tracing off and drop what was recorded (TTL expiry, console gone)."""
        self.configure(ProfilingTraceControl(enabled=False), (), ())

    def expire_if_due(self) -> bool:
        """Turn tracing off if its TTL has passed; True if it did."""
        if self.enabled and time.monotonic() >= self.expires_mono:
            self.disable()
            return True
        return False

    def _ring(self, endpoint_id: str, topic: str, stride: int, key: str | None = None) -> TraceRing:
        key = endpoint_id if key is None else key
        ring = self.rings.get(key)
        if ring is None:
            ring = self.rings[key] = TraceRing(len(self.rings), endpoint_id, topic, stride, self.capacity, key)
        return ring

    # -- hooks: one bound ``extend`` of one flat tuple per sampled message ------------

    def _publisher_hook(self, pub: Any, want_delta: bool, want_wait: bool) -> Callable[[tuple[int, int, int]], None]:
        ring = self._ring(pub.pub_id, pub.topic, PUBLISHER_STRIDE)
        ring.want_wait = want_wait
        add = ring.rows.extend
        mod = self.control.sample_mod

        if want_delta and mod == 1:
            return add  # every publish is a row: no Python frame at all
        if not want_delta:
            def waits_only(row: tuple[int, int, int]) -> None:
                if row[2]:
                    now, msg_id, waited = row
                    add((now, msg_id, -waited))
            return waits_only
        count = 0

        def sampled(row: tuple[int, int, int]) -> None:
            nonlocal count
            count += 1
            if count % mod == 0:
                add(row)
            elif row[2] and want_wait:
                now, msg_id, waited = row
                add((now, msg_id, -waited))
        return sampled

    def _subscriber_trace(self, sub: Any, want_lease: bool, want_handler: bool, want_e2e: bool,
                          counter: list[int]) -> Callable[[tuple[Any, ...]], None]:
        ring = self._ring(sub.sub_id, sub.topic, SUBSCRIBER_STRIDE)
        ring.wants = (want_lease, want_handler, want_e2e)
        add = ring.rows.extend
        mod = self.control.sample_mod

        if not (want_lease or want_handler or want_e2e):  # spans only: count the messages, record nothing
            def count_only(row: tuple[Any, ...]) -> None:
                counter[0] += 1
            return count_only
        if mod == 1:
            return add  # the row goes straight into the ring

        def sampled(row: tuple[Any, ...]) -> None:
            count = counter[0] = counter[0] + 1
            if count % mod == 0:
                add(row)
        return sampled

    def _span_hook(self, sub: Any, counter: list[int]) -> Callable[[str, tuple[int, int, int, int]], None]:
        """Records a traced subscriber's ``profile_span`` durations, one ring per label (at most
        MAX_SPAN_LABELS), for the messages its trace samples (``counter``: those it handled)."""
        adds: dict[str, Callable[[tuple[int, int, int, int]], None]] = {}
        mod = self.control.sample_mod

        def record(label: str, row: tuple[int, int, int, int]) -> None:
            if mod != 1 and (counter[0] + 1) % mod:  # this message's row (at its done()) is not sampled
                return
            add = adds.get(label)
            if add is None:
                if len(adds) >= MAX_SPAN_LABELS or len(self.rings) >= MAX_TRACE_ENDPOINTS:
                    return
                ring = self._ring(sub.sub_id, f"{sub.topic}:{label}", SPAN_STRIDE, f"{sub.sub_id}\0{label}")
                add = adds[label] = ring.rows.extend
            add(row)
        return record

    # -- reading -----------------------------------------------------------------------

    def fold(self, min_rows: int = 1) -> float:
        """Fold the rings that recorded at least ``min_rows`` rows since their last fold;
        returns how full the fullest of them is (a fraction of its capacity). Done often
        (every few ms while tracing): it keeps the row lists, and the Python ints in them,
        small, which is what keeps the hooks cheap."""
        fill = 0.0
        for ring in self.rings.values():
            if len(ring.rows) >= ring.stride * min_rows:
                ring.fold()
                fill = max(fill, ring.count / ring.capacity)
        return fill

    def prepare(self, ring: TraceRing) -> bool:
        """Fold one ring and expand its samples ahead of a drain (which then has less to
        do at once); False if it had nothing new. A ring no longer traced is skipped."""
        if self.rings.get(ring.key) is not ring or not (ring.rows or ring.chunks):
            return False
        ring.fold()
        ring.columns()
        return True

    def pending(self) -> int:
        """Samples folded and not yet drained (rows not folded yet are not counted)."""
        return sum(ring.count for ring in self.rings.values())

    def drain(self, max_samples: int) -> TraceColumns:
        """Up to ``max_samples`` of the oldest samples across endpoints, ordered by
        (timestamp, sample_seq), and the overwrites counted since the last drain."""
        rings = list(self.rings.values())
        dropped = 0
        held = []
        for ring in rings:
            ring.fold()
            columns = ring.columns()
            dropped += ring.dropped
            ring.dropped = 0
            if len(columns[0]):
                held.append(ring)
        rings = held
        sizes = [ring.count for ring in rings]
        self.fill = max((ring.count / ring.capacity for ring in rings), default=0.0)
        total = sum(sizes)
        if total == 0:
            return TraceColumns((), (), (), (), b"", b"", b"", b"", b"", b"", dropped, 0)
        if total > max_samples:
            sizes = _prefix_counts([np.maximum.accumulate(ring.rest[0]) for ring in rings], max_samples)
        parts = [(ring.index, ring.take(count)) for ring, count in zip(rings, sizes) if count]
        if len(parts) == 1:
            index, (ts, values, seqs, metric, channel) = parts[0]
            endpoint = np.full(len(ts), index, np.uint16)
        else:
            ts, values, seqs, metric, channel = (np.concatenate([p[k] for _i, p in parts]) for k in range(5))
            endpoint = np.concatenate([np.full(len(p[0]), i, np.uint16) for i, p in parts])
        if len(parts) > 1 or not _in_order(ts, seqs):
            # Each ring's samples are (nearly always) in order already, and a stable sort by
            # time merges such runs in about linear time (several rings' samples interleave,
            # so they are not even checked first); equal times are then ordered by
            # sample_seq, with the slower two-key sort only if that is needed.
            order = np.argsort(ts, kind="stable")
            if _ties_out_of_order(ts[order], seqs, order):
                order = np.lexsort((seqs, ts))
            ts, values, seqs, metric, channel, endpoint = (col[order] for col in
                                                           (ts, values, seqs, metric, channel, endpoint))
        everything = sorted(self.rings.values(), key=lambda r: r.index)
        return TraceColumns(
            tuple(r.endpoint_id for r in everything), tuple(r.topic for r in everything), METRICS,
            TRACE_CHANNELS, ts.astype("<i8", copy=False).tobytes(), values.astype("<i8", copy=False).tobytes(),
            seqs.astype("<i8", copy=False).tobytes(), endpoint.astype("<u2", copy=False).tobytes(),
            metric.tobytes(), channel.tobytes(), dropped, len(ts))
