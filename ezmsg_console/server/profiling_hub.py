"""Profiling trace fan-out: per-process sample buffers read by per-subscriber cursors.

Theory of operation
-------------------
While tracing, each worker pushes ``ProcessProfilingTraceUpdate`` frames of
columnar samples. The hub numbers every sample it receives from a process (a
per-process ``seq`` from 1) and keeps the newest ``limit`` of them (counted
in samples) as a deque of column chunks, one per update (small updates are
merged into the previous chunk), each with the seq of its first sample and an
offset past the samples trimmed from its front. Ingesting is O(columns): the
endpoint, metric and channel indexes of an update are translated into the
process's own tables (grown as new names appear; a C-level byte translation,
skipped when the update's tables already line up with the process's, as a
worker's do). The hub also keeps the last pid/host the process reported,
whether it is tracing, and the running total of samples its own ring dropped.

A ``profiling`` stream subscriber (a :class:`_Reader`) owns an asyncio task
that wakes every ``max(0.01, interval)`` seconds and, for each process (sorted
by id; only ``process_ids`` if given), takes up to ``max_samples`` samples
after *its own* cursor for that process, by slicing the chunks' columns
(the outgoing batch is columnar too, with the process's tables; a read stops
early where the process's tables were restarted, which only happens when one
process names more endpoints than a batch can). Reads never remove anything, so any
number of concurrent readers each see every retained sample. A reader whose
cursor is older than the oldest retained sample skips ahead, and that
process's batch carries ``gap_from``/``gap_to`` (the per-process seqs it
missed). Drops the process reported are handed to each reader once.

A tick's batches become one :class:`ProfilingTraceEvent`, numbered per
subscription from 1, put in the subscription's :class:`GapQueue` and drained
by the peer's writer task like every other stream (an overflow would be a
``StreamGap``). The event is kept under ``max_event_bytes`` (half the queue
and frame limits) by reading fewer samples per process; the rest waits for
the next tick. A tick finding the previous event still queued sends nothing,
so a slow peer's backlog stays in the hub (bounded by ``limit``) and loss
shows up as batch gaps. A tick with nothing new sends nothing (unless
``include_empty_batches``).

A process that disconnects keeps its buffer until every reader that covers it
has read it all (so a worker's last update is not lost), then it is dropped.

Everything runs on the server's event loop; nothing awaits while holding state.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
from typing import Callable, TypeVar

from ..protocol.codec import packb
from ..protocol.errors import InvalidRequest
from ..protocol.gapqueue import GapQueue
from ..protocol.messages import StreamKind
from ..protocol.profiling import (
    MAX_TRACE_ENDPOINTS,
    MAX_TRACE_TABLE,
    ProfilingStreamControl,
    ProfilingTraceBatch,
    ProfilingTraceEvent,
    uint16_bytes,
    uint16_column,
)
from ..protocol.wire import to_wire
from .registry import Registry
from .streams import Subscription

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.01
MAX_STREAM_SAMPLES = 100_000
MAX_STREAM_PROCESSES = 10_000
DEFAULT_LIMIT = 200_000
MERGE_BELOW = 1024
"""An update is appended to the previous chunk while that chunk holds fewer samples
(so a process pushing a few samples at a time does not make one chunk each)."""


_Names = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]


class _Tables:
    """A process's endpoint (with topic), metric and channel tables; they only grow."""

    __slots__ = ("endpoints", "metrics", "channels", "_frozen")

    def __init__(self) -> None:
        self.endpoints: dict[tuple[str, str], int] = {}
        self.metrics: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        self._frozen: _Names | None = None

    def frozen(self) -> _Names:
        """(endpoints, topics, metrics, channels) as a batch carries them."""
        if self._frozen is None:
            self._frozen = (tuple(e for e, _t in self.endpoints), tuple(t for _e, t in self.endpoints),
                            tuple(self.metrics), tuple(self.channels))
        return self._frozen

    def fits(self, batch: ProfilingTraceBatch) -> bool:
        """Whether the batch's names fit next to these without outgrowing a batch's tables."""
        new_endpoints = sum(1 for key in zip(batch.endpoints, batch.topics) if key not in self.endpoints)
        new_metrics = sum(1 for name in batch.metrics if name not in self.metrics)
        new_channels = sum(1 for name in batch.channels if name not in self.channels)
        return (len(self.endpoints) + new_endpoints <= MAX_TRACE_ENDPOINTS
                and len(self.metrics) + new_metrics <= MAX_TRACE_TABLE
                and len(self.channels) + new_channels <= MAX_TRACE_TABLE)

    def translate(self, batch: ProfilingTraceBatch) -> tuple[bytes, bytes, bytes]:
        """The batch's index columns in terms of these tables (adding its new names)."""
        sizes = (len(self.endpoints), len(self.metrics), len(self.channels))
        endpoint_map = [_index(self.endpoints, key) for key in zip(batch.endpoints, batch.topics)]
        metric_map = [_index(self.metrics, name) for name in batch.metrics]
        channel_map = [_index(self.channels, name) for name in batch.channels]
        if sizes != (len(self.endpoints), len(self.metrics), len(self.channels)):
            self._frozen = None
        endpoint = batch.endpoint_index
        if not _identity(endpoint_map):
            endpoint = uint16_bytes(map(endpoint_map.__getitem__, uint16_column(endpoint)))
        return endpoint, _remap8(batch.metric_index, metric_map), _remap8(batch.channel_index, channel_map)


