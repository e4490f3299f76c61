"""GraphMonitor: a live, self-healing view of one GraphServer for consoles (no UI code).

The GraphServer is ours (``backend="native"``) or an upstream ezmsg 3.9 one
(``backend="ezmsg"``): either is read through a :class:`~.source.GraphSource`.

It keeps a :class:`MonitorState` current: the graph snapshot (topology,
processes, endpoints) refreshed on every topology event, every component's
settings with their change history, profiling snapshots of every process
polled at ``profiling_interval``, per-process stats and ping times, and the
trace samples streamed for endpoints this console traces.

If the server goes away, the state is kept (``stale``), the monitor
reconnects with backoff (100 ms doubling to 2 s, with jitter, forever) and
resynchronises: from the last seen sequence numbers when the server is the
same (same epoch), from fresh snapshots when it restarted or when a stream
reported a gap. Whoever displays the state is told what changed through
``on_change(kind)`` (kinds: connection, topology, settings, profiling,
processes, trace, error).

Mutations (setting edits, tracing) go through the current connection and
raise a :class:`~ezmsg_console.protocol.errors.ConsoleError` on failure;
in read-only mode they raise PermissionDenied and nothing is sent.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import logging
import time
from typing import Any, Callable, NamedTuple

from ..protocol import messages as m
from ..protocol.errors import ConnectionClosed, ConsoleError, PermissionDenied, ServerUnreachable
from ..protocol.graph import GraphSnapshot, TopologyEvent
from ..protocol.profiling import (
    ProcessProfilingSnapshot,
    ProfilingError,
    ProfilingStreamControl,
    ProfilingTraceControl,
    ProfilingTraceEvent,
    ProfilingTraceSample,
)
from ..protocol.settings import SettingsChangedEvent, SettingsEventType, SettingsState
from ..settings.values import at_path
from ..protocol.address import resolve_address
from .reconnect import Backoff
from .reasons import connect_failure
from .source import Backend, GraphSource, locate, make_source

log = logging.getLogger(__name__)

MATCH_NONE = ("",)
"""An endpoint filter no endpoint matches (a None or empty filter means "all")."""
HISTORY = 60
EVENTS = 500
SAMPLES = 5000
TRACE_TTL_S = 60.0
STATS_INTERVAL_S = 2.0


class ConnState(str, enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


@dataclasses.dataclass
class Traced:
    """An endpoint this console traces."""

    endpoint_id: str
    topic: str
    unit_address: str
    process_id: str
    publisher: bool
    expires_mono: float


@dataclasses.dataclass
class MonitorState:
    address: str
    conn_state: ConnState = ConnState.CONNECTING
    down_since: float | None = None  # monotonic time the connection was lost (None while connected)
    attempts: int = 0
    last_error: str = ""
    server_epoch: str = ""
    session_id: str = ""
    server_label: str = ""  # "native p1", "ezmsg 3.9.0"
    warnings: tuple[str, ...] = ()  # one-liners about the server (an ezmsg server on another host)
    snapshot: GraphSnapshot | None = None
    data_time: float = 0.0  # wall clock of the newest data
    settings: dict[str, SettingsState] = dataclasses.field(default_factory=dict)
    initial_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings_history: dict[str, collections.deque[SettingsChangedEvent]] = dataclasses.field(default_factory=dict)
    stopped: dict[str, float] = dataclasses.field(default_factory=dict)
    """Components whose owning process left (wall time): their last real value is still shown."""
    previous_history: dict[str, tuple[SettingsChangedEvent, ...]] = dataclasses.field(default_factory=dict)
    """The history of the server before the last restart (its seqs are that server's own)."""
    previous_epoch: str = ""
    topology_events: collections.deque[TopologyEvent] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=EVENTS))
    profiling: dict[str, ProcessProfilingSnapshot | ProfilingError] = dataclasses.field(default_factory=dict)
    profiling_time: float = 0.0
    rate_history: dict[str, collections.deque[float]] = dataclasses.field(default_factory=dict)
    latency_history: dict[str, collections.deque[float]] = dataclasses.field(default_factory=dict)
    process_stats: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    trace_samples: collections.deque[ProfilingTraceSample] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=SAMPLES))
    traced: dict[str, Traced] = dataclasses.field(default_factory=dict)

    @property
    def stale(self) -> bool:
        return self.conn_state is not ConnState.CONNECTED

    def down_for(self) -> float:
        return time.monotonic() - self.down_since if self.down_since is not None else 0.0


