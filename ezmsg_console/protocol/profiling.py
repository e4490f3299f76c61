"""Profiling on the wire: snapshots, trace control, trace samples and the trace stream.

Clocks are named in the field: ``*_mono_ns`` is the reporting process's
monotonic clock in nanoseconds (only comparable within one host), ``*_wall_s``
is wall-clock seconds since the epoch.

A process answers ``GET_PROFILING_SNAPSHOT`` with a
:class:`ProcessProfilingSnapshot` (as plain data in the routed payload), whose
``*_window`` fields cover the time since the *same observer's* previous
snapshot. ``SET_PROFILING_TRACE`` takes a :class:`ProfilingTraceControl`;
while tracing, the process pushes :class:`ProcessProfilingTraceUpdate` to the
GraphServer, which keeps a bounded buffer per process and serves every
``subscribe_profiling_trace`` observer from its own cursor
(:class:`ProfilingTraceEvent` on the ``profiling`` stream).
"""

from __future__ import annotations

import dataclasses
import enum

from .graph import Event
from .messages import Request
from .wire import Message


class TraceMetric(str, enum.Enum):
    PUBLISH_DELTA_NS = "publish_delta_ns"
    """Publisher: time since the previous *sampled* publish (0 for the first)."""
    BACKPRESSURE_WAIT_NS = "backpressure_wait_ns"
    """Publisher: each wait for a free ring slot (every wait, regardless of sample_mod)."""
    LEASE_TIME_NS = "lease_time_ns"
    """Subscriber: arrival in the process until the message is released."""
    HANDLER_NS = "handler_ns"
    """Subscriber: the unit's handler(s) for the message (handler start until release)."""
    E2E_LATENCY_NS = "e2e_latency_ns"
    """Subscriber: publish until handler start (same host only)."""


PUBLISHER_METRICS = frozenset({TraceMetric.PUBLISH_DELTA_NS.value, TraceMetric.BACKPRESSURE_WAIT_NS.value})
SUBSCRIBER_METRICS = frozenset({TraceMetric.LEASE_TIME_NS.value, TraceMetric.HANDLER_NS.value,
                                TraceMetric.E2E_LATENCY_NS.value})
ALL_METRICS = PUBLISHER_METRICS | SUBSCRIBER_METRICS
DEFAULT_TTL_S = 60.0
MAX_TTL_S = 24 * 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class ProfilingTraceControl:
    """Which samples a process records. A filter that is None or empty means "all"
    for its side (publishers or subscribers); ``metrics`` None means all metrics.
    Tracing switches itself off ``ttl_seconds`` after it was set."""

    enabled: bool = False
    sample_mod: int = 1
    publisher_topics: tuple[str, ...] | None = None
    subscriber_topics: tuple[str, ...] | None = None
    publisher_endpoint_ids: tuple[str, ...] | None = None
    subscriber_endpoint_ids: tuple[str, ...] | None = None
    metrics: tuple[str, ...] | None = None
    ttl_seconds: float = DEFAULT_TTL_S


@dataclasses.dataclass(frozen=True, slots=True)
class ProfilingTraceSample:
    """One measurement. ``sample_seq`` is the publisher's message number, so the
    publisher's and subscribers' samples of one message line up."""

    timestamp_mono_ns: int
    endpoint_id: str
    topic: str
    metric: str
    value_ns: int
    channel_kind: str
    sample_seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class ProfilingTraceBatch:
    """Samples of one process, oldest first. ``dropped``: samples the process's
    ring overwrote before they were read. ``gap_from``..``gap_to`` (server
    sequence numbers of this process's samples) were skipped because this
    reader fell behind what the server retains."""

    process_id: str
    pid: int
    host: str
    samples: tuple[ProfilingTraceSample, ...]
    dropped: int = 0
    tracing: bool = False
    timestamp_wall_s: float = 0.0
    gap_from: int | None = None
    gap_to: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessProfilingTraceUpdate(Message):
    """Process -> server, while tracing: the samples recorded since the last update (no reply)."""

    KIND = "PROCESS_PROFILING_TRACE_UPDATE"
    batch: ProfilingTraceBatch


