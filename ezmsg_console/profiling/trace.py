"""Opt-in tracing: per-endpoint sample rings, the hooks that fill them, and columnar draining.

While tracing is off every hook attribute of every endpoint is None (and a
subscriber's ``trace_arrival`` False), so the publish and receive paths pay
one test each. Turning it on (:meth:`Tracer.configure`) installs hooks on the
endpoints the control selects. Every configure clears all rings and sampling
counters.

The hooks do as little as possible and read no clock: the endpoints pass the
timestamps they took anyway. A publisher calls ``hook(publisher, msg_id,
publish_ns, waited)`` with the send stamp it puts in the message; a subscriber
stamps ``delivery.arrival_ns`` itself (only while ``trace_arrival`` is set: the
lease metric is wanted) and calls ``trace(row)`` with one flat tuple ``(handler
end, handler start, arrival, publish, msg_id, channel)`` per handled message,
from which that message's ``lease_time_ns``, ``handler_ns`` and
``e2e_latency_ns`` samples are derived. With ``sample_mod=1`` the subscriber's
``trace`` *is* the ring's bound ``list.extend`` (no Python frame at all); with
sampling it is a small closure that counts. A publisher hook appends ``(timestamp,
msg_id, waited)`` rows to its ring (``waited`` 0 for a ``publish_delta_ns`` row,
> 0 for a ``backpressure_wait_ns`` row).

Every few milliseconds (the push loop's fold tick) :meth:`TraceRing.fold`
converts a ring's rows into a chunk of numpy columns (a few ``fromiter``
calls) and empties the list. Folding often matters more than it seems: a row
list that grows for a whole push interval keeps tens of thousands of Python
ints alive, and that alone costs the data plane several percent of its
throughput (measured with the pub/sub benchmark); converted, a row is a few
packed int64s. At drain time subscriber rows are expanded into samples with
vectorised numpy (e2e at handler start, then lease and handler at its end, so
a subscriber handling one message at a time yields samples in time order).

A ring keeps the newest ``capacity`` samples (counted in samples, exactly as
a ring that overwrites its oldest sample would when it is read) and counts
every older one in ``dropped``, so a reader always learns how many samples it
missed.

:meth:`Tracer.drain` takes up to ``max_samples`` of the oldest pending samples
across endpoints (a prefix of each ring, chosen by timestamp), leaves the rest
where it is (no re-append), orders what it took by (timestamp, sample_seq) --
no sort at all when one ring's samples already are -- and returns wire-ready
columns (:class:`TraceColumns`); no per-sample object is built anywhere on the
way.

Sampling: a publisher counts its publishes and samples ``publish_delta_ns``
on every ``sample_mod``-th (the time since the previous *sampled* publish,
0 the first time); ``backpressure_wait_ns`` is recorded for every wait. A
subscriber makes one decision per handled message (counter incremented,
sampled when ``counter % sample_mod == 0``), shared by its metrics, so with
``sample_mod=3`` messages 0..6 are sampled at 2 and 5 on every metric.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from ..protocol.errors import InvalidRequest
from ..protocol.profiling import (
    ALL_METRICS,
    MAX_TRACE_ENDPOINTS,
    MAX_TRACE_TABLE,
    MAX_TTL_S,
    ProfilingTraceControl,
    TraceMetric,
)

RING_CAPACITY = 10000
"""Samples kept per endpoint between two drains (the oldest are dropped and counted)."""

_PUBLISH_DELTA = TraceMetric.PUBLISH_DELTA_NS.value
_WAIT = TraceMetric.BACKPRESSURE_WAIT_NS.value
_LEASE = TraceMetric.LEASE_TIME_NS.value
_HANDLER = TraceMetric.HANDLER_NS.value
_E2E = TraceMetric.E2E_LATENCY_NS.value

METRICS: tuple[str, ...] = (_PUBLISH_DELTA, _WAIT, _LEASE, _HANDLER, _E2E)
"""The ``metrics`` table of every batch a worker sends; a sample's metric index is its position here."""
M_DELTA, M_WAIT, M_LEASE, M_HANDLER, M_E2E = range(len(METRICS))

_I64 = np.dtype(np.int64)
_U8 = np.dtype(np.uint8)
_EMPTY_I64 = np.zeros(0, _I64)
_EMPTY_U8 = np.zeros(0, _U8)
_SUB_METRICS = np.array([M_E2E, M_LEASE, M_HANDLER], _U8)
_EMPTY_SAMPLES = (_EMPTY_I64, _EMPTY_I64, _EMPTY_I64, _EMPTY_U8, _EMPTY_U8)


