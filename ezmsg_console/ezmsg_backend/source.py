"""EzmsgSource: a live ezmsg 3.9 GraphServer seen through upstream's own GraphContext.

It satisfies :class:`~ezmsg_console.client.source.GraphSource`: every answer is
translated (:mod:`.translate`) into this project's types, so the monitor, every
console tab and every export format work unchanged. It is read-only towards the
graph (it registers no metadata, edges or endpoints) and changes a pipeline in
two ways only: setting edits (``update_setting``) and trace control.

Better than upstream on purpose:

* Edits are checked against the unit's schema *before* anything is sent (upstream
  stores what it is given, unconverted): a wrong type, a value out of bounds, a
  field the console cannot check, or a unit without ``INPUT_SETTINGS`` is refused
  with the same messages as on the native backend. ``expected_seq`` is honoured
  from the settings events seen so far.
* Profiling of every process is asked concurrently, errors are reported per process
  (upstream drops them), the pid is the one the process registered (upstream's
  profiling snapshot can carry its parent's), and handler percentiles are computed
  from traced ``lease_time_ns`` samples while tracing is on.

Upstream's protocol is pickle: attach only to GraphServers you trust (see README).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import socket
import time
import uuid
from typing import Any, Awaitable, TypeVar

from ezmsg.core import graphmeta as up
from ezmsg.core.graphcontext import GraphContext as UpstreamContext

from ..client.connection import process_error
from ..client.source import Backend, not_a_graph_server, probe
from ..protocol import messages as m
from ..protocol.address import Address
from ..protocol.errors import (Conflict, ConnectionClosed, ConsoleError, InvalidRequest, InvalidValue, RequestTimeout,
                               ServerUnreachable, UnknownField)
from ..protocol.graph import GraphSnapshot
from ..protocol.process import ProcessControlResponse
from ..protocol.profiling import (ProcessProfilingSnapshot, ProfilingError, ProfilingStreamControl,
                                  ProfilingTraceControl, ProfilingTraceEvent)
from ..protocol.settings import SettingsEventsReply, SettingsState
from ..settings.patch import coerce_field
from ..settings.schema import schema_from_plain
from . import procinfo, translate
from .streams import UpstreamStream

log = logging.getLogger(__name__)
T = TypeVar("T")
ROUTE_MARGIN = 1.0
HANDLER_SAMPLES = 20000  # traced lease times kept per subscriber endpoint
NEW_EVENT_SLACK_S = 0.5  # a topology event this much older than the subscription still counts as new
_CLOSED = (OSError, EOFError, asyncio.IncompleteReadError)


class EzmsgSource:
    backend = Backend.EZMSG.value

    def __init__(self, address: Address, *, name: str = "ezmsg-console", timeout: float = 5.0,
                 version: str = "") -> None:
        self.address = address
        self.name = name
        self.timeout = timeout
        self.version = version
        self._ctx: UpstreamContext | None = None
        self._epoch = ""
        self._closed = asyncio.Event()
        self._settings_seq: dict[str, int] = {}
        self._events_seq = 0
        self._topology_seq = 0
        self._routes: dict[str, str] = {}  # process id -> a unit it owns
        self._processes: dict[str, Any] = {}  # process id -> upstream SnapshotProcess
        self._owner_of: dict[str, str] = {}  # unit -> process id
        self._last_snapshot: Any = None
        self._handler: dict[str, collections.deque[tuple[int, int]]] = {}
        self._spans: dict[tuple[str, str], collections.deque[tuple[int, int]]] = {}  # (endpoint, topic:label)
        self._traces: dict[str, tuple[ProfilingTraceControl, float]] = {}  # process -> (control, expires mono)
        self._cpu = procinfo.CpuMeter()

    # -- lifecycle ---------------------------------------------------------

    @property
    def server_label(self) -> str:
        return f"ezmsg {self.version}".strip()

    @property
    def server_epoch(self) -> str:
        return self._epoch

    @property
    def session_id(self) -> str:
        return str(getattr(self._ctx, "_session_id", "") or "")

    async def __aenter__(self) -> EzmsgSource:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def open(self) -> None:
        if self._ctx is not None:
            return
        found = await probe(self.address, timeout=self.timeout)
        if found.backend is not Backend.EZMSG:
            if found.backend is Backend.NATIVE:
                raise ServerUnreachable(f"{self.address} is an ezmsg-console GraphServer, not an ezmsg one; "
                                        "use --backend native", {"address": str(self.address)})
            raise not_a_graph_server(found)
        self.version = found.version
        ctx = UpstreamContext((self.address.host, self.address.port), auto_start=False)
        try:
            await asyncio.wait_for(ctx.__aenter__(), self.timeout)
        except (*_CLOSED, RuntimeError, asyncio.TimeoutError, TimeoutError) as exc:
            raise ServerUnreachable(f"the ezmsg GraphServer at {self.address} did not open a session ({exc})",
                                    {"address": str(self.address)}) from None
        self._ctx = ctx
        self._epoch = f"ezmsg-{uuid.uuid4().hex[:12]}"  # upstream has no epoch: each session is a new view
        self._closed.clear()
        self._settings_seq.clear()
        self._events_seq = self._topology_seq = 0

    async def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        self._closed.set()
        if ctx is not None:
            try:
                await asyncio.wait_for(ctx.__aexit__(None, None, None), 2.0)
            except (*_CLOSED, RuntimeError, asyncio.TimeoutError, TimeoutError) as exc:
                log.debug("closing the ezmsg session: %s", exc)

    async def wait_disconnected(self) -> None:
        await self._closed.wait()

    def _lost(self) -> None:
        self._closed.set()

    def _require(self) -> UpstreamContext:
        if self._ctx is None or self._closed.is_set():
            raise ConnectionClosed(f"not connected to the ezmsg GraphServer at {self.address}")
        return self._ctx

    async def _call(self, awaitable: Awaitable[T], timeout: float | None, what: str) -> T:
        try:
            return await asyncio.wait_for(awaitable, self.timeout if timeout is None else timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeout(f"the ezmsg GraphServer at {self.address} did not answer {what} in time",
                                 {"address": str(self.address)}) from None
        except (*_CLOSED, RuntimeError) as exc:
            self._lost()
            raise ConnectionClosed(f"lost the ezmsg GraphServer at {self.address} ({exc or type(exc).__name__})",
                                   {"address": str(self.address)}) from None

    # -- topology ------------------------------------------------------------

    async def snapshot(self, timeout: float | None = None) -> GraphSnapshot:
        snap = await self._call(self._require().snapshot(), timeout, "a snapshot")
        self._last_snapshot = snap
        self._processes = {str(p.process_id): p for p in (snap.processes or {}).values()}
        self._routes = {pid: sorted(p.units)[0] for pid, p in self._processes.items() if p.units}
        self._owner_of = {str(u): pid for pid, p in self._processes.items() for u in p.units or ()}
        return translate.graph_snapshot(snap, server_id=f"ezmsg@{self.address}", epoch=self._epoch,
                                        topology_seq=self._topology_seq)

    def subscribe_topology_events(self, after_seq: int | None = 0, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> UpstreamStream:
        ctx = self._require()

        def on_event(raw: Any) -> Any:
            event = translate.topology_event(raw, self._epoch)
            self._topology_seq = max(self._topology_seq, event.seq)
            return event

        async def events() -> Any:
            # after_seq None: new events only. Upstream cannot say its newest topology seq, so the
            # backlog it replays from 0 is skipped by time (its events carry the server's wall clock).
            since = time.time() if after_seq is None else None
            async for raw in ctx.subscribe_topology_events(after_seq=after_seq or 0):
                if since is None or float(getattr(raw, "timestamp", 0.0) or 0.0) >= since - NEW_EVENT_SLACK_S:
                    yield raw

        return UpstreamStream(events, on_event, m.StreamKind.TOPOLOGY, max_queue=max_queue, on_end=self._lost)

    # -- settings --------------------------------------------------------------

    def _seen(self, event: Any) -> Any:
        self._settings_seq[event.component_address] = max(self._settings_seq.get(event.component_address, 0),
                                                          event.seq)
        self._events_seq = max(self._events_seq, event.seq)
        return event

    async def settings_events(self, after_seq: int = 0, timeout: float | None = None) -> SettingsEventsReply:
        raw = await self._call(self._require().settings_events(after_seq), timeout, "the settings events")
        events = tuple(self._seen(translate.settings_event(e, self._epoch)) for e in raw)
        gap = events and events[0].seq > after_seq + 1 and after_seq > 0
        return SettingsEventsReply(0, events, max([after_seq, *(e.seq for e in events)]),
                                   after_seq + 1 if gap else None, events[0].seq - 1 if gap else None)

    async def settings_snapshot(self, timeout: float | None = None) -> tuple[SettingsState, ...]:
        values = await self._call(self._require().settings_snapshot(), timeout, "the settings")
        await self.settings_events(self._events_seq, timeout)  # the seq of each component's latest event
        if self._last_snapshot is None:
            await self.snapshot(timeout)
        declared = {}
        for sid, session in ((self._last_snapshot.sessions or {}) if self._last_snapshot else {}).items():
            for address in (getattr(session.metadata, "components", None) or {}):
                declared[str(address)] = str(sid)
        return tuple(SettingsState(str(a), translate.settings_value(v), declared.get(str(a)),
                                   self._owner_of.get(str(a)), self._settings_seq.get(str(a), 0))
                     for a, v in sorted(values.items()))

    def subscribe_settings_events(self, after_seq: int | None = 0, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> UpstreamStream:
        ctx = self._require()

        async def events() -> Any:
            start = after_seq
            if start is None:  # new events only: after the newest one the server holds now
                start = max((int(e.seq) for e in await ctx.settings_events(0)), default=0)
            async for raw in ctx.subscribe_settings_events(after_seq=start):
                yield raw

        return UpstreamStream(events, lambda raw: self._seen(translate.settings_event(raw, self._epoch)),
                              m.StreamKind.SETTINGS, max_queue=max_queue, on_end=self._lost)

    async def update_setting(self, component_address: str, field_path: str, value: Any, *,
                             expected_seq: int | None = None, timeout: float = 2.0) -> dict[str, Any]:
        """Check ``value`` against the unit's schema, then patch the field in the owning process."""
        ctx = self._require()
        values = await self._call(ctx.settings_snapshot(), timeout, "the settings")
        current = values.get(component_address)
        if current is None:
            raise InvalidRequest(f"{component_address} has no settings on this GraphServer",
                                 {"component_address": component_address})
        await self.settings_events(self._events_seq, timeout)
        if not await self._dynamic(component_address, timeout):
            raise InvalidRequest(f"{component_address} has no INPUT_SETTINGS stream: its settings cannot change "
                                 "while it runs", {"component_address": component_address})
        state = translate.settings_value(current)
        if state.settings_schema is None:
            raise InvalidRequest(f"{component_address}: ezmsg reports no settings schema, so the console cannot "
                                 "check a change; refused", {"component_address": component_address})
        schema = schema_from_plain(state.settings_schema)
        field = schema.field(field_path)
        if field is None:
            raise UnknownField(f"{field_path}: {schema.settings_type.rpartition('.')[2]} has no field "
                               f"{field_path.rpartition('.')[2]!r}", {"field_path": field_path})
        if field.kind == "nested":
            raise InvalidValue(f"{field_path}: change one field of it at a time (e.g. {field_path}."
                               f"{field.fields[0].name if field.fields else 'name'}); ezmsg would store a "
                               "plain dict in its place", {"field_path": field_path, "reason": "nested"})
        checked = coerce_field(field, value, field_path)
        seq_now = self._settings_seq.get(component_address, 0)
        if expected_seq is not None and seq_now > expected_seq:
            raise Conflict(f"{component_address} changed (seq {seq_now}) since seq {expected_seq}; nothing was sent",
                           {"current_seq": seq_now, "current_value": state.structured_value})
        response = await self._request(component_address, up.ProcessControlOperation.UPDATE_SETTING_FIELD,
                                       up.SettingsFieldUpdateRequest(field_path=field_path, value=checked), timeout)
        applied = translate.settings_value(ctx.decode_process_payload(response, up.SettingsSnapshotValue))
        return {"value": applied.structured_value, "seq": None}

    async def _dynamic(self, component_address: str, timeout: float | None) -> bool:
        snap = self._last_snapshot or await self._call(self._require().snapshot(), timeout, "a snapshot")
        for session in (snap.sessions or {}).values():
            comp = (getattr(session.metadata, "components", None) or {}).get(component_address)
            if comp is not None:
                return bool(getattr(comp.dynamic_settings, "enabled", False))
        return False

    # -- routed process requests ------------------------------------------------

    async def _request(self, unit: str, operation: Any, payload: Any, timeout: float) -> Any:
        """Route ``operation`` to the owner of ``unit``; a failed answer raises the native typed error."""
        ctx = self._require()
        response = await self._call(ctx.process_request(unit, operation, payload_obj=payload, timeout=timeout),
                                    timeout + ROUTE_MARGIN, f"{operation.value} for {unit}")
        if not response.ok:
            code = getattr(response.error_code, "value", response.error_code) or "SERVER_ERROR"
            raise process_error(ProcessControlResponse(0, False, None, response.error, str(code),
                                                       str(response.process_id or "") or None, {}))
        return response

    async def process_ping(self, unit_address: str, *, timeout: float = 2.0) -> dict[str, Any]:
        response = await self._request(unit_address, up.ProcessControlOperation.PING, None, timeout)
        return translate.process_ping(self._require().decode_process_payload(response, up.ProcessPing))

    async def process_stats(self, unit_address: str, *, timeout: float = 2.0) -> dict[str, Any]:
        """Upstream's stats (pid, host, units) plus ``ping_ms``, and CPU, memory and uptime read from
        the operating system when the process runs on this host."""
        start = time.perf_counter()
        response = await self._request(unit_address, up.ProcessControlOperation.GET_PROCESS_STATS, None, timeout)
        stats = translate.process_stats(self._require().decode_process_payload(response, up.ProcessStats))
        stats["ping_ms"] = (time.perf_counter() - start) * 1000.0
        if stats["host"] == socket.gethostname():
            stats.update(self._cpu.read(stats["pid"]))
        return stats

    async def process_profiling_snapshot(self, unit_address: str, *, timeout: float = 2.0
                                         ) -> ProcessProfilingSnapshot:
        response = await self._request(unit_address, up.ProcessControlOperation.GET_PROFILING_SNAPSHOT, None,
                                       timeout)
        raw = self._require().decode_process_payload(response, up.ProcessProfilingSnapshot)
        return self._profile(raw)

    def _profile(self, raw: Any) -> ProcessProfilingSnapshot:
        now = time.monotonic_ns()
        window_from = now - int(float(raw.window_seconds or 0.0) * 1e9)
        window = {e: [v for t, v in d if t >= window_from] for e, d in self._handler.items()}
        totals = {e: [v for _t, v in d] for e, d in self._handler.items()}
        spans: dict[str, dict[str, tuple[list[int], list[int]]]] = {}
        for (endpoint, topic), d in self._spans.items():
            spans.setdefault(endpoint, {})[topic] = ([v for t, v in d if t >= window_from], [v for _t, v in d])
        snap = translate.profiling_snapshot(raw, window, totals, spans)
        proc = self._processes.get(snap.process_id)
        trace = self._traces.get(snap.process_id)
        remaining = trace[1] - time.monotonic() if trace else 0.0
        changes: dict[str, Any] = {}
        if proc is not None and proc.pid:
            changes.update(pid=int(proc.pid), host=str(proc.host or snap.host))
        if trace and remaining > 0:
            changes.update(trace=trace[0], trace_ttl_remaining_s=remaining)
        return dataclasses.replace(snap, **changes) if changes else snap

    async def profiling_snapshot_all(self, *, timeout_per_process: float = 1.0
                                     ) -> dict[str, ProcessProfilingSnapshot | ProfilingError]:
        """Every process that owns a unit, asked together; a process that fails is a ProfilingError."""
        await self.snapshot()

        async def ask(process_id: str, unit: str) -> ProcessProfilingSnapshot | ProfilingError:
            try:
                return await self.process_profiling_snapshot(unit, timeout=timeout_per_process)
            except ConnectionClosed:
                raise
            except ConsoleError as exc:
                return ProfilingError(process_id, str(exc.details.get("error_code") or exc.code), str(exc))

        routes = sorted(self._routes.items())
        results = await asyncio.gather(*(ask(pid, unit) for pid, unit in routes))
        return dict(zip((pid for pid, _u in routes), results))

    # -- tracing -----------------------------------------------------------------

    async def process_set_profiling_trace(self, unit_address: str, control: ProfilingTraceControl, *,
                                          timeout: float = 2.0) -> dict[str, Any]:
        def lst(v: Any) -> list[str] | None:
            return None if v is None else [str(x) for x in v]

        upstream = up.ProfilingTraceControl(
            enabled=control.enabled, sample_mod=control.sample_mod, publisher_topics=lst(control.publisher_topics),
            subscriber_topics=lst(control.subscriber_topics),
            publisher_endpoint_ids=lst(control.publisher_endpoint_ids),
            subscriber_endpoint_ids=lst(control.subscriber_endpoint_ids), metrics=lst(control.metrics),
            ttl_seconds=control.ttl_seconds)
        response = await self._request(unit_address, up.ProcessControlOperation.SET_PROFILING_TRACE, upstream,
                                       timeout)
        process_id = str(response.process_id or self._owner_of.get(unit_address, ""))
        if control.enabled:
            self._traces[process_id] = (control, time.monotonic() + control.ttl_seconds)
        else:
            self._traces.pop(process_id, None)
        return {"enabled": control.enabled, "process_id": process_id}

    def subscribe_profiling_trace(self, control: ProfilingStreamControl | None = None, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> UpstreamStream:
        ctx = self._require()
        c = control or ProfilingStreamControl()
        upstream = up.ProfilingStreamControl(
            interval=c.interval, max_samples=c.max_samples, include_empty_batches=c.include_empty_batches,
            process_ids=None if c.process_ids is None else [uuid.UUID(p) for p in c.process_ids])
        seq = iter(range(1, 1 << 62))

        def on_batch(raw: Any) -> ProfilingTraceEvent:
            batches = []
            for b in (raw.batches or {}).values():
                proc = self._processes.get(str(b.process_id))
                batch = translate.trace_batch(b, pid=int(proc.pid) if proc is not None and proc.pid else None)
                self._keep_handler_samples(b)
                batches.append(batch)
            return ProfilingTraceEvent(next(seq), time.time(), tuple(batches))

        return UpstreamStream(lambda: ctx.subscribe_profiling_trace(upstream), on_batch, m.StreamKind.PROFILING,
                              max_queue=max_queue, on_end=self._lost)

    def _keep_handler_samples(self, batch: Any) -> None:
        """Keep traced handler times (lease_time_ns) and handler spans (user_span_ns, one per
        callable, topic ``topic:callable``) for the snapshots' percentiles."""
        for s in batch.samples or ():
            if s.metric == translate.HANDLER_METRIC:
                ring = self._handler.get(str(s.endpoint_id))
                if ring is None:
                    ring = self._handler[str(s.endpoint_id)] = collections.deque(maxlen=HANDLER_SAMPLES)
                ring.append((int(s.timestamp), int(s.value)))
            elif s.metric == translate.SPAN_METRIC:
                key = (str(s.endpoint_id), str(s.topic))
                ring = self._spans.get(key)
                if ring is None:
                    ring = self._spans[key] = collections.deque(maxlen=HANDLER_SAMPLES // 4)
                ring.append((int(s.timestamp), int(s.value)))