class Undone(NamedTuple):
    """What an undo restored, and the seq of the change it made (the console's own)."""

    component: str
    field_path: str
    value: Any
    seq: int | None


class GraphMonitor:
    def __init__(self, address: Any, *, token: str | None = None, name: str = "ezmsg-console",
                 profiling_interval: float = 1.0, read_only: bool = False, timeout: float = 5.0,
                 on_change: Callable[[str], None] | None = None, backend: Backend | str | None = Backend.NATIVE,
                 version: str = "") -> None:
        self.address = address
        self.backend = Backend(backend) if backend else None  # None: find out at the next connect
        self.version = version
        self.token = token
        self.name = name
        self.profiling_interval = profiling_interval
        self.read_only = read_only
        self.timeout = timeout
        self.on_change = on_change or (lambda kind: None)
        self.state = MonitorState(address=str(address))
        self.ctx: GraphSource | None = None
        self.undo_stack: list[tuple[str, str, Any]] = []  # (component, field path, value before)
        self._own_last_seq: dict[str, int] = {}  # component -> seq of this console's last change to it
        self.own_changes: set[tuple[str, int]] = set()
        """(server epoch, seq) of every settings change this console made: the history's "you"."""
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._refresh_topology = asyncio.Event()
        self._refresh_profiling = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()  # old connections closing (the loop keeps weak refs)
        self._topology_seq = 0
        self._settings_seq = 0
        self._last_peers: set[str] = set()  # sessions and processes in the last snapshot

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
            return True
        except (TimeoutError, asyncio.TimeoutError):
            return False

    async def stop(self) -> None:
        """Turn off the tracing this console turned on, then disconnect."""
        if self.ctx is not None and self.state.traced:
            processes = {t.process_id: t.unit_address for t in self.state.traced.values()}
            for unit in processes.values():
                try:
                    await self.ctx.process_set_profiling_trace(unit, ProfilingTraceControl(enabled=False),
                                                               timeout=1.0)
                except ConsoleError as exc:
                    log.debug("turning tracing off on %s: %s", unit, exc)
            self.state.traced.clear()
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
        if self.ctx is not None:
            await self.ctx.close()
            self.ctx = None

    def set_address(self, address: Any, backend: Backend | str | None = None) -> None:
        """Connect somewhere else (drops the current view); ``backend`` None: whichever answers."""
        self.address = address
        self.backend = Backend(backend) if backend else None
        self.version = ""
        self.state = MonitorState(address=str(address))
        self._topology_seq = self._settings_seq = 0
        if self.ctx is not None:
            closing = asyncio.ensure_future(self.ctx.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self._notify("connection")

    def refresh(self) -> None:
        """Poll profiling and stats now instead of at the next tick."""
        self._refresh_profiling.set()
        self._refresh_topology.set()

    def _notify(self, kind: str) -> None:
        try:
            self.on_change(kind)
        except Exception:  # noqa: BLE001 - a display bug must not stop the monitor
            log.exception("on_change(%s) failed", kind)

    # -- the connection loop ---------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        st = self.state
        while not self._stopping.is_set():
            try:
                if self.backend is None:
                    await self._detect()
                assert self.backend is not None
                ctx = make_source(self.backend, resolve_address(self.address), token=self.token, name=self.name,
                                  timeout=self.timeout, version=self.version)
                await ctx.open()
            except (ConsoleError, OSError, ValueError) as exc:  # ValueError: a bad address
                st = self.state
                st.attempts += 1
                st.last_error = connect_failure(exc)
                if st.down_since is None:
                    st.down_since = time.monotonic()
                self._notify("connection")
                try:
                    await asyncio.wait_for(self._stopping.wait(), backoff.next_delay())
                except (TimeoutError, asyncio.TimeoutError):
                    pass
                continue
            backoff.reset()
            self.ctx = ctx
            try:
                await self._session(ctx)
            except (ConsoleError, OSError) as exc:
                self.state.last_error = str(exc)
            finally:
                self.ctx = None
                self._connected.clear()
                await ctx.close()
            st = self.state
            if not self._stopping.is_set():
                st.conn_state = ConnState.RECONNECTING
                st.down_since = time.monotonic()
                st.attempts = 0
                self._notify("connection")

    async def _detect(self) -> None:
        """Which kind of GraphServer is at the address (it stays that kind across reconnects)."""
        found = await locate(resolve_address(self.address), self.token, timeout=min(self.timeout, 2.0))
        if found.backend is None:
            why = f" ({found.detail})" if found.detail else ""
            raise ServerUnreachable(f"no GraphServer answered at {found.address}{why}",
                                    {"address": str(found.address)})
        self.backend, self.version = found.backend, found.version
        self.state.warnings = found.warnings

    async def _session(self, ctx: GraphSource) -> None:
        st = self.state
        if ctx.server_epoch != st.server_epoch:  # a new server: nothing we know is current
            self._topology_seq = self._settings_seq = 0
            st.settings.clear()
            st.profiling.clear()
            if st.server_epoch:  # a restart: the old history is kept, as the previous epoch's
                st.previous_history = {k: tuple(v) for k, v in st.settings_history.items()}
                st.previous_epoch = st.server_epoch
                st.settings_history = {}
                self.undo_stack.clear()  # undo is of this console's changes on the server that took them
                self._own_last_seq.clear()
        st.server_epoch, st.session_id, st.server_label = ctx.server_epoch, ctx.session_id, ctx.server_label
        await self._load_topology(ctx)
        await self._load_settings(ctx, full=self._settings_seq == 0)
        topo = await ctx.subscribe_topology_events(after_seq=self._topology_seq)
        sets = await ctx.subscribe_settings_events(after_seq=self._settings_seq)
        trace = await ctx.subscribe_profiling_trace(ProfilingStreamControl(interval=0.1, max_samples=1000),
                                                    max_queue=256)
        st.conn_state, st.down_since, st.last_error = ConnState.CONNECTED, None, ""
        self._connected.set()
        self._notify("connection")
        tasks = [asyncio.ensure_future(c) for c in (
            self._pump(topo, self._on_topology), self._pump(sets, self._on_settings),
            self._pump(trace, self._on_trace), self._topology_refresher(ctx), self._poll_profiling(ctx),
            self._poll_stats(ctx), ctx.wait_disconnected())]
        try:
            done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(self, sub: Any, handle: Callable[[Any, GraphSource | None], Any]) -> None:
        while True:
            item = await sub.next(timeout=None)
            if item is None:
                raise ConnectionClosed("a push stream ended")
            result = handle(item, self.ctx)
            if asyncio.iscoroutine(result):
                await result

    # -- topology ----------------------------------------------------------

    async def _load_topology(self, ctx: GraphSource) -> None:
        snap = await ctx.snapshot()
        self.state.snapshot = snap
        self.state.data_time = time.time()
        self._topology_seq = max(self._topology_seq, snap.topology_seq)
        previous, self._last_peers = self._last_peers, (
            {s.session_id for s in snap.sessions} | {p.process_id for p in snap.processes})
        if previous - self._last_peers:
            # A session or a process left (a pipeline stopping): the server dropped the settings it
            # alone declared, without an event; its current state is the truth to show.
            await self._load_settings(ctx, full=False)
        self._notify("topology")

    def _on_topology(self, item: Any, _ctx: Any) -> None:
        if isinstance(item, TopologyEvent):
            self.state.topology_events.append(item)
            self._topology_seq = item.seq
        # An event or a gap: the snapshot is out of date either way.
        self._refresh_topology.set()

    async def _topology_refresher(self, ctx: GraphSource) -> None:
        while True:
            await self._refresh_topology.wait()
            self._refresh_topology.clear()
            await self._load_topology(ctx)
            await asyncio.sleep(0.05)  # coalesce bursts of events into one snapshot

    # -- settings ----------------------------------------------------------

    async def _load_settings(self, ctx: GraphSource, full: bool) -> None:
        st = self.state
        states = await ctx.settings_snapshot()
        previous = st.settings
        st.settings = {s.component_address: s for s in states}
        for address in list(st.stopped):  # a stopped unit: its last real value, not the initial one
            state, last = st.settings.get(address), previous.get(address)
            if state is None:
                del st.stopped[address]
            elif state.source_process_id is None and last is not None:
                st.settings[address] = dataclasses.replace(last, seq=state.seq)
        history = await ctx.settings_events(after_seq=0 if full else self._settings_seq)
        for event in history.events:
            self._remember(event)
        self._settings_seq = max([self._settings_seq, history.last_seq, *(s.seq for s in states)])
        for address, state in st.settings.items():
            st.initial_settings.setdefault(address, state.value.structured_value)
        st.data_time = time.time()
        self._notify("settings")

    def _remember(self, event: SettingsChangedEvent) -> None:
        st = self.state
        history = st.settings_history.setdefault(event.component_address, collections.deque(maxlen=200))
        if not history or history[-1].seq < event.seq:
            history.append(event)
        if event.event_type is SettingsEventType.INITIAL_SETTINGS:
            st.initial_settings[event.component_address] = event.value.structured_value

    async def _on_settings(self, item: Any, ctx: GraphSource | None) -> None:
        if isinstance(item, m.StreamGap):
            if ctx is not None:
                await self._load_settings(ctx, full=False)
            return
        event: SettingsChangedEvent = item
        previous = self.state.settings.get(event.component_address)
        if event.event_type is SettingsEventType.SETTINGS_UPDATED and event.source_process_id is None \
                and previous is not None and previous.source_process_id is not None:
            # Its owning process left, and the server fell back to the declared initial value: that
            # is no change anybody made. Keep showing the last real value, marked stopped.
            self.state.stopped[event.component_address] = time.time()
            self.state.settings[event.component_address] = dataclasses.replace(previous, seq=event.seq)
            self._settings_seq = max(self._settings_seq, event.seq)
            self._notify("settings")
            return
        if previous is not None and event.seq <= previous.seq:
            self._remember(event)  # older than what a settings snapshot already showed: history only
            return
        if event.source_process_id is not None:
            self.state.stopped.pop(event.component_address, None)
        self._remember(event)
        if event.event_type is SettingsEventType.INITIAL_SETTINGS and previous is not None \
                and previous.source_process_id is not None:
            # As on the server, a live value the owning process reported wins over a session's
            # (re-)declared initial one (a runner re-registering after a restart): keep showing it.
            self.state.settings[event.component_address] = dataclasses.replace(
                previous, metadata_session_id=event.source_session_id or previous.metadata_session_id)
        else:
            self.state.settings[event.component_address] = SettingsState(
                event.component_address, event.value,
                previous.metadata_session_id if previous else event.source_session_id,
                event.source_process_id, event.seq)
        self._settings_seq = max(self._settings_seq, event.seq)
        self.state.data_time = time.time()
        self._notify("settings")

    # -- profiling and processes --------------------------------------------

    async def _poll_profiling(self, ctx: GraphSource) -> None:
        while True:
            interval = max(0.1, self.profiling_interval)
            result = await ctx.profiling_snapshot_all(timeout_per_process=min(1.0, interval))
            st = self.state
            st.profiling = result
            st.profiling_time = st.data_time = time.time()  # profiling is data too (the header's age)
            for snap in result.values():
                if isinstance(snap, ProcessProfilingSnapshot) and snap.window_seconds > 0:
                    for p in snap.publishers:
                        self._history(st.rate_history, p.endpoint_id).append(p.publish_rate_hz_window)
                    for s in snap.subscribers:
                        self._history(st.rate_history, s.endpoint_id).append(s.receive_rate_hz_window)
                        self._history(st.latency_history, s.endpoint_id).append(s.latency_ns_window.p50_ns)
            self._expire_traces()
            self._notify("profiling")
            self._refresh_profiling.clear()
            try:
                await asyncio.wait_for(self._refresh_profiling.wait(), interval)
            except (TimeoutError, asyncio.TimeoutError):
                pass

    @staticmethod
    def _history(table: dict[str, collections.deque[float]], key: str) -> collections.deque[float]:
        if key not in table:
            table[key] = collections.deque(maxlen=HISTORY)
        return table[key]

    async def _poll_stats(self, ctx: GraphSource) -> None:
        while True:
            snap = self.state.snapshot
            targets = [(p.process_id, sorted(p.units)[0]) for p in (snap.processes if snap else ()) if p.units]

            async def ask(unit: str) -> dict[str, Any] | None:
                try:
                    return await ctx.process_stats(unit, timeout=1.0)
                except ConnectionClosed:
                    raise
                except ConsoleError as exc:
                    return {"error": str(exc)}

            results = await asyncio.gather(*(ask(unit) for _pid, unit in targets))
            self.state.process_stats = {pid: r for (pid, _unit), r in zip(targets, results) if r is not None}
            self._notify("processes")
            await asyncio.sleep(STATS_INTERVAL_S)

    # -- tracing -------------------------------------------------------------

    def _on_trace(self, item: Any, _ctx: Any) -> None:
        if not isinstance(item, ProfilingTraceEvent):
            return
        wanted = self.state.traced
        added = False
        for batch in item.batches:
            if batch.n_samples and wanted:
                samples = batch.select(wanted)  # objects are built only for the traced endpoints
                if samples:
                    self.state.trace_samples.extend(samples)
                    added = True
        if added:
            self._notify("trace")

    def _expire_traces(self) -> None:
        now = time.monotonic()
        for endpoint_id in [e for e, t in self.state.traced.items() if t.expires_mono <= now]:
            del self.state.traced[endpoint_id]
            self._notify("trace")

    async def set_trace(self, endpoint_id: str, on: bool, ttl_seconds: float = TRACE_TTL_S) -> None:
        """Trace one endpoint (or stop). Other endpoints this console traces in the same
        process stay traced: a process has one trace control, so it is rebuilt here."""
        ctx = self._mutable()
        found = self._endpoint(endpoint_id)
        if found is None:
            raise ConsoleError(f"no endpoint {endpoint_id} in the current profiling data")
        process_id, unit, topic, is_pub = found
        traced = self.state.traced
        if on:
            traced[endpoint_id] = Traced(endpoint_id, topic, unit, process_id, is_pub, time.monotonic() + ttl_seconds)
        else:
            traced.pop(endpoint_id, None)
        mine = [t for t in traced.values() if t.process_id == process_id]
        if mine:
            control = ProfilingTraceControl(
                enabled=True,
                publisher_endpoint_ids=tuple(t.endpoint_id for t in mine if t.publisher) or MATCH_NONE,
                subscriber_endpoint_ids=tuple(t.endpoint_id for t in mine if not t.publisher) or MATCH_NONE,
                ttl_seconds=max(t.expires_mono for t in mine) - time.monotonic())
        else:
            control = ProfilingTraceControl(enabled=False)
        try:
            await ctx.process_set_profiling_trace(unit, control)
        except ConsoleError:
            if on:
                traced.pop(endpoint_id, None)
            raise
        finally:
            self._notify("trace")

    def _endpoint(self, endpoint_id: str) -> tuple[str, str, str, bool] | None:
        """(process id, a unit of that process, topic, is publisher) of a profiled endpoint."""
        snap = self.state.snapshot
        units = {p.process_id: sorted(p.units)[0] for p in (snap.processes if snap else ()) if p.units}
        for process_id, prof in self.state.profiling.items():
            if not isinstance(prof, ProcessProfilingSnapshot) or process_id not in units:
                continue
            for p in prof.publishers:
                if p.endpoint_id == endpoint_id:
                    return process_id, units[process_id], p.topic, True
            for s in prof.subscribers:
                if s.endpoint_id == endpoint_id:
                    return process_id, units[process_id], s.topic, False
        return None

    # -- settings edits ------------------------------------------------------

    def _mutable(self) -> GraphSource:
        if self.read_only:
            raise PermissionDenied("the console is read-only (started with --read-only)")
        if self.ctx is None or self.state.stale:
            raise ConnectionClosed(f"not connected to the GraphServer at {self.address}")
        return self.ctx

    async def update_setting(self, component: str, field_path: str, value: Any, *,
                             expected_seq: int | None = None, record_undo: bool = True) -> dict[str, Any]:
        ctx = self._mutable()
        before = self.state.settings.get(component)
        reply = await ctx.update_setting(component, field_path, value, expected_seq=expected_seq)
        seq = reply.get("seq") if isinstance(reply, dict) else None
        if isinstance(seq, int):
            self._own_last_seq[component] = seq
            self.own_changes.add((self.state.server_epoch, seq))  # "you": by request, per server epoch
        if record_undo and before is not None:
            self.undo_stack.append((component, field_path, at_path(before.value.structured_value, field_path)))
        return reply

    async def undo(self) -> Undone | None:
        """Revert the last edit made from this console (None if there is none). Like every edit it
        carries the seq it expects, that of this console's own last change to the component, so if
        anyone changed the component since, it is refused (Conflict) instead of overwriting them."""
        if not self.undo_stack:
            return None
        component, path, value = self.undo_stack[-1]
        expected = self._own_last_seq.get(component)
        reply = await self.update_setting(component, path, value, expected_seq=expected, record_undo=False)
        self.undo_stack.pop()
        seq = reply.get("seq") if isinstance(reply, dict) else None
        return Undone(component, path, value, seq if isinstance(seq, int) else None)