def _i64(values: list[Any]) -> np.ndarray:
    """An int64 numpy array of a list of ints (``fromiter`` converts nanosecond-sized ints
    about twice as fast as ``array('q', ...)`` or ``np.array``)."""
    return np.fromiter(values, _I64, len(values))


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


class TraceRing:
    """The samples of one endpoint: raw rows the hooks append, converted chunks, taken samples.

    ``rows`` is a flat list, ``stride`` values per row (3: publisher, 6:
    subscriber). :meth:`fold` converts the rows into one chunk of numpy columns
    (cheap: a few ``fromiter`` calls, so it runs often and keeps ``rows``, and
    the Python ints in it, small) and appends it to ``chunks``. Publisher chunks
    hold finished samples (their ``publish_delta_ns`` needs the previous sampled
    publish, so it is computed here); subscriber chunks hold rows, expanded into
    up to three samples each by :meth:`columns` at drain time. ``rest`` is what a
    drain left (finished samples, older than every chunk).

    ``count`` is the samples held (``rest`` plus chunks). A ring keeps the newest
    ``capacity`` samples: whole chunks are dropped as soon as the newer ones hold
    ``capacity`` samples without them, and :meth:`columns` trims the rest exactly;
    every sample dropped is counted in ``dropped`` until a drain reports and resets it."""

    __slots__ = ("index", "endpoint_id", "topic", "capacity", "stride", "rows", "chunks", "rest", "count", "dropped",
                 "wants", "last_delta")

    def __init__(self, index: int, endpoint_id: str, topic: str, stride: int,
                 capacity: int = RING_CAPACITY) -> None:
        self.index = index
        self.endpoint_id = endpoint_id
        self.topic = topic
        self.capacity = capacity
        self.stride = stride
        self.rows: list[Any] = []
        self.chunks: collections.deque[tuple[int, tuple[np.ndarray, ...]]] = collections.deque()
        self.rest: tuple[np.ndarray, ...] = _EMPTY_SAMPLES
        self.count = 0
        self.dropped = 0
        self.wants = (True, True, True)  # subscriber: lease, handler, e2e
        self.last_delta = 0  # publisher: timestamp of the last sampled publish

    @property
    def size(self) -> int:
        """Samples folded and not yet taken (rows not folded yet are not counted)."""
        return self.count

    def fold(self, channel_code: Callable[[str], int]) -> None:
        """Convert the recorded rows into a chunk; drop chunks the capacity no longer covers."""
        rows = self.rows
        if not rows:
            return
        if self.stride == 3:
            chunk = self._publisher_chunk(rows)
        else:
            chunk = self._subscriber_chunk(rows, channel_code)
        rows.clear()  # the hooks hold this list's extend: it is emptied, never replaced
        self.chunks.append(chunk)
        self.count += chunk[0]
        rest = len(self.rest[0])
        while self.chunks and self.count - (rest or self.chunks[0][0]) >= self.capacity:
            if rest:  # the oldest samples are what a drain left
                self.rest, self.count, self.dropped, rest = _EMPTY_SAMPLES, self.count - rest, self.dropped + rest, 0
            else:
                count, _columns = self.chunks.popleft()
                self.count -= count
                self.dropped += count

    def _publisher_chunk(self, rows: list[Any]) -> tuple[int, tuple[np.ndarray, ...]]:
        ts, seqs, values = _i64(rows[0::3]), _i64(rows[1::3]), _i64(rows[2::3])
        delta = values == 0  # a publish_delta_ns row; a wait row carries the wait (> 0)
        if delta.all():
            metric = np.full(len(ts), M_DELTA, _U8)
            stamps = ts
        else:
            metric = np.where(delta, M_DELTA, M_WAIT).astype(_U8)
            stamps = ts[delta]
        if len(stamps):
            previous = np.empty_like(stamps)
            previous[0] = self.last_delta
            previous[1:] = stamps[:-1]
            self.last_delta = int(stamps[-1])
            deltas = np.where(previous != 0, stamps - previous, 0)  # 0 for the first sampled publish
            if len(stamps) == len(ts):
                values = deltas
            else:
                values[delta] = deltas
        return len(ts), (ts, values, seqs, metric, np.zeros(len(ts), _U8))

    def _subscriber_chunk(self, rows: list[Any],
                          channel_code: Callable[[str], int]) -> tuple[int, tuple[np.ndarray, ...]]:
        end, start, arrival, published, seq = (_i64(rows[k::6]) for k in range(5))
        names = rows[5::6]
        n = len(end)
        distinct = set(names)
        if len(distinct) == 1:
            channel = np.full(n, channel_code(names[0]), _U8)
        else:
            codes = {name: channel_code(name) for name in distinct}
            channel = np.fromiter(map(codes.__getitem__, names), _U8, n)
        want_lease, want_handler, want_e2e = self.wants
        count = (n if want_handler else 0) + (int(np.count_nonzero(arrival)) if want_lease else 0) \
            + (int(np.count_nonzero(published)) if want_e2e else 0)
        return count, (end, start, arrival, published, seq, channel)

    def _expand(self, rows: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Subscriber rows -> samples: e2e (at handler start), then lease and handler (at
        its end) of each message, so a subscriber handling one message at a time yields
        samples already in time order."""
        end, start, arrival, published, seq, channel = rows
        n = len(end)
        want_lease, want_handler, want_e2e = self.wants
        ts = np.stack((start, end, end), axis=1)
        values = np.stack((start - published, end - arrival, end - start), axis=1)
        keep = np.stack((published != 0 if want_e2e else np.zeros(n, bool),
                         arrival != 0 if want_lease else np.zeros(n, bool),
                         np.full(n, want_handler)), axis=1)
        seqs = np.broadcast_to(seq[:, None], (n, 3))
        metric = np.broadcast_to(_SUB_METRICS, (n, 3))
        channels = np.broadcast_to(channel[:, None], (n, 3))
        if keep.all():  # row-major: one message's samples together, in recording order
            return (ts.reshape(-1), values.reshape(-1), seqs.reshape(-1), metric.reshape(-1),
                    channels.reshape(-1))
        return ts[keep], values[keep], seqs[keep], metric[keep], channels[keep]

    def columns(self) -> tuple[np.ndarray, ...]:
        """Every sample held, as (ts, values, seqs, metric, channel) in recording order;
        the newest ``capacity`` of them, the others counted as dropped. Afterwards the
        ring holds exactly these (in ``rest``)."""
        parts = [self.rest] if len(self.rest[0]) else []
        if self.chunks:
            columns = [c for _count, c in self.chunks]
            if self.stride == 6:
                joined = columns[0] if len(columns) == 1 else tuple(np.concatenate(c) for c in zip(*columns))
                parts.append(self._expand(joined))
            else:
                parts.extend(columns)
            self.chunks.clear()
        if not parts:
            return _EMPTY_SAMPLES
        out = parts[0] if len(parts) == 1 else tuple(np.concatenate(c) for c in zip(*parts))
        excess = len(out[0]) - self.capacity
        if excess > 0:
            self.dropped += excess
            out = tuple(col[excess:] for col in out)
        self.rest, self.count = out, len(out[0])
        return out

    def take(self, count: int) -> tuple[np.ndarray, ...]:
        """Remove and return the oldest ``count`` samples of ``rest`` (views; the rest stays)."""
        rest = self.rest
        self.rest = tuple(col[count:] for col in rest)
        self.count -= min(count, len(rest[0]))
        return tuple(col[:count] for col in rest)


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
        self.channels: dict[str, int] = {"": 0}  # the batches' channel table
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
        self.channels = {"": 0}
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
            if metrics & {_PUBLISH_DELTA, _WAIT}:
                pub.hook = self._publisher_hook(pub, _PUBLISH_DELTA in metrics, _WAIT in metrics)
                self.traced[pub.pub_id] = pub
        for sub in subscribers:
            if sub.sub_id in self.traced or len(self.rings) >= MAX_TRACE_ENDPOINTS \
                    or not _selected(sub.sub_id, sub.topic, c.subscriber_topics, c.subscriber_endpoint_ids):
                continue
            if metrics & {_LEASE, _HANDLER, _E2E}:
                sub.trace_arrival = _LEASE in metrics
                sub.trace = self._subscriber_trace(sub, _LEASE in metrics, _HANDLER in metrics, _E2E in metrics)
                self.traced[sub.sub_id] = sub

    def uninstall(self) -> None:
        for endpoint in self.traced.values():
            if hasattr(endpoint, "trace"):
                endpoint.trace = None
                endpoint.trace_arrival = False
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

    def _ring(self, endpoint_id: str, topic: str, stride: int) -> TraceRing:
        ring = self.rings.get(endpoint_id)
        if ring is None:
            ring = self.rings[endpoint_id] = TraceRing(len(self.rings), endpoint_id, topic, stride, self.capacity)
        return ring

    # -- hooks: one bound ``extend`` of one flat tuple per sampled message ------------

    def _publisher_hook(self, pub: Any, want_delta: bool, want_wait: bool) -> Callable[..., None]:
        add = self._ring(pub.pub_id, pub.topic, 3).rows.extend
        mod = self.control.sample_mod

        if not want_delta:
            def waits_only(_pub: Any, msg_id: int, now: int, waited: int) -> None:
                if waited:
                    add((now, msg_id, waited))
            return waits_only
        if mod == 1 and want_wait:
            def every(_pub: Any, msg_id: int, now: int, waited: int) -> None:
                if waited:
                    add((now, msg_id, waited, now, msg_id, 0))
                else:
                    add((now, msg_id, 0))
            return every
        if mod == 1:
            def every_delta(_pub: Any, msg_id: int, now: int, _waited: int) -> None:
                add((now, msg_id, 0))
            return every_delta
        count = 0

        def sampled(_pub: Any, msg_id: int, now: int, waited: int) -> None:
            nonlocal count
            if waited and want_wait:
                add((now, msg_id, waited))
            count += 1
            if count % mod == 0:
                add((now, msg_id, 0))
        return sampled

    def _subscriber_trace(self, sub: Any, want_lease: bool, want_handler: bool,
                          want_e2e: bool) -> Callable[[tuple[Any, ...]], None]:
        ring = self._ring(sub.sub_id, sub.topic, 6)
        ring.wants = (want_lease, want_handler, want_e2e)
        add = ring.rows.extend
        mod = self.control.sample_mod

        if mod == 1:
            return add  # the row goes straight into the ring
        count = 0

        def sampled(row: tuple[Any, ...]) -> None:
            nonlocal count
            count += 1
            if count % mod == 0:
                add(row)
        return sampled

    # -- reading -----------------------------------------------------------------------

    def _channel_code(self, name: str) -> int:
        code = self.channels.get(name)
        if code is None:
            if len(self.channels) >= MAX_TRACE_TABLE:
                return 0  # more distinct channel names than a batch can name: shown as ""
            code = self.channels[name] = len(self.channels)
        return code

    def fold(self, min_rows: int = 1) -> float:
        """Fold the rings that recorded at least ``min_rows`` rows since their last fold;
        returns how full the fullest of them is (a fraction of its capacity). Done often
        (every few ms while tracing): it keeps the row lists, and the Python ints in them,
        small, which is what keeps the hooks cheap."""
        code = self._channel_code
        fill = 0.0
        for ring in self.rings.values():
            if len(ring.rows) >= ring.stride * min_rows:
                ring.fold(code)
                fill = max(fill, ring.count / ring.capacity)
        return fill

    def prepare(self, ring: TraceRing) -> bool:
        """Fold one ring and expand its samples ahead of a drain (which then has less to
        do at once); False if it had nothing new. A ring no longer traced is skipped."""
        if self.rings.get(ring.endpoint_id) is not ring or not (ring.rows or ring.chunks):
            return False
        ring.fold(self._channel_code)
        ring.columns()
        return True

    def pending(self) -> int:
        """Samples folded and not yet drained (rows not folded yet are not counted)."""
        return sum(ring.count for ring in self.rings.values())

    def drain(self, max_samples: int) -> TraceColumns:
        """Up to ``max_samples`` of the oldest samples across endpoints, ordered by
        (timestamp, sample_seq), and the overwrites counted since the last drain."""
        rings = list(self.rings.values())
        code = self._channel_code
        dropped = 0
        held = []
        for ring in rings:
            ring.fold(code)
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
        if not _in_order(ts, seqs):
            # Each ring's samples are (nearly always) in order already, and a stable sort by
            # time merges such runs in about linear time; equal times are then ordered by
            # sample_seq, with the slower two-key sort only if that is needed.
            order = np.argsort(ts, kind="stable")
            if not _in_order(ts[order], seqs[order]):
                order = np.lexsort((seqs, ts))
            ts, values, seqs, metric, channel, endpoint = (col[order] for col in
                                                           (ts, values, seqs, metric, channel, endpoint))
        everything = sorted(self.rings.values(), key=lambda r: r.index)
        return TraceColumns(
            tuple(r.endpoint_id for r in everything), tuple(r.topic for r in everything), METRICS,
            tuple(self.channels), ts.astype("<i8", copy=False).tobytes(), values.astype("<i8", copy=False).tobytes(),
            seqs.astype("<i8", copy=False).tobytes(), endpoint.astype("<u2", copy=False).tobytes(),
            metric.tobytes(), channel.tobytes(), dropped, len(ts))
