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
With ``sample_mod=1`` both hooks *are* the ring's bound ``list.extend`` (no
Python frame at all); with sampling, or a metric filter that leaves the
publish deltas out, a publisher's hook is a small closure that counts and
records a wait that is not sampled as ``(publish_ns, msg_id, -waited)`` (a
negative wait: no delta sample for that publish). A publisher row yields a
``backpressure_wait_ns`` sample if it waited, then a ``publish_delta_ns``
sample.

Every few milliseconds (the push loop's fold tick) :meth:`TraceRing.fold`
converts a ring's rows into an int64 chunk (one ``fromiter`` call) and
empties the list. Folding often matters more than it seems: a row
list that grows for a whole push interval keeps tens of thousands of Python
ints alive, and that alone costs the data plane several percent of its
throughput (measured with the pub/sub benchmark); converted, a row is a few
packed int64s. Everything else waits for the drain (or for
:meth:`Tracer.prepare`, one ring at a time just before it): a ring's chunks are
joined and turned into samples with vectorised numpy, once, so numpy's cost per
call is paid per drain and not per fold (publisher rows give a wait and a delta
sample; subscriber rows e2e at handler start, then lease and handler at its end,
so a subscriber handling one message at a time yields samples in time order).

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
    TRACE_CHANNELS,
    MAX_TTL_S,
    ProfilingTraceControl,
    TraceMetric,
)