@dataclasses.dataclass(frozen=True, slots=True)
class ProfilingStreamControl:
    """A trace stream: every ``interval`` seconds (floor 0.01), up to ``max_samples``
    new samples per process; ``process_ids`` None means every process."""

    interval: float = 0.05
    max_samples: int = 1000
    process_ids: tuple[str, ...] | None = None
    include_empty_batches: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ProfilingSubscribe(Request):
    """Open a ``profiling`` push stream (answered with SUBSCRIBED)."""

    KIND = "PROFILING_SUBSCRIBE"
    control: ProfilingStreamControl


@dataclasses.dataclass(frozen=True, slots=True)
class ProfilingTraceEvent(Event):
    """One tick of a trace stream: one batch per process with something new."""

    KIND = "PROFILING_TRACE_EVENT"
    timestamp_wall_s: float
    batches: tuple[ProfilingTraceBatch, ...]


# -- snapshots (routed payloads) -------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A fixed log-bucket histogram of nanosecond values. Only non-empty buckets
    are listed: ``bucket_indices[i]`` has ``bucket_counts[i]`` values; bucket
    ``k`` spans ``[edges[k], edges[k+1])`` of the snapshot's ``histogram_edges_ns``.
    ``sum_ns`` is estimated from bucket midpoints (within the bucket width)."""

    count: int = 0
    sum_ns: int = 0
    p50_ns: float = 0.0
    p90_ns: float = 0.0
    p99_ns: float = 0.0
    max_ns: float = 0.0
    bucket_indices: tuple[int, ...] = ()
    bucket_counts: tuple[int, ...] = ()

    @property
    def mean_ns(self) -> float:
        return self.sum_ns / self.count if self.count else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class PublisherProfile:
    endpoint_id: str
    topic: str
    num_buffers: int
    inflight_messages_current: int
    messages_published_total: int
    bytes_published_total: int
    backpressure_waits_total: int
    backpressure_wait_ns_total: int
    messages_published_window: int = 0
    bytes_published_window: int = 0
    backpressure_waits_window: int = 0
    backpressure_wait_ns_window: int = 0
    publish_rate_hz_window: float = 0.0
    bytes_rate_window: float = 0.0
    fanout: int = 0
    shm_links: int = 0
    tcp_links: int = 0
    local_subscribers: int = 0

    @property
    def buffer_utilization(self) -> float:
        return self.inflight_messages_current / self.num_buffers if self.num_buffers else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class SubscriberProfile:
    endpoint_id: str
    topic: str
    messages_received_total: int
    bytes_received_total: int
    drops_total: int
    channel_kind_last: str
    leaky: bool = False
    publishers: int = 0
    queue_depth: int = 0
    messages_received_window: int = 0
    bytes_received_window: int = 0
    drops_window: int = 0
    receive_rate_hz_window: float = 0.0
    bytes_rate_window: float = 0.0
    handler_ns: HistogramSnapshot = HistogramSnapshot()
    handler_ns_window: HistogramSnapshot = HistogramSnapshot()
    latency_ns: HistogramSnapshot = HistogramSnapshot()
    latency_ns_window: HistogramSnapshot = HistogramSnapshot()


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessProfilingSnapshot:
    """One process's counters. ``window_seconds`` is the time since this observer's
    previous snapshot (0.0 the first time, when every window is 0)."""

    process_id: str
    pid: int
    host: str
    timestamp_mono_ns: int
    timestamp_wall_s: float
    window_seconds: float
    histograms_enabled: bool
    histogram_edges_ns: tuple[int, ...]
    publishers: tuple[PublisherProfile, ...] = ()
    subscribers: tuple[SubscriberProfile, ...] = ()
    trace: ProfilingTraceControl | None = None
    trace_ttl_remaining_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class ProfilingError:
    """An entry of ``profiling_snapshot_all`` for a process that did not answer."""

    process_id: str
    error_code: str
    error: str
