"""Opt-in tracing: per-endpoint preallocated sample rings and the hooks that fill them.

While tracing is off every hook attribute of every endpoint is None, so the
publish and receive paths pay one ``is not None`` test each. Turning it on
(:meth:`Tracer.configure`) installs small closures on the endpoints the
control selects; each appends plain tuples to that endpoint's
:class:`TraceRing`, a fixed-size list that overwrites its oldest sample when
full and counts every overwrite, so a reader always learns how many samples
it missed. Every configure clears all rings and sampling counters.

Sampling: a publisher counts its publishes and samples ``publish_delta_ns``
on every ``sample_mod``-th (the time since the previous *sampled* publish,
0 the first time); ``backpressure_wait_ns`` is recorded for every wait. A
subscriber makes one decision per handled message (counter incremented,
sampled when ``counter % sample_mod == 0``), shared by its metrics, so with
``sample_mod=3`` messages 0..6 are sampled at 2 and 5 on every metric.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from ..protocol.errors import InvalidRequest
from ..protocol.profiling import (
    ALL_METRICS,
    MAX_TTL_S,
    ProfilingTraceControl,
    ProfilingTraceSample,
    TraceMetric,
)

RING_CAPACITY = 10000
Sample = tuple[int, str, str, str, int, str, int]
"""(timestamp_mono_ns, endpoint_id, topic, metric, value_ns, channel_kind, sample_seq)"""

_PUBLISH_DELTA = TraceMetric.PUBLISH_DELTA_NS.value
_WAIT = TraceMetric.BACKPRESSURE_WAIT_NS.value
_LEASE = TraceMetric.LEASE_TIME_NS.value
_HANDLER = TraceMetric.HANDLER_NS.value
_E2E = TraceMetric.E2E_LATENCY_NS.value


class TraceRing:
    """A preallocated ring of samples; overwrites of unread samples are counted."""

    __slots__ = ("buf", "capacity", "head", "size", "dropped")

    def __init__(self, capacity: int = RING_CAPACITY) -> None:
        self.buf: list[Sample | None] = [None] * capacity
        self.capacity = capacity
        self.head = 0  # next write position
        self.size = 0
        self.dropped = 0

    def append(self, sample: Sample) -> None:
        head = self.head
        self.buf[head] = sample
        self.head = head + 1 if head + 1 < self.capacity else 0
        if self.size < self.capacity:
            self.size += 1
        else:
            self.dropped += 1

    def drain(self, limit: int) -> list[Sample]:
        """Remove and return up to ``limit`` samples, oldest first."""
        n = min(limit, self.size)
        start = (self.head - self.size) % self.capacity
        out: list[Sample] = []
        for i in range(n):
            pos = (start + i) % self.capacity
            out.append(self.buf[pos])  # type: ignore[arg-type]
            self.buf[pos] = None
        self.size -= n
        return out

    def clear(self) -> None:
        self.buf = [None] * self.capacity
        self.head = self.size = self.dropped = 0


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


class Tracer:
    """The trace state of one process: which endpoints are traced, and their rings."""

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns, capacity: int = RING_CAPACITY) -> None:
        self.clock = clock
        self.capacity = capacity
        self.control = ProfilingTraceControl()
        self.rings: dict[str, TraceRing] = {}
        self.traced: dict[str, Any] = {}  # endpoint id -> endpoint with hooks installed
        self.expires_mono = 0.0

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
            if pub.pub_id in self.traced or not _selected(pub.pub_id, pub.topic, c.publisher_topics,
                                                          c.publisher_endpoint_ids):
                continue
            if metrics & {_PUBLISH_DELTA, _WAIT}:
                pub.hook = self._publisher_hook(pub, _PUBLISH_DELTA in metrics, _WAIT in metrics)
                self.traced[pub.pub_id] = pub
        for sub in subscribers:
            if sub.sub_id in self.traced or not _selected(sub.sub_id, sub.topic, c.subscriber_topics,
                                                          c.subscriber_endpoint_ids):
                continue
            if metrics & {_LEASE, _HANDLER, _E2E}:
                if _LEASE in metrics:
                    sub.hook = self._arrival_hook()
                sub.trace = self._subscriber_trace(sub, _LEASE in metrics, _HANDLER in metrics, _E2E in metrics)
                self.traced[sub.sub_id] = sub

    def uninstall(self) -> None:
        for endpoint in self.traced.values():
            endpoint.hook = None
            if hasattr(endpoint, "trace"):
                endpoint.trace = None
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

    def _ring(self, endpoint_id: str) -> TraceRing:
        ring = self.rings.get(endpoint_id)
        if ring is None:
            ring = self.rings[endpoint_id] = TraceRing(self.capacity)
        return ring

    def _publisher_hook(self, pub: Any, want_delta: bool, want_wait: bool) -> Callable[..., None]:
        append = self._ring(pub.pub_id).append
        clock, mod = self.clock, self.control.sample_mod
        eid, topic = pub.pub_id, pub.topic
        state = [0, 0]  # publishes counted, timestamp of the last sampled one

        def hook(_pub: Any, msg_id: int, _nbytes: int, waited: int) -> None:
            if waited and want_wait:
                append((clock(), eid, topic, _WAIT, waited, "", msg_id))
            if want_delta:
                state[0] += 1
                if state[0] % mod == 0:
                    now = clock()
                    last, state[1] = state[1], now
                    append((now, eid, topic, _PUBLISH_DELTA, now - last if last else 0, "", msg_id))

        return hook

    def _arrival_hook(self) -> Callable[..., None]:
        clock = self.clock

        def hook(_sub: Any, delivery: Any, _nbytes: int) -> None:
            delivery.arrival_ns = clock()

        return hook

    def _subscriber_trace(self, sub: Any, want_lease: bool, want_handler: bool,
                          want_e2e: bool) -> Callable[..., None]:
        append = self._ring(sub.sub_id).append
        mod = self.control.sample_mod
        eid, topic = sub.sub_id, sub.topic
        state = [0]

        def trace(delivery: Any, start: int, end: int) -> None:
            state[0] += 1
            if state[0] % mod:
                return
            seq, channel = delivery.msg_id, delivery.channel
            if want_lease and delivery.arrival_ns:
                append((end, eid, topic, _LEASE, end - delivery.arrival_ns, channel, seq))
            if want_handler:
                append((end, eid, topic, _HANDLER, end - start, channel, seq))
            if want_e2e and delivery.publish_ns:
                append((start, eid, topic, _E2E, start - delivery.publish_ns, channel, seq))

        return trace

    def drain(self, max_samples: int) -> tuple[list[ProfilingTraceSample], int]:
        """Up to ``max_samples`` of the oldest samples across endpoints, ordered by
        (timestamp, sample_seq), and the overwrites counted since the last drain."""
        pending: list[Sample] = []
        dropped = 0
        for ring in self.rings.values():
            dropped += ring.dropped
            ring.dropped = 0
            pending.extend(ring.drain(ring.size))
        pending.sort(key=lambda s: (s[0], s[6]))
        keep, rest = pending[:max_samples], pending[max_samples:]
        for sample in rest:  # put the remainder back, still in order
            self._ring(sample[1]).append(sample)
        return [ProfilingTraceSample(*s) for s in keep], dropped
