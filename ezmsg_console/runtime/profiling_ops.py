"""Profiling in the worker: the routed operations and the trace push loop.

``GET_PROFILING_SNAPSHOT`` answers with the process's counters (windows per
asking session), ``SET_PROFILING_TRACE`` reconfigures tracing (clearing what
was recorded), ``GET_PROFILING_TRACE_BATCH`` drains recorded samples. While
tracing is on, a push loop sends what was recorded to the GraphServer every
``push_interval`` seconds (PROCESS_PROFILING_TRACE_UPDATE), and switches
tracing off when its TTL has passed, so a console that died cannot leave it on.
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
from ..profiling.snapshot import SnapshotBuilder
from ..profiling.trace import RING_CAPACITY, Tracer, check_control
from ..pubsub.host import EndpointHost
from .process_control import ProcessControlClient

log = logging.getLogger(__name__)

PUSH_INTERVAL_ENV = "EZMSG_CONSOLE_TRACE_PUSH_INTERVAL"
DEFAULT_PUSH_INTERVAL = 0.02
PUSH_MAX_SAMPLES = 5000
MAX_BATCH_SAMPLES = 100000


class ProfilingOps:
    def __init__(self, control: ProcessControlClient, host: EndpointHost, push_interval: float | None = None,
                 ring_capacity: int = RING_CAPACITY) -> None:
        self.control = control
        self.host = host
        self.tracer = Tracer(capacity=ring_capacity)
        self.snapshots = SnapshotBuilder()
        if push_interval is None:
            try:
                push_interval = float(os.environ.get(PUSH_INTERVAL_ENV, DEFAULT_PUSH_INTERVAL))
            except ValueError:
                push_interval = DEFAULT_PUSH_INTERVAL
        self.push_interval = max(0.001, push_interval)
        self._push_task: asyncio.Task[None] | None = None
        control.set_operation(Operation.GET_PROFILING_SNAPSHOT.value, self.snapshot)
        control.set_operation(Operation.SET_PROFILING_TRACE.value, self.set_trace)
        control.set_operation(Operation.GET_PROFILING_TRACE_BATCH.value, self.trace_batch)

    def _endpoints(self) -> tuple[list[Any], list[Any]]:
        return list(self.host.publishers.values()), list(self.host.subscribers.values())

    def snapshot(self, msg: RoutedRequest) -> Any:
        self.tracer.expire_if_due()
        pubs, subs = self._endpoints()
        snap = self.snapshots.build(
            msg.source_session_id or "", process_id=self.control.process_id, pid=self.control.pid,
            host=self.control.host, publishers=pubs, subscribers=subs, histograms=self.host.histograms,
            trace=self.tracer.control if self.tracer.enabled else None,
            trace_ttl_remaining_s=self.tracer.remaining_s())
        return to_wire(snap)

    def set_trace(self, msg: RoutedRequest) -> dict[str, Any]:
        try:
            control = from_wire(ProfilingTraceControl, msg.payload)
        except DecodeError as exc:
            raise InvalidRequest(f"SET_PROFILING_TRACE needs a ProfilingTraceControl: {exc.message}",
                                 dict(exc.details)) from None
        self.apply(check_control(control))
        return self.state()

    def apply(self, control: ProfilingTraceControl) -> None:
        pubs, subs = self._endpoints()
        self.tracer.configure(control, pubs, subs)
        if control.enabled and (self._push_task is None or self._push_task.done()):
            self._push_task = asyncio.ensure_future(self._push_loop())

    def state(self) -> dict[str, Any]:
        tracer = self.tracer
        return {
            "enabled": tracer.enabled,
            "ttl_remaining_s": tracer.remaining_s(),
            "traced_endpoints": sorted(tracer.traced),
            "control": to_wire(tracer.control),
        }

    def trace_batch(self, msg: RoutedRequest) -> Any:
        payload = msg.payload if msg.payload is not None else {}
        max_samples = payload.get("max_samples", 1000) if isinstance(payload, dict) else None
        if not isinstance(max_samples, int) or isinstance(max_samples, bool) \
                or not 1 <= max_samples <= MAX_BATCH_SAMPLES:
            raise InvalidRequest(f"max_samples must be an integer from 1 to {MAX_BATCH_SAMPLES}",
                                 {"max_samples": max_samples})
        return to_wire(self._batch(max_samples))

    def _batch(self, max_samples: int) -> ProfilingTraceBatch:
        self.tracer.expire_if_due()
        samples, dropped = self.tracer.drain(max_samples)
        return ProfilingTraceBatch(self.control.process_id, self.control.pid, self.control.host, tuple(samples),
                                   dropped, self.tracer.enabled, time.time())

    async def _push_loop(self) -> None:
        """Send recorded samples to the GraphServer while tracing is on; one last batch when it ends."""
        while True:
            await asyncio.sleep(self.push_interval)
            if self.tracer.enabled:
                # Endpoints created after tracing was switched on are hooked too.
                self.tracer.install(*self._endpoints())
            batch = self._batch(PUSH_MAX_SAMPLES)
            if batch.samples or batch.dropped or not batch.tracing:
                conn = self.control.conn
                if not conn.closed:
                    conn.send(ProcessProfilingTraceUpdate(batch))
            if not batch.tracing:
                return

    async def close(self) -> None:
        self.tracer.disable()
        if self._push_task is not None:
            self._push_task.cancel()
            try:
                await self._push_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
