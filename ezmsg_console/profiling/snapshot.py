"""Profiling snapshots of one process, with a window per observer.

Counters only ever grow; a snapshot reports them as totals, and each
``*_window`` value as the growth since the *same observer's* previous
snapshot (``window_seconds`` long; 0 and 0.0 the first time). Observers are
identified by the session that asked, and kept in a bounded LRU: an observer
evicted (or new) starts again at window 0. One observer polling fast never
shortens another's window.

A subscriber's ``timed_messages_*`` count the messages its handler time and
latency were measured for (see :mod:`.sampling`); its histograms' counts sum
to those, not to the messages received. Building a snapshot also lets each
subscriber re-pick its 1-in-k when its window has run out.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Iterable

from ..protocol.profiling import (
    ProcessProfilingSnapshot,
    ProfilingTraceControl,
    PublisherProfile,
    SpanProfile,
    SubscriberProfile,
)
from .histogram import EDGES_NS, NUM_BUCKETS

MAX_OBSERVERS = 64
_EMPTY: list[int] = [0] * NUM_BUCKETS
_NO_SUB = (0, 0, 0, 0, _EMPTY, _EMPTY)


class _Mark:
    """What one observer saw at its previous snapshot."""

    __slots__ = ("t_ns", "pubs", "subs", "spans")

    def __init__(self, t_ns: int) -> None:
        self.t_ns = t_ns
        self.pubs: dict[str, tuple[int, int, int, int]] = {}
        self.subs: dict[str, tuple[int, int, int, int, Any, Any]] = {}
        self.spans: dict[str, dict[str, list[int]]] = {}  # subscriber -> span label -> bucket counts


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _spans(sub: Any, mark: _Mark, previous: _Mark | None) -> tuple[SpanProfile, ...]:
    """A subscriber's span histograms by label, each with this observer's window."""
    histograms = sub.spans.histograms
    if not histograms:
        return ()
    before = previous.spans.get(sub.sub_id, {}) if previous is not None else None
    mine = mark.spans[sub.sub_id] = {}
    out = []
    for label in sorted(histograms):
        hist = histograms[label]
        mine[label] = hist.copy_counts()
        # A label new since the observer's previous snapshot: all of it is in the window.
        then = None if before is None else before.get(label, _EMPTY)
        out.append(SpanProfile(label, hist.snapshot(), hist.window(then)))
    return tuple(out)


class SnapshotBuilder:
    """Builds :class:`ProcessProfilingSnapshot` from live endpoints, per observer."""

    def __init__(self, max_observers: int = MAX_OBSERVERS, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.max_observers = max_observers
        self.clock = clock
        self._marks: collections.OrderedDict[str, _Mark] = collections.OrderedDict()

    def build(self, observer: str, *, process_id: str, pid: int, host: str, publishers: Iterable[Any],
              subscribers: Iterable[Any], histograms: bool, trace: ProfilingTraceControl | None,
              trace_ttl_remaining_s: float) -> ProcessProfilingSnapshot:
        now_ns = self.clock()
        previous = self._marks.pop(observer, None)
        mark = _Mark(now_ns)
        self._marks[observer] = mark
        while len(self._marks) > self.max_observers:
            self._marks.popitem(last=False)
        window = (now_ns - previous.t_ns) / 1e9 if previous is not None else 0.0

        pub_rows = []
        for pub in sorted(publishers, key=lambda p: p.pub_id):
            totals = (pub.msg_id, pub.bytes_sent, pub.backpressure_waits, pub.backpressure_wait_ns)
            mark.pubs[pub.pub_id] = totals
            before = previous.pubs.get(pub.pub_id) if previous is not None else None
            if previous is None:
                d = [0, 0, 0, 0]
            else:  # an endpoint new since the previous snapshot: all of it is in the window
                d = [t - b for t, b in zip(totals, before or (0, 0, 0, 0))]
            links = list(pub.links)
            shm = sum(1 for link in links if link.use_shm)
            pub_rows.append(PublisherProfile(
                endpoint_id=pub.pub_id, topic=pub.topic, num_buffers=pub.num_buffers,
                inflight_messages_current=pub.in_flight, messages_published_total=totals[0],
                bytes_published_total=totals[1], backpressure_waits_total=totals[2],
                backpressure_wait_ns_total=totals[3], messages_published_window=d[0], bytes_published_window=d[1],
                backpressure_waits_window=d[2], backpressure_wait_ns_window=d[3],
                publish_rate_hz_window=_rate(d[0], window), bytes_rate_window=_rate(d[1], window),
                fanout=len(links) + len(pub.local), shm_links=shm, tcp_links=len(links) - shm,
                local_subscribers=len(pub.local),
            ))

        sub_rows = []
        for sub in sorted(subscribers, key=lambda s: s.sub_id):
            sub.retune_timing()
            handler, latency, timing = sub.handler_ns, sub.latency_ns, sub.timing
            totals4 = (sub.received, sub.bytes_received, sub.dropped, timing.timed)
            mark.subs[sub.sub_id] = (*totals4, handler.copy_counts(), latency.copy_counts())
            sub_before = previous.subs.get(sub.sub_id) if previous is not None else None
            if previous is None:
                d = [0, 0, 0, 0]
                h_before = l_before = None
            else:
                sub_before = sub_before or _NO_SUB
                d = [t - b for t, b in zip(totals4, sub_before[:4])]
                h_before, l_before = sub_before[4], sub_before[5]
            sub_rows.append(SubscriberProfile(
                endpoint_id=sub.sub_id, topic=sub.topic, messages_received_total=totals4[0],
                bytes_received_total=totals4[1], drops_total=totals4[2], channel_kind_last=sub.last_channel,
                leaky=sub.leaky, publishers=len(sub.publisher_ids), queue_depth=sub.pending,
                messages_received_window=d[0], bytes_received_window=d[1], drops_window=d[2],
                receive_rate_hz_window=_rate(d[0], window), bytes_rate_window=_rate(d[1], window),
                handler_ns=handler.snapshot(), latency_ns=latency.snapshot(),
                handler_ns_window=handler.window(h_before), latency_ns_window=latency.window(l_before),
                timed_messages_total=totals4[3], timed_messages_window=d[3], timing_sample_k=timing.k,
                user_spans=_spans(sub, mark, previous), user_spans_untracked=sub.spans.untracked,
            ))

        return ProcessProfilingSnapshot(
            process_id=process_id, pid=pid, host=host, timestamp_mono_ns=now_ns, timestamp_wall_s=time.time(),
            window_seconds=window, histograms_enabled=histograms, histogram_edges_ns=EDGES_NS,
            publishers=tuple(pub_rows), subscribers=tuple(sub_rows), trace=trace,
            trace_ttl_remaining_s=trace_ttl_remaining_s,
        )
