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
(:class:`ProfilingTraceEvent` on the ``profiling`` stream). Trace samples
travel as columns (:class:`ProfilingTraceBatch`), about 28 bytes a sample,
and are only turned into :class:`ProfilingTraceSample` objects by whoever
reads them.
"""

from __future__ import annotations

import array
import dataclasses
import enum
import sys
from typing import Any, Collection, Iterable

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
    USER_SPAN_NS = "user_span_ns"
    """Subscriber: a ``profile_span(label)`` block inside its handler. The sample's topic is
    ``"<topic>:<label>"`` (as ezmsg 3.9 names its per-handler spans) and its seq the message's."""


PUBLISHER_METRICS = frozenset({TraceMetric.PUBLISH_DELTA_NS.value, TraceMetric.BACKPRESSURE_WAIT_NS.value})
SUBSCRIBER_METRICS = frozenset({TraceMetric.LEASE_TIME_NS.value, TraceMetric.HANDLER_NS.value,
                                TraceMetric.E2E_LATENCY_NS.value, TraceMetric.USER_SPAN_NS.value})
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


MAX_TRACE_ENDPOINTS = 1 << 16
"""Entries an ``endpoints`` table may have (``endpoint_index`` is uint16)."""
MAX_TRACE_TABLE = 1 << 8
"""Entries a ``metrics`` or ``channels`` table may have (their indexes are uint8)."""
TRACE_CHANNELS: tuple[str, ...] = ("", "LOCAL", "SHM", "TCP")
"""The ``channels`` table of every batch a worker sends: a sample's channel index is its channel
kind's position here (0: none, as for publisher samples). A subscriber's trace row carries it."""

_BIG_ENDIAN = sys.byteorder == "big"


def int64_bytes(values: Any) -> bytes:
    """A little-endian int64 column from ints, an ``array('q')`` or an integer numpy array."""
    if isinstance(values, array.array) and values.typecode == "q":
        col = values
    elif hasattr(values, "dtype"):
        data: bytes = values.astype("<i8", copy=False).tobytes()
        return data
    else:
        col = array.array("q", values)
    if _BIG_ENDIAN:
        col = array.array("q", col)
        col.byteswap()
    return col.tobytes()


def int64_column(data: bytes) -> array.array[int]:
    """The ints of a little-endian int64 column."""
    col = array.array("q")
    col.frombytes(data)
    if _BIG_ENDIAN:
        col.byteswap()
    return col


def uint16_bytes(values: Any) -> bytes:
    """A little-endian uint16 column from ints or an integer numpy array."""
    if hasattr(values, "dtype"):
        data: bytes = values.astype("<u2", copy=False).tobytes()
        return data
    col = array.array("H", values)
    if _BIG_ENDIAN:
        col.byteswap()
    return col.tobytes()


def uint16_column(data: bytes) -> array.array[int]:
    """The ints of a little-endian uint16 column."""
    col = array.array("H")
    col.frombytes(data)
    if _BIG_ENDIAN:
        col.byteswap()
    return col


def _check_index(name: str, column: bytes, size: int, width: int) -> None:
    """Every index in ``column`` (``width`` bytes each, little-endian) is below ``size``."""
    if not column or size >= 1 << (8 * width):
        return
    if width == 1:
        bad = column.translate(None, bytes(range(size)))
    elif size <= 256:  # the high bytes must be 0 and the low bytes in range
        bad = column[1::2].translate(None, b"\0") + column[0::2].translate(None, bytes(range(size)))
    else:
        import numpy as np  # a table this big is rare; numpy is a dependency anyway

        bad = b"" if int(np.frombuffer(column, "<u2").max()) < size else b"\1"
    if bad:
        raise ValueError(f"{name} refers past its table of {size}")


_COLUMNS = (("timestamps", 8), ("values", 8), ("seqs", 8), ("endpoint_index", 2), ("metric_index", 1),
            ("channel_index", 1))


