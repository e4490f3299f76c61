"""Profiling trace fan-out: per-process sample buffers read by per-subscriber cursors.

Theory of operation
-------------------
While tracing, each worker pushes ``ProcessProfilingTraceUpdate`` frames. The
hub numbers every sample it receives from a process (a per-process ``seq``
from 1) and keeps the newest ``limit`` of them in a deque, together with the
last pid/host the process reported, whether it is tracing, and the running
total of samples its own ring dropped.

A ``profiling`` stream subscriber (a :class:`_Reader`) owns an asyncio task
that wakes every ``max(0.01, interval)`` seconds and, for each process (sorted
by id; only ``process_ids`` if given), takes up to ``max_samples`` samples
after *its own* cursor for that process. Reads never remove anything, so any
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
import itertools
import logging
import math
import time
from typing import Callable

from ..protocol.codec import packb
from ..protocol.errors import InvalidRequest
from ..protocol.gapqueue import GapQueue
from ..protocol.messages import StreamKind
from ..protocol.profiling import ProfilingStreamControl, ProfilingTraceBatch, ProfilingTraceEvent, ProfilingTraceSample
from ..protocol.wire import to_wire
from .registry import Registry
from .streams import Subscription

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.01
MAX_STREAM_SAMPLES = 100_000
MAX_STREAM_PROCESSES = 10_000
DEFAULT_LIMIT = 200_000


@dataclasses.dataclass(slots=True)
class _ProcessTrace:
    samples: collections.deque[tuple[int, ProfilingTraceSample]]
    next_seq: int = 1
    pid: int = -1
    host: str = ""
    tracing: bool = False
    dropped: int = 0  # total the process reported
    gone: bool = False  # disconnected; kept until every reader has read it

    @property
    def first_seq(self) -> int:
        """Seq of the oldest retained sample (``next_seq`` when empty)."""
        return self.next_seq - len(self.samples)


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
            trace = self.traces[process_id] = _ProcessTrace(collections.deque(maxlen=self.limit))
        start = trace.next_seq
        trace.samples.extend(zip(itertools.count(start), batch.samples))
        trace.next_seq = start + len(batch.samples)
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
        samples: list[ProfilingTraceSample] = []
        gap_from = gap_to = None
        cursor = reader.cursors.get(process_id, 0)
        dropped_seen = reader.dropped_seen.get(process_id, 0)
        if trace is not None:
            if cursor < trace.first_seq - 1:
                gap_from, gap_to = cursor + 1, trace.first_seq - 1
                cursor = gap_to
            start = cursor - trace.first_seq + 1  # deque index of the first unread sample
            samples = _slice(trace.samples, start, start + min(trace.next_seq - 1 - cursor, limit))
            cursor += len(samples)
        dropped = trace.dropped - dropped_seen if trace is not None else 0
        if not samples and not dropped and gap_from is None and not reader.control.include_empty_batches:
            return None
        record = self.registry.processes.get(process_id)
        if record is not None and record.pid is not None:
            pid, host = record.pid, record.host or ""
        elif trace is not None:
            pid, host = trace.pid, trace.host
        else:
            pid, host = -1, ""
        batch = ProfilingTraceBatch(process_id, pid, host, tuple(samples), dropped,
                                    trace.tracing if trace is not None else False, now, gap_from, gap_to)
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


def _slice(samples: collections.deque[tuple[int, ProfilingTraceSample]], start: int,
           stop: int) -> list[ProfilingTraceSample]:
    """``samples[start:stop]`` without walking the deque from the far end."""
    if stop <= start:
        return []
    n = len(samples)
    if start > n // 2:  # live readers read near the newest end
        out = [s for _, s in itertools.islice(reversed(samples), n - stop, n - start)]
        out.reverse()
        return out
    return [s for _, s in itertools.islice(samples, start, stop)]
