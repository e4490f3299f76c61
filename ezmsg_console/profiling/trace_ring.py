"""One traced endpoint's samples: the rows its hook appends, converted chunks, drained samples.

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
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from ..protocol.profiling import TraceMetric

RING_CAPACITY = 50000
"""Samples kept per endpoint between two drains (the oldest are dropped and counted): at most
~1.3 MB per endpoint, reached only if pushes stop. A busy endpoint gives ~4 samples per message, so
at 200,000 messages/s a 20 ms push takes ~16,000 samples and the ring stays under a third full;
with 10,000 the push loop had to push every few ms to keep up, and a push's fixed cost (a few
dozen numpy calls, a frame) is what tracing a fast endpoint spends most on."""

PUBLISH_DELTA = TraceMetric.PUBLISH_DELTA_NS.value
WAIT = TraceMetric.BACKPRESSURE_WAIT_NS.value
LEASE = TraceMetric.LEASE_TIME_NS.value
HANDLER = TraceMetric.HANDLER_NS.value
E2E = TraceMetric.E2E_LATENCY_NS.value
USER_SPAN = TraceMetric.USER_SPAN_NS.value

METRICS: tuple[str, ...] = (PUBLISH_DELTA, WAIT, LEASE, HANDLER, E2E, USER_SPAN)
"""The ``metrics`` table of every batch a worker sends; a sample's metric index is its position here."""
M_DELTA, M_WAIT, M_LEASE, M_HANDLER, M_E2E, M_USER_SPAN = range(len(METRICS))
PUBLISHER_STRIDE, SPAN_STRIDE, SUBSCRIBER_STRIDE = 3, 4, 6
"""Values per row: a publish (ts, msg_id, waited), a span (end, span, msg_id, channel code), a
handled message (end, start, arrival, publish, msg_id, channel code)."""

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


def _span_samples(raw: np.ndarray) -> tuple[np.ndarray, ...]:
    """Span rows -> one user_span_ns sample each, stamped at the span's end."""
    n = len(raw)
    return (np.ascontiguousarray(raw[:, 0]), np.ascontiguousarray(raw[:, 1]), np.ascontiguousarray(raw[:, 2]),
            np.full(n, M_USER_SPAN, _U8), raw[:, 3].astype(_U8))


class TraceRing:
    """The samples of one endpoint: raw rows the hooks append, converted chunks, taken samples.

    ``rows`` is a flat list of ints, ``stride`` values per row (3: publisher, 4: one
    ``profile_span`` label of a subscriber, 6: subscriber). :meth:`fold` converts the
    rows into one chunk, an ``(n, stride)``
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

    __slots__ = ("index", "key", "endpoint_id", "topic", "capacity", "stride", "rows", "chunks", "rest", "count",
                 "dropped", "wants", "want_wait", "last_delta")

    def __init__(self, index: int, endpoint_id: str, topic: str, stride: int,
                 capacity: int = RING_CAPACITY, key: str | None = None) -> None:
        self.index = index
        self.key = endpoint_id if key is None else key  # the tracer's name for it (a span's: endpoint + label)
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
                if self.stride == PUBLISHER_STRIDE:  # the next delta counts from this chunk's last sampled publish
                    stamps = raw[raw[:, 2] >= 0, 0]
                    if len(stamps):
                        self.last_delta = int(stamps[-1])
                self.count -= count
                self.dropped += count

    def _samples_in(self, raw: np.ndarray) -> int:
        """How many samples a chunk's rows will give."""
        if self.stride == SPAN_STRIDE:
            return len(raw)
        if self.stride == PUBLISHER_STRIDE:
            if not self.want_wait:  # no wait samples, and no wait-only (negative) rows: one delta per row
                return len(raw)
            waited = raw[:, 2]
            waits = int(np.count_nonzero(waited))
            return len(raw) + waits - int(np.count_nonzero(waited < 0)) if waits else len(raw)
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
            parts.append(self._publisher_samples(raw) if self.stride == PUBLISHER_STRIDE
                         else _span_samples(raw) if self.stride == SPAN_STRIDE else self._subscriber_samples(raw))
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
