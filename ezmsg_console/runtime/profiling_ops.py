"""Profiling in the worker: the routed operations and the trace push loop.

``GET_PROFILING_SNAPSHOT`` answers with the process's counters (windows per
asking session), ``SET_PROFILING_TRACE`` sets the asking session's own trace
selection (the process records the union of every session's live selections,
see :mod:`..profiling.selections`; one session's change never ends another's),
``GET_PROFILING_TRACE_BATCH`` drains recorded samples. While
tracing is on, a push loop sends what was recorded to the GraphServer every
``push_interval`` seconds (PROCESS_PROFILING_TRACE_UPDATE, columnar, up to
``PUSH_MAX_SAMPLES`` samples: ~28 bytes each on the wire), and switches
tracing off when its TTL has passed, so a console that died cannot leave it on.

Between pushes the loop wakes every ``FOLD_INTERVAL`` (5 ms; 50 ms after a
push that found nothing) to fold the rings that recorded at least
``FOLD_MIN_ROWS`` rows (see
:mod:`..profiling.trace`: keeping the hooks' row lists short is what keeps
the hooks cheap, and it bounds memory) and to check the TTL; a fold that
leaves a ring half full pushes at once. When a drain finds a ring at least
half full, the next push comes sooner (down to ``MIN_PUSH_INTERVAL``), and
goes back towards ``push_interval`` once the rings stay under a fifth full,
so a busy endpoint is read before its ring overwrites samples. The push
itself prepares one endpoint at a time and yields to the event loop in
between: a pub/sub pipeline loses far more to one long pause than the
pause's CPU time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from ..protocol.errors import DecodeError, InvalidRequest
from ..protocol.process import Operation, RoutedRequest
from ..protocol.profiling import ProcessProfilingTraceUpdate, ProfilingTraceBatch, ProfilingTraceControl
from ..protocol.wire import from_wire, to_wire
from ..profiling.selections import TraceSelections
from ..profiling.snapshot import SnapshotBuilder
from ..profiling.trace import RING_CAPACITY, Tracer, check_control
from ..pubsub.host import EndpointHost
from .process_control import ProcessControlClient

log = logging.getLogger(__name__)

PUSH_INTERVAL_ENV = "EZMSG_CONSOLE_TRACE_PUSH_INTERVAL"
DEFAULT_PUSH_INTERVAL = 0.02
MIN_PUSH_INTERVAL = 0.002
FOLD_INTERVAL = 0.005
IDLE_FOLD_INTERVAL = 0.05
FOLD_MIN_ROWS = 64
PUSH_MAX_SAMPLES = 50000
MAX_BATCH_SAMPLES = 100000


class ProfilingOps:
    def __init__(self, control: ProcessControlClient, host: EndpointHost, push_interval: float | None = None,
                 ring_capacity: int = RING_CAPACITY, push: bool = True) -> None:
        self.control = control
        self.host = host
        self.tracer = Tracer(capacity=ring_capacity)
        self.selections = TraceSelections()  # each observer's own trace selection (their union is recorded)
        self.snapshots = SnapshotBuilder()
        if push_interval is None:
            try:
                push_interval = float(os.environ.get(PUSH_INTERVAL_ENV, DEFAULT_PUSH_INTERVAL))
            except ValueError:
                push_interval = DEFAULT_PUSH_INTERVAL
        self.push_interval = max(0.001, push_interval)
        self.push = push  # False: samples are only read by GET_PROFILING_TRACE_BATCH (the loop folds and expires)
        self._push_task: asyncio.Task[None] | None = None
        control.set_operation(Operation.GET_PROFILING_SNAPSHOT.value, self.snapshot)
        control.set_operation(Operation.SET_PROFILING_TRACE.value, self.set_trace)
        control.set_operation(Operation.GET_PROFILING_TRACE_BATCH.value, self.trace_batch)

    def _endpoints(self) -> tuple[list[Any], list[Any]]:
        return list(self.host.publishers.values()), list(self.host.subscribers.values())

    def snapshot(self, msg: RoutedRequest) -> Any:
        self._expire()
        pubs, subs = self._endpoints()
        own, left = self.selections.own(msg.source_session_id or "")  # this observer's own trace
        snap = self.snapshots.build(
            msg.source_session_id or "", process_id=self.control.process_id, pid=self.control.pid,
            host=self.control.host, publishers=pubs, subscribers=subs, histograms=self.host.histograms,
            trace=own, trace_ttl_remaining_s=left)
        return to_wire(snap)

    def set_trace(self, msg: RoutedRequest) -> dict[str, Any]:
        try:
            control = from_wire(ProfilingTraceControl, msg.payload)
        except DecodeError as exc:
            raise InvalidRequest(f"SET_PROFILING_TRACE needs a ProfilingTraceControl: {exc.message}",
                                 dict(exc.details)) from None
        observer = msg.source_session_id or ""
        self.selections.set(observer, check_control(control))  # only this observer's selection changes
        self._reconfigure()
        return self.state(observer)

    def _expire(self) -> None:
        """Drop the selections whose TTL passed (the others go on)."""
        if self.selections.expire():
            self._reconfigure()

    def _reconfigure(self) -> None:
        """Record the union of the live selections. What was recorded so far is pushed first, so a
        change of one console's selection costs the others no samples."""
        if self.tracer.enabled and self.push and not self.control.conn.closed:
            batch = self._batch(PUSH_MAX_SAMPLES)
            if batch.timestamps or batch.dropped:
                self.control.conn.send(ProcessProfilingTraceUpdate(batch))
        self.apply(self.selections.merged())

    def apply(self, control: ProfilingTraceControl) -> None:
        pubs, subs = self._endpoints()
        self.tracer.configure(control, pubs, subs)
        if control.enabled and (self._push_task is None or self._push_task.done()):
            self._push_task = asyncio.ensure_future(self._push_loop())

    def state(self, observer: str = "") -> dict[str, Any]:
        tracer = self.tracer
        own, left = self.selections.own(observer)
        return {
            "enabled": own is not None,
            "ttl_remaining_s": left,
            "traced_endpoints": sorted(tracer.traced),  # what the process records, for every observer
            "control": to_wire(own if own is not None else ProfilingTraceControl(enabled=False)),
            "observers": len(self.selections),
        }

    def trace_batch(self, msg: RoutedRequest) -> Any:
        self._expire()
        payload = msg.payload if msg.payload is not None else {}
        max_samples = payload.get("max_samples", 1000) if isinstance(payload, dict) else None
        if not isinstance(max_samples, int) or isinstance(max_samples, bool) \
                or not 1 <= max_samples <= MAX_BATCH_SAMPLES:
            raise InvalidRequest(f"max_samples must be an integer from 1 to {MAX_BATCH_SAMPLES}",
                                 {"max_samples": max_samples})
        return to_wire(self._batch(max_samples))

    def _batch(self, max_samples: int) -> ProfilingTraceBatch:
        c = self.tracer.drain(max_samples)
        return ProfilingTraceBatch.unchecked(
            self.control.process_id, self.control.pid, self.control.host, c.dropped, self.tracer.enabled,
            time.time(), None, None, c.endpoints, c.topics, c.metrics, c.channels, c.timestamps, c.values, c.seqs,
            c.endpoint_index, c.metric_index, c.channel_index)

    async def _push_loop(self) -> None:
        """Send recorded samples to the GraphServer while tracing is on; one last batch when it ends."""
        tracer = self.tracer
        interval = self.push_interval
        next_push = time.monotonic() + interval
        idle = False  # the last push had nothing: fold ticks are rarer until something comes
        while True:
            wait = next_push - time.monotonic()
            await asyncio.sleep(max(0.0, min(wait, IDLE_FOLD_INTERVAL if idle else FOLD_INTERVAL)))
            self._expire()  # a selection whose TTL passed ends (the union of the rest goes on)
            if time.monotonic() < next_push and tracer.enabled and not tracer.expire_if_due() \
                    and tracer.fold(FOLD_MIN_ROWS) < 0.5:
                continue  # not due, and no ring half full yet
            if tracer.enabled:
                # Endpoints created after tracing was switched on are hooked too.
                tracer.install(*self._endpoints())
            if not self.push:
                if not tracer.enabled:
                    return
                next_push = time.monotonic() + interval
                continue
            if tracer.enabled:
                # Most of the work, one endpoint at a time, letting the data plane run in
                # between: a pipeline stalls on one long pause far more than on its CPU time.
                for ring in list(tracer.rings.values()):
                    if tracer.prepare(ring):
                        await asyncio.sleep(0)
            batch = self._batch(PUSH_MAX_SAMPLES)
            if batch.timestamps or batch.dropped or not batch.tracing:
                await asyncio.sleep(0)  # the encoding and the write are the next piece of work
                conn = self.control.conn
                if not conn.closed:
                    conn.send(ProcessProfilingTraceUpdate(batch))
            if not batch.tracing:
                return
            idle = not batch.timestamps
            if tracer.fill >= 0.5:
                interval = max(MIN_PUSH_INTERVAL, interval / 2)
            elif tracer.fill < 0.2:
                interval = min(self.push_interval, interval * 2)
            next_push = time.monotonic() + interval

    async def close(self) -> None:
        self.tracer.disable()
        if self._push_task is not None:
            self._push_task.cancel()
            try:
                await self._push_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