@dataclasses.dataclass(frozen=True, slots=True, init=False, repr=False)
class ProfilingTraceBatch:
    """Samples of one process, oldest first, as columns.

    Sample ``i`` is ``timestamps[i]`` (``timestamp_mono_ns``), ``values[i]``
    (``value_ns``) and ``seqs[i]`` (``sample_seq``), each a little-endian int64
    column, and ``endpoints[endpoint_index[i]]`` with its topic
    ``topics[endpoint_index[i]]`` (uint16 little-endian),
    ``metrics[metric_index[i]]`` and ``channels[channel_index[i]]`` (uint8). The
    tables may list entries no sample uses. Every column has one entry per
    sample and every index is within its table, or the batch is refused
    (``ValueError``; a ``DecodeError`` on the wire). Checking is O(columns), not
    O(samples), in Python.

    :attr:`samples` builds :class:`ProfilingTraceSample` objects (a new tuple
    each time); the constructor also still takes ``samples=`` and builds the
    columns from them. ``dropped``: samples the process's ring overwrote before
    they were read. ``gap_from``..``gap_to`` (server sequence numbers of this
    process's samples) were skipped because this reader fell behind what the
    server retains."""

    process_id: str
    pid: int
    host: str
    dropped: int = 0
    tracing: bool = False
    timestamp_wall_s: float = 0.0
    gap_from: int | None = None
    gap_to: int | None = None
    endpoints: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    timestamps: bytes = b""
    values: bytes = b""
    seqs: bytes = b""
    endpoint_index: bytes = b""
    metric_index: bytes = b""
    channel_index: bytes = b""

    def __init__(self, process_id: str, pid: int, host: str,
                 samples: Iterable[ProfilingTraceSample] | None = None, dropped: int = 0, tracing: bool = False,
                 timestamp_wall_s: float = 0.0, gap_from: int | None = None, gap_to: int | None = None, *,
                 endpoints: tuple[str, ...] = (), topics: tuple[str, ...] = (), metrics: tuple[str, ...] = (),
                 channels: tuple[str, ...] = (), timestamps: bytes = b"", values: bytes = b"", seqs: bytes = b"",
                 endpoint_index: bytes = b"", metric_index: bytes = b"", channel_index: bytes = b"") -> None:
        columns: dict[str, Any] = dict(
            endpoints=endpoints, topics=topics, metrics=metrics, channels=channels, timestamps=timestamps,
            values=values, seqs=seqs, endpoint_index=endpoint_index, metric_index=metric_index,
            channel_index=channel_index)
        if samples is not None:
            if any(columns.values()):
                raise TypeError("give either samples or columns, not both")
            columns = _columns_of(samples)
        else:
            columns = {k: tuple(v) if isinstance(v, list) else _as_bytes(v) if k in _COLUMN_NAMES else v
                       for k, v in columns.items()}
        _check_columns(columns)
        setattr_ = object.__setattr__
        for name, value in (("process_id", process_id), ("pid", pid), ("host", host), ("dropped", dropped),
                            ("tracing", tracing), ("timestamp_wall_s", timestamp_wall_s), ("gap_from", gap_from),
                            ("gap_to", gap_to), *columns.items()):
            setattr_(self, name, value)

    @classmethod
    def unchecked(cls, process_id: str, pid: int, host: str, dropped: int, tracing: bool,
                  timestamp_wall_s: float, gap_from: int | None, gap_to: int | None, endpoints: tuple[str, ...],
                  topics: tuple[str, ...], metrics: tuple[str, ...], channels: tuple[str, ...], timestamps: bytes,
                  values: bytes, seqs: bytes, endpoint_index: bytes, metric_index: bytes,
                  channel_index: bytes) -> ProfilingTraceBatch:
        """Build from columns its producer already knows to be consistent (no O(n) index check)."""
        self = object.__new__(cls)
        setattr_ = object.__setattr__
        for name, value in zip(_FIELD_NAMES, (process_id, pid, host, dropped, tracing, timestamp_wall_s, gap_from,
                                              gap_to, endpoints, topics, metrics, channels, timestamps, values,
                                              seqs, endpoint_index, metric_index, channel_index)):
            setattr_(self, name, value)
        return self

    @property
    def n_samples(self) -> int:
        """How many samples the batch holds (no objects are built)."""
        return len(self.timestamps) >> 3

    @property
    def samples(self) -> tuple[ProfilingTraceSample, ...]:
        """Every sample as a :class:`ProfilingTraceSample` (built on each access)."""
        return self.select(None)

    def select(self, endpoint_ids: Collection[str] | None) -> tuple[ProfilingTraceSample, ...]:
        """The samples of ``endpoint_ids`` (None: all), built only for those endpoints."""
        if not self.timestamps:
            return ()
        endpoint = uint16_column(self.endpoint_index)
        columns: tuple[Any, ...] = (int64_column(self.timestamps), endpoint, self.metric_index,
                                    int64_column(self.values), self.channel_index, int64_column(self.seqs))
        if endpoint_ids is not None:
            wanted = {i for i, e in enumerate(self.endpoints) if e in endpoint_ids}
            if not wanted:
                return ()
            if len(wanted) < len(self.endpoints):
                keep = [i for i, e in enumerate(endpoint) if e in wanted]
                columns = tuple([col[i] for i in keep] for col in columns)
        ts, endpoint, metric, value, channel, seq = columns
        eps, topics, metrics, channels = self.endpoints, self.topics, self.metrics, self.channels
        return tuple(map(ProfilingTraceSample, ts, map(eps.__getitem__, endpoint), map(topics.__getitem__, endpoint),
                         map(metrics.__getitem__, metric), value, map(channels.__getitem__, channel), seq))

    def __repr__(self) -> str:
        gap = f", gap={self.gap_from}..{self.gap_to}" if self.gap_from is not None else ""
        return (f"ProfilingTraceBatch(process_id={self.process_id!r}, pid={self.pid}, host={self.host!r}, "
                f"n_samples={self.n_samples}, endpoints={len(self.endpoints)}, dropped={self.dropped}, "
                f"tracing={self.tracing}, timestamp_wall_s={self.timestamp_wall_s}{gap})")


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ProfilingTraceBatch))
_COLUMN_NAMES = frozenset(name for name, _width in _COLUMNS)