K = TypeVar("K")


def _index(table: dict[K, int], key: K) -> int:
    index = table.get(key)
    if index is None:
        index = table[key] = len(table)
    return index


def _identity(mapping: list[int]) -> bool:
    return all(i == j for i, j in enumerate(mapping))


def _remap8(column: bytes, mapping: list[int]) -> bytes:
    if _identity(mapping):
        return column
    return column.translate(bytes(mapping) + bytes(256 - len(mapping)))


@dataclasses.dataclass(slots=True)
class _Chunk:
    """Consecutive samples of one process: per-process seqs ``first + lo`` .. ``first + n - 1``."""

    first: int
    n: int
    tables: _Tables
    timestamps: bytes
    values: bytes
    seqs: bytes
    endpoint_index: bytes
    metric_index: bytes
    channel_index: bytes
    lo: int = 0  # samples trimmed from the front

    def columns(self, start: int, stop: int) -> tuple[bytes, ...]:
        """Columns of samples ``start`` to ``stop`` (indexes within the chunk)."""
        a8, b8, a2, b2 = start * 8, stop * 8, start * 2, stop * 2
        return (self.timestamps[a8:b8], self.values[a8:b8], self.seqs[a8:b8], self.endpoint_index[a2:b2],
                self.metric_index[start:stop], self.channel_index[start:stop])


@dataclasses.dataclass(slots=True)
class _ProcessTrace:
    chunks: collections.deque[_Chunk] = dataclasses.field(default_factory=collections.deque)
    tables: _Tables = dataclasses.field(default_factory=_Tables)
    next_seq: int = 1
    size: int = 0  # samples retained
    pid: int = -1
    host: str = ""
    tracing: bool = False
    dropped: int = 0  # total the process reported
    gone: bool = False  # disconnected; kept until every reader has read it

    @property
    def first_seq(self) -> int:
        """Seq of the oldest retained sample (``next_seq`` when empty)."""
        return self.next_seq - self.size

    def append(self, batch: ProfilingTraceBatch, limit: int) -> None:
        n = batch.n_samples
        if not n:
            return
        if not self.tables.fits(batch):
            self.tables = _Tables()  # older chunks keep the tables they were stored with
        tables = self.tables
        endpoint, metric, channel = tables.translate(batch)
        last = self.chunks[-1] if self.chunks else None
        if last is not None and last.tables is tables and last.n - last.lo < MERGE_BELOW:
            self.chunks[-1] = _Chunk(
                last.first, last.n + n, tables, last.timestamps + batch.timestamps, last.values + batch.values,
                last.seqs + batch.seqs, last.endpoint_index + endpoint, last.metric_index + metric,
                last.channel_index + channel, last.lo)
        else:
            self.chunks.append(_Chunk(self.next_seq, n, tables, batch.timestamps, batch.values, batch.seqs,
                                      endpoint, metric, channel))
        self.next_seq += n
        self.size += n
        while self.size > limit:  # drop the oldest, whole chunks first
            head = self.chunks[0]
            excess, held = self.size - limit, head.n - head.lo
            if held <= excess:
                self.chunks.popleft()
                self.size -= held
            else:
                head.lo += excess
                self.size -= excess

    def read(self, after: int, limit: int) -> tuple[_Tables | None, list[tuple[bytes, ...]], int]:
        """Up to ``limit`` samples with seqs after ``after`` (which must not precede the
        oldest retained one minus 1), all in one set of tables: (tables, column pieces, count)."""
        start = after + 1
        chunks = self.chunks
        if start >= self.next_seq or not chunks or limit <= 0:
            return None, [], 0
        # live readers read near the newest end: search from whichever end is closer
        if start - self.first_seq > (self.next_seq - self.first_seq) // 2:
            i = len(chunks) - 1
            while chunks[i].first + chunks[i].lo > start:
                i -= 1
        else:
            i = 0
            while chunks[i].first + chunks[i].n <= start:
                i += 1
        tables = chunks[i].tables
        pieces: list[tuple[bytes, ...]] = []
        count = 0
        while i < len(chunks) and count < limit:
            chunk = chunks[i]
            if chunk.tables is not tables:
                break
            lo = max(start + count - chunk.first, chunk.lo)
            hi = min(chunk.n, lo + limit - count)
            pieces.append(chunk.columns(lo, hi))
            count += hi - lo
            i += 1
        return tables, pieces, count