RING_CAPACITY = 50000
"""Samples kept per endpoint between two drains (the oldest are dropped and counted): at most
~1.3 MB per endpoint, reached only if pushes stop. A busy endpoint gives ~4 samples per message, so
at 200,000 messages/s a 20 ms push takes ~16,000 samples and the ring stays under a third full;
with 10,000 the push loop had to push every few ms to keep up, and a push's fixed cost (a few
dozen numpy calls, a frame) is what tracing a fast endpoint spends most on."""

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
_PUB_METRICS = np.array([M_WAIT, M_DELTA], _U8)
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

    ``rows`` is a flat list of ints, ``stride`` values per row (3: publisher, 6:
    subscriber). :meth:`fold` converts the rows into one chunk, an ``(n, stride)``
    int64 array (one ``fromiter`` call: it runs often and keeps ``rows``, and the
    Python ints in it, small), and appends it to ``chunks``; everything derived from
    the rows (publish deltas, wait samples, a subscriber row's up to three samples) is
    computed by :meth:`columns`, once per drain, on all the chunks together, so the
    per-call overhead of numpy is paid per drain rather than per fold. ``rest`` is what a
    drain left (finished samples, older than every chunk).

    ``count`` is the samples held (``rest`` plus chunks). A ring keeps the newest
    ``capacity`` samples: whole chunks are dropped as soon as the newer ones hold
    ``capacity`` samples without them, and :meth:`columns` trims the rest exactly;
    every sample dropped is counted in ``dropped`` until a drain reports and resets it."""

    __slots__ = ("index", "endpoint_id", "topic", "capacity", "stride", "rows", "chunks", "rest", "count", "dropped",
                 "wants", "want_wait", "last_delta")

    def __init__(self, index: int, endpoint_id: str, topic: str, stride: int,
                 capacity: int = RING_CAPACITY) -> None:
        self.index = index
        self.endpoint_id = endpoint_id
        self.topic = topic
        self.capacity = capacity
        self.stride = stride
        self.rows: list[int] = []
        self.chunks: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self.rest: tuple[np.ndarray, ...] = _EMPTY_SAMPLES
        self.count = 0
        self.dropped = 0
        self.wants = (True, True, True)  # subscriber: lease, handler, e2e
        self.want_wait = True  # publisher: backpressure_wait_ns samples
        self.last_delta = 0  # publisher: timestamp of the last sampled publish

    @property
    def size(self) -> int:
        """Samples folded and not yet taken (rows not folded yet are not counted)."""
        return self.count

    def fold(self) -> None:
        """Convert the recorded rows into a chunk; drop chunks the capacity no longer covers."""
        rows = self.rows
        if not rows:
            return
        raw = _i64(rows).reshape(-1, self.stride)
        rows.clear()  # the hooks hold this list's extend: it is emptied, never replaced
        count = self._samples_in(raw)
        self.chunks.append((count, raw))
        self.count += count
        rest = len(self.rest[0])
        while self.chunks and self.count - (rest or self.chunks[0][0]) >= self.capacity:
            if rest:  # the oldest samples are what a drain left
                self.rest, self.count, self.dropped, rest = _EMPTY_SAMPLES, self.count - rest, self.dropped + rest, 0
            else:
                count, raw = self.chunks.popleft()
                if self.stride == 3:  # the next delta is measured from this chunk's last sampled publish
                    stamps = raw[raw[:, 2] >= 0, 0]
                    if len(stamps):
                        self.last_delta = int(stamps[-1])
                self.count -= count
                self.dropped += count

    def _samples_in(self, raw: np.ndarray) -> int:
        """How many samples a chunk's rows will give."""
        if self.stride == 3:
            waited = raw[:, 2]
            waits = int(np.count_nonzero(waited)) if self.want_wait else 0
            unsampled = int(np.count_nonzero(waited < 0)) if waits or not self.want_wait else 0
            return len(raw) - unsampled + waits
        want_lease, want_handler, want_e2e = self.wants
        return (len(raw) if want_handler else 0) + (int(np.count_nonzero(raw[:, 2])) if want_lease else 0) \
            + (int(np.count_nonzero(raw[:, 3])) if want_e2e else 0)

    def _publisher_samples(self, raw: np.ndarray) -> tuple[np.ndarray, ...]:
        """Publisher rows -> samples: a wait (if it waited), then the publish's delta."""
        ts, seqs, waited = raw[:, 0], raw[:, 1], raw[:, 2]
        delta = waited >= 0  # a sampled publish (a negative value is a wait alone)
        every = bool(delta.all())
        stamps = ts if every else ts[delta]
        deltas = _EMPTY_I64
        if len(stamps):
            previous = np.empty_like(stamps)
            previous[0] = self.last_delta
            previous[1:] = stamps[:-1]
            self.last_delta = int(stamps[-1])
            deltas = np.where(previous != 0, stamps - previous, 0)  # 0 for the first sampled publish
        waits = waited != 0 if self.want_wait else None
        if waits is None or not waits.any():  # the common case: one delta sample per row
            n = len(stamps)
            return (np.ascontiguousarray(stamps), deltas, np.ascontiguousarray(seqs if every else seqs[delta]),
                    np.full(n, M_DELTA, _U8), np.zeros(n, _U8))
        n = len(ts)
        values = np.zeros((n, 2), _I64)
        values[:, 0] = np.abs(waited)
        values[delta, 1] = deltas
        keep = np.stack((waits, delta), axis=1).reshape(-1)
        out_ts = np.repeat(ts, 2)[keep]
        metric = np.broadcast_to(_PUB_METRICS, (n, 2)).reshape(-1)[keep]
        return (out_ts, values.reshape(-1)[keep], np.repeat(seqs, 2)[keep], metric, np.zeros(len(out_ts), _U8))

    def _subscriber_samples(self, raw: np.ndarray) -> tuple[np.ndarray, ...]:
        """Subscriber rows -> samples: e2e (at handler start), then lease and handler (at
        its end) of each message, so a subscriber handling one message at a time yields
        samples already in time order."""
        end, start, arrival, published, seq, channel = (raw[:, k] for k in range(6))
        n = len(end)
        want_lease, want_handler, want_e2e = self.wants
        ts = np.empty((n, 3), _I64)
        ts[:, 0] = start
        ts[:, 1] = end
        ts[:, 2] = end
        values = np.empty((n, 3), _I64)
        np.subtract(start, published, out=values[:, 0])
        np.subtract(end, arrival, out=values[:, 1])
        np.subtract(end, start, out=values[:, 2])
        seqs = np.repeat(seq, 3)
        metric = np.broadcast_to(_SUB_METRICS, (n, 3)).reshape(-1)
        channels = np.repeat(channel.astype(_U8), 3)
        e2e, lease = (published != 0 if want_e2e else False), (arrival != 0 if want_lease else False)
        if want_handler and want_lease and want_e2e and e2e.all() and lease.all():  # type: ignore[union-attr]
            return ts.reshape(-1), values.reshape(-1), seqs, metric, channels  # one message's samples together
        wanted = np.empty((n, 3), bool)
        wanted[:, 0] = e2e
        wanted[:, 1] = lease
        wanted[:, 2] = want_handler
        keep = wanted.reshape(-1)
        return ts.reshape(-1)[keep], values.reshape(-1)[keep], seqs[keep], metric[keep], channels[keep]

    def columns(self) -> tuple[np.ndarray, ...]:
        """Every sample held, as (ts, values, seqs, metric, channel) in recording order;
        the newest ``capacity`` of them, the others counted as dropped. Afterwards the
        ring holds exactly these (in ``rest``)."""
        parts = [self.rest] if len(self.rest[0]) else []
        if self.chunks:
            raws = [raw for _count, raw in self.chunks]
            self.chunks.clear()
            raw = raws[0] if len(raws) == 1 else np.concatenate(raws)
            parts.append(self._publisher_samples(raw) if self.stride == 3 else self._subscriber_samples(raw))
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

    def _publisher_hook(self, pub: Any, want_delta: bool, want_wait: bool) -> Callable[[tuple[int, int, int]], None]:
        ring = self._ring(pub.pub_id, pub.topic, 3)
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
        if self.rings.get(ring.endpoint_id) is not ring or not (ring.rows or ring.chunks):
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