def _as_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview, array.array)):
        return memoryview(value).cast("B").tobytes()
    return value


def _check_columns(c: dict[str, Any]) -> None:
    for name, _width in _COLUMNS:
        if not isinstance(c[name], bytes):
            raise TypeError(f"{name} must be bytes, got {type(c[name]).__name__}")
    n, rest = divmod(len(c["timestamps"]), 8)
    lengths = {name: len(c[name]) for name, _width in _COLUMNS}
    if rest or any(lengths[name] != n * width for name, width in _COLUMNS):
        raise ValueError(f"trace columns disagree on the number of samples: {lengths} bytes")
    if len(c["topics"]) != len(c["endpoints"]):
        raise ValueError(f"{len(c['endpoints'])} endpoints but {len(c['topics'])} topics")
    if len(c["endpoints"]) > MAX_TRACE_ENDPOINTS or max(len(c["metrics"]), len(c["channels"])) > MAX_TRACE_TABLE:
        raise ValueError(f"a trace batch names at most {MAX_TRACE_ENDPOINTS} endpoints and "
                         f"{MAX_TRACE_TABLE} metrics and channels")
    _check_index("endpoint_index", c["endpoint_index"], len(c["endpoints"]), 2)
    _check_index("metric_index", c["metric_index"], len(c["metrics"]), 1)
    _check_index("channel_index", c["channel_index"], len(c["channels"]), 1)