@dataclasses.dataclass(slots=True)
class _Reader:
    sub: Subscription
    control: ProfilingStreamControl
    cursors: dict[str, int] = dataclasses.field(default_factory=dict)  # process id -> last seq read
    dropped_seen: dict[str, int] = dataclasses.field(default_factory=dict)
    seq: int = 0  # last event seq sent
    ticks: int = 0
    task: asyncio.Task[None] | None = None

    def covers(self, process_id: str) -> bool:
        ids = self.control.process_ids
        return not ids or process_id in ids


class ProfilingHub:
    """Trace buffers per process and the ``profiling`` stream subscriptions."""

    def __init__(self, registry: Registry, *, limit: int = DEFAULT_LIMIT, queue_events: int = 1024,
                 queue_bytes: int = 4 * 1024 * 1024, max_event_bytes: int = 2 * 1024 * 1024,
                 clock: Callable[[], float] = time.time) -> None:
        if limit < 1:
            raise ValueError("the profiling buffer limit must be >= 1")
        self.registry = registry
        self.limit = limit
        self.queue_events = queue_events
        self.queue_bytes = queue_bytes
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self.traces: dict[str, _ProcessTrace] = {}
        self.readers: dict[str, _Reader] = {}

    # -- input -------------------------------------------------------------

    def ingest(self, process_id: str, pid: int, host: str, batch: ProfilingTraceBatch) -> None:
        """Append a process's pushed samples (numbered from 1 per process)."""
        trace = self.traces.get(process_id)
        if trace is None:
            trace = self.traces[process_id] = _ProcessTrace()
        trace.append(batch, self.limit)
        trace.pid, trace.host, trace.tracing = pid, host, batch.tracing
        trace.dropped += max(0, batch.dropped)

    def process_left(self, process_id: str) -> None:
        trace = self.traces.get(process_id)
        if trace is not None:
            trace.gone = True
            self._reap()

    # -- subscriptions -------------------------------------------------------

    @staticmethod
    def check_control(control: ProfilingStreamControl) -> None:
        if not (math.isfinite(control.interval) and control.interval > 0):
            raise InvalidRequest("interval must be a finite number > 0 (seconds; floor 0.01)",
                                 {"interval": control.interval})
        if not 1 <= control.max_samples <= MAX_STREAM_SAMPLES:
            raise InvalidRequest(f"max_samples must be between 1 and {MAX_STREAM_SAMPLES}",
                                 {"max_samples": control.max_samples})
        if control.process_ids is not None and len(control.process_ids) > MAX_STREAM_PROCESSES:
            raise InvalidRequest(f"process_ids may name at most {MAX_STREAM_PROCESSES} processes",
                                 {"process_ids": len(control.process_ids)})

    def subscribe(self, stream_id: str, control: ProfilingStreamControl, notify: Callable[[], None]) -> Subscription:
        """Open a stream; it starts at each known process's oldest retained sample
        (processes that appear later are read from their first sample)."""
        self.check_control(control)
        sub = Subscription(stream_id, StreamKind.PROFILING, GapQueue(self.queue_events, self.queue_bytes), notify)
        reader = _Reader(sub, control)
        for process_id, trace in self.traces.items():
            reader.cursors[process_id] = trace.first_seq - 1
            reader.dropped_seen[process_id] = trace.dropped
        reader.task = asyncio.get_running_loop().create_task(self._run(reader), name=f"profiling-{stream_id}")
        self.readers[stream_id] = reader
        return sub

    def unsubscribe(self, stream_id: str) -> Subscription | None:
        reader = self.readers.pop(stream_id, None)
        if reader is None:
            return None
        if reader.task is not None:
            reader.task.cancel()
        self._reap()
        return reader.sub

    def close(self) -> None:
        """Stop every stream's task (server shutdown)."""
        for stream_id in list(self.readers):
            self.unsubscribe(stream_id)

    # -- reading -------------------------------------------------------------

    async def _run(self, reader: _Reader) -> None:
        period = max(MIN_INTERVAL, reader.control.interval)
        while True:
            await asyncio.sleep(period)
            try:
                self.tick(reader)
            except Exception:  # noqa: BLE001 - a bug must not silently end the stream
                log.exception("profiling stream %s tick failed", reader.sub.stream_id)

    def tick(self, reader: _Reader) -> None:
        """One interval of one reader: queue what is new, if anything.

        While the previous event is still queued (the peer is not keeping up)
        the backlog stays here, where falling too far behind becomes a batch
        gap. Each process's share is cut uniformly until the event fits in
        ``max_event_bytes``; the rest is read on the next tick."""
        reader.ticks += 1
        if len(reader.sub.queue) == 0:
            now, limit = self.clock(), reader.control.max_samples
            while True:
                reads = [r for r in (self._read(reader, pid, now, limit) for pid in self._process_ids(reader)) if r]
                if not reads:
                    break
                event = ProfilingTraceEvent(reader.seq + 1, now, tuple(batch for batch, _c, _d in reads))
                size = len(packb(to_wire(event)))
                if size > self.max_event_bytes and limit > 1:
                    limit = max(1, int(limit * 0.9 * self.max_event_bytes / size))
                    continue
                for batch, cursor, dropped_seen in reads:
                    reader.cursors[batch.process_id] = cursor
                    reader.dropped_seen[batch.process_id] = dropped_seen
                reader.seq += 1
                reader.sub.queue.put(reader.seq, event, size)
                reader.sub.notify()
                break
        self._reap()

    def _process_ids(self, reader: _Reader) -> list[str]:
        if reader.control.process_ids:
            return sorted(set(reader.control.process_ids))
        return sorted(set(self.traces) | set(self.registry.processes))

    def _read(self, reader: _Reader, process_id: str, now: float,
              limit: int) -> tuple[ProfilingTraceBatch, int, int] | None:
        """Up to ``limit`` unread samples of a process as a batch, with the reader's
        new cursor and drop count (not yet applied); None if there is nothing to send."""
        trace = self.traces.get(process_id)
        tables: _Tables | None = None
        pieces: list[tuple[bytes, ...]] = []
        gap_from = gap_to = None
        cursor = reader.cursors.get(process_id, 0)
        dropped_seen = reader.dropped_seen.get(process_id, 0)
        count = 0
        if trace is not None:
            if cursor < trace.first_seq - 1:
                gap_from, gap_to = cursor + 1, trace.first_seq - 1
                cursor = gap_to
            tables, pieces, count = trace.read(cursor, limit)
            cursor += count
        dropped = trace.dropped - dropped_seen if trace is not None else 0
        if not count and not dropped and gap_from is None and not reader.control.include_empty_batches:
            return None
        record = self.registry.processes.get(process_id)
        if record is not None and record.pid is not None:
            pid, host = record.pid, record.host or ""
        elif trace is not None:
            pid, host = trace.pid, trace.host
        else:
            pid, host = -1, ""
        names = tables.frozen() if tables is not None and count else ((), (), (), ())
        if len(pieces) == 1:
            columns = pieces[0]
        else:
            columns = tuple(b"".join(column) for column in zip(*pieces)) if pieces else (b"",) * 6
        # the columns come from batches that were checked when they were decoded
        batch = ProfilingTraceBatch.unchecked(
            process_id, pid, host, dropped, trace.tracing if trace is not None else False, now, gap_from, gap_to,
            *names, *columns)
        return batch, cursor, dropped_seen + dropped

    def _reap(self) -> None:
        """Forget departed processes once no reader has anything unread from them."""
        for process_id in [pid for pid, trace in self.traces.items() if trace.gone]:
            trace = self.traces[process_id]
            if any(r.covers(process_id) and (r.cursors.get(process_id, 0) < trace.next_seq - 1
                                             or r.dropped_seen.get(process_id, 0) < trace.dropped)
                   for r in self.readers.values()):
                continue
            del self.traces[process_id]
            for r in self.readers.values():
                r.cursors.pop(process_id, None)
                r.dropped_seen.pop(process_id, None)