def _columns_of(samples: Iterable[ProfilingTraceSample]) -> dict[str, Any]:
    """Columns and tables (in first-seen order) of sample objects."""
    endpoints: dict[tuple[str, str], int] = {}
    metrics: dict[str, int] = {}
    channels: dict[str, int] = {}
    ts, values, seqs, endpoint, metric, channel = [], [], [], [], [], []
    for s in samples:
        ts.append(s.timestamp_mono_ns)
        values.append(s.value_ns)
        seqs.append(s.sample_seq)
        endpoint.append(endpoints.setdefault((s.endpoint_id, s.topic), len(endpoints)))
        metric.append(metrics.setdefault(s.metric, len(metrics)))
        channel.append(channels.setdefault(s.channel_kind, len(channels)))
    if len(metrics) > MAX_TRACE_TABLE or len(channels) > MAX_TRACE_TABLE or len(endpoints) > MAX_TRACE_ENDPOINTS:
        raise ValueError("too many distinct endpoints, metrics or channels for one trace batch")
    return dict(endpoints=tuple(e for e, _t in endpoints), topics=tuple(t for _e, t in endpoints),
                metrics=tuple(metrics), channels=tuple(channels), timestamps=int64_bytes(ts),
                values=int64_bytes(values), seqs=int64_bytes(seqs), endpoint_index=uint16_bytes(endpoint),
                metric_index=bytes(metric), channel_index=bytes(channel))


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
    ``sum_ns`` is estimated from bucket midpoints (within the bucket width).
    ``count`` is how many values the histogram holds: for a subscriber's handler time
    and latency that is (at most) its *timed* messages, not every message it received
    (see :class:`SubscriberProfile`)."""

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
class SpanProfile:
    """The durations of one ``profile_span(label)`` block in a subscriber's handler, for the
    timed messages (the ones its handler time is measured for); ``span_ns.count`` is how
    many times the block ran for them."""

    label: str
    span_ns: HistogramSnapshot = HistogramSnapshot()
    span_ns_window: HistogramSnapshot = HistogramSnapshot()


MAX_SPAN_LABELS = 32
"""Distinct span labels one subscriber records; a span with a further label is counted, not timed."""


@dataclasses.dataclass(frozen=True, slots=True)
class SubscriberProfile:
    """One subscriber's counters and timing histograms.

    Counters (messages, bytes, drops) count every message. Handler time and
    latency are measured for the *timed* messages only: every message while the
    subscriber handles fewer than its budget per second, else a deterministic 1
    in ``timing_sample_k`` (1: every message). ``timed_messages_total`` /
    ``_window`` count the timed messages; a histogram's ``count`` is at most
    that (a message from another host has no latency, one taken with ``recv()``
    no handler span), never the message count, and its percentiles estimate the
    distribution from the timed messages. ``timed_messages_*`` are None from a
    process that does not report them (an older one, which timed every message,
    or ezmsg 3.9, whose handler percentiles come from trace samples).

    ``user_spans``: one :class:`SpanProfile` per ``profile_span`` label used in the
    handler, by label; ``user_spans_untracked`` counts the runs of spans past the first
    :data:`MAX_SPAN_LABELS` labels (not timed)."""

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
    timed_messages_total: int | None = None
    timed_messages_window: int | None = None
    timing_sample_k: int = 1
    user_spans: tuple[SpanProfile, ...] = ()
    user_spans_untracked: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessProfilingSnapshot:
    """One process's counters. ``window_seconds`` is the time since this observer's
    previous snapshot (0.0 the first time, when every window is 0). ``unmeasured``
    names what the process does not measure (an ezmsg 3.9 process: "bytes",
    "backpressure", "drops", "queue", "links", "histograms", "latency"); those
    counters are 0 in the dataclass and shown as "n/a", exported as null."""

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
    unmeasured: tuple[str, ...] = ()

    def measures(self, what: str) -> bool:
        return what not in self.unmeasured


UNMEASURED_FIELDS: dict[str, tuple[str, ...]] = {
    "bytes": ("bytes_published_total", "bytes_published_window", "bytes_rate_window", "bytes_received_total",
              "bytes_received_window"),
    "backpressure": ("backpressure_waits_total", "backpressure_wait_ns_total", "backpressure_waits_window",
                     "backpressure_wait_ns_window"),
    "drops": ("drops_total", "drops_window"),
    "queue": ("queue_depth",),
    "links": ("fanout", "shm_links", "tcp_links", "local_subscribers", "publishers"),
    "latency": ("latency_ns", "latency_ns_window"),
    "histograms": ("timed_messages_total", "timed_messages_window", "timing_sample_k"),  # percentiles: traces
}
"""The publisher/subscriber fields each name in ``ProcessProfilingSnapshot.unmeasured`` covers."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProfilingError:
    """An entry of ``profiling_snapshot_all`` for a process that did not answer."""

    process_id: str
    error_code: str
    error: str
