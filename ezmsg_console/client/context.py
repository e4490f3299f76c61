"""GraphContext: the typed client API of the GraphServer.

::

    async with GraphContext("127.0.0.1:25970") as ctx:
        await ctx.connect("SRC/OUT", "SINK/IN")
        print((await ctx.snapshot()).edges)
        async for event in ctx.subscribe_topology_events(after_seq=0):
            print(event)

Every call has a deadline (``timeout=``, default the context's). When the
connection is lost, calls waiting on it fail with :class:`ConnectionClosed`.
The session's edges and metadata are dropped by the server when the context
closes (or on :meth:`revert`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any, Callable, TypeVar

from ..protocol import messages as m
from ..protocol import wire
from ..protocol.address import Address, resolve_address, resolve_token
from ..protocol.errors import ConnectionClosed, ConsoleError, DecodeError, InvalidValue, ServerUnreachable
from ..protocol.graph import GraphMetadata, GraphSnapshot
from ..protocol.process import ErrorCode, Operation, ProcessControlResponse, ProcessRequest
from ..protocol.profiling import (
    ProcessProfilingSnapshot,
    ProfilingError,
    ProfilingStreamControl,
    ProfilingSubscribe,
    ProfilingTraceBatch,
    ProfilingTraceControl,
)
from ..protocol.settings import (
    SettingsEventsReply,
    SettingsEventsRequest,
    SettingsSnapshotReply,
    SettingsSnapshotRequest,
    SettingsState,
)
from ..settings.values import to_plain
from .connection import ClientConnection, process_error
from .streams import EventSubscription, StreamReceiver

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
ROUTE_MARGIN = 2.0
"""Extra client-side wait beyond a routed request's timeout, so the server's TIMEOUT answer arrives first."""


class GraphContext:
    """A session on a GraphServer.

    ``address``: ``host:port``, or None for ``$EZMSG_CONSOLE_ADDRESS`` or the
    default ``127.0.0.1:25970``. ``auto_start=True`` starts an embedded
    GraphServer (in a background thread of this process) when none answers,
    and stops it when the context closes. ``token`` (or
    ``$EZMSG_CONSOLE_TOKEN``) authenticates against a server that has one.
    """

    backend = "native"
    """Which kind of GraphServer this talks to (see :mod:`.source`)."""

    def __init__(self, address: str | Address | tuple[str, int] | None = None, *, auto_start: bool = False,
                 token: str | None = None, name: str | None = None, role: m.Role = m.Role.SESSION,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self._requested_address = address
        self.auto_start = auto_start
        self._token = token
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.role = role
        self.timeout = timeout
        self.address: Address | None = None
        self.embedded_server: Any = None  # a GraphServer when auto_start started one
        self._conn: ClientConnection | None = None
        self._endpoints: Any = None  # pubsub.script.ScriptEndpoints, once a script asks for one

    # -- lifecycle -------------------------------------------------------

    async def __aenter__(self) -> GraphContext:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect (starting an embedded server first if allowed and needed)."""
        if self._conn is not None:
            return
        address = resolve_address(self._requested_address)
        token = resolve_token(self._token)
        try:
            self._conn = await ClientConnection.open(address, role=self.role, name=self.name, token=token,
                                                     timeout=self.timeout)
        except ServerUnreachable:
            if not self.auto_start:
                raise
            from ..server import GraphServer  # only needed, and imported, for auto_start

            server = GraphServer(address, token=token)
            address = server.start_in_thread(self.timeout)
            self.embedded_server = server
            self._conn = await ClientConnection.open(address, role=self.role, name=self.name, token=token,
                                                     timeout=self.timeout)
        self.address = address

    async def close(self) -> None:
        """Close the session (and this script's endpoints); the server drops its edges and metadata."""
        endpoints, self._endpoints = self._endpoints, None
        if endpoints is not None:
            await endpoints.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        server, self.embedded_server = self.embedded_server, None
        if server is not None:
            server.stop_thread()

    # -- data endpoints for scripts ----------------------------------------

    async def publisher(self, topic: str, **options: Any) -> Any:
        """A :class:`~ezmsg_console.pubsub.publisher.Publisher` on ``topic`` for this script (as
        ezmsg's ``GraphContext.publisher``): ``await pub.broadcast(msg)``; wire it with
        :meth:`connect`. Options as ``OutputStream``'s (``num_buffers``, ``buf_size``, ``force_tcp``).
        Closed with the context."""
        return await (await self._script_endpoints()).publisher(topic, **options)

    async def subscriber(self, topic: str, **options: Any) -> Any:
        """A :class:`~ezmsg_console.pubsub.subscriber.Subscriber` on ``topic``: ``await sub.recv()``.
        Options as ``InputStream``'s (``msg_type``, ``leaky``, ``max_queue``, ``zero_copy``)."""
        return await (await self._script_endpoints()).subscriber(topic, **options)

    async def _script_endpoints(self) -> Any:
        if self._endpoints is None:
            self.connection  # noqa: B018 - raises unless connected
            from ..pubsub.script import ScriptEndpoints  # the data plane, loaded only for scripts that use it

            self._endpoints = ScriptEndpoints(self.address, token=resolve_token(self._token), name=self.name,
                                              timeout=self.timeout)
        return self._endpoints

    async def wait_disconnected(self) -> None:
        """Return when the connection to the server is gone (at once if it already is)."""
        if self._conn is not None:
            await self._conn.wait_closed()

    @property
    def connection(self) -> ClientConnection:
        if self._conn is None:
            raise ConnectionClosed("this GraphContext is not connected; use `async with GraphContext(...)`")
        if self._conn.closed:
            raise self._conn.close_error or ConnectionClosed("connection closed")
        return self._conn

    @property
    def session_id(self) -> str:
        return self.connection.welcome.peer_id

    @property
    def server_epoch(self) -> str:
        return self.connection.welcome.server_epoch

    @property
    def server_label(self) -> str:
        """What the console header calls the server: the backend and its wire protocol version."""
        return f"native p{self.connection.welcome.protocol_version}"

    @property
    def server_id(self) -> str:
        return self.connection.welcome.server_id

    def _t(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    # -- requests --------------------------------------------------------

    async def ping(self, timeout: float | None = None) -> float:
        """Round-trip time to the server, in seconds."""
        start = time.perf_counter()
        await self.connection.request(m.PingRequest, m.Pong, self._t(timeout))
        return time.perf_counter() - start

    async def sync(self, timeout: float | None = None) -> None:
        """Return once the server has handled every earlier request of this session."""
        await self.connection.request(m.SyncRequest, m.Ack, self._t(timeout))

    async def snapshot(self, timeout: float | None = None) -> GraphSnapshot:
        reply = await self.connection.request(m.SnapshotRequest, m.SnapshotReply, self._t(timeout))
        return reply.snapshot

    async def connect(self, from_topic: str, to_topic: str, *, persistent: bool = False,
                      timeout: float | None = None) -> None:
        """Add an edge owned by this session (or by nobody, if ``persistent``).

        Raises CycleError (and nothing changes) for a self-loop or a cycle.
        """
        await self.connection.request(lambda rid: m.ConnectEdge(rid, from_topic, to_topic, persistent),
                                      m.Ack, self._t(timeout))

    async def disconnect(self, from_topic: str, to_topic: str, *, persistent: bool = False,
                         timeout: float | None = None) -> None:
        """Remove this session's ownership of the edge (a no-op if it has none)."""
        await self.connection.request(lambda rid: m.DisconnectEdge(rid, from_topic, to_topic, persistent),
                                      m.Ack, self._t(timeout))

    async def register_metadata(self, metadata: GraphMetadata, timeout: float | None = None) -> None:
        """Declare this session's components; replaces what it declared before.

        Raises AddressCollision, naming every address another session holds.
        """
        await self.connection.request(lambda rid: m.RegisterMetadata(rid, metadata), m.Ack, self._t(timeout))

    async def revert(self, timeout: float | None = None) -> None:
        """Drop this session's edges and metadata, keeping the connection."""
        await self.connection.request(m.ClearSession, m.Ack, self._t(timeout))

    async def shutdown_server(self, timeout: float | None = None) -> None:
        """Ask the server to stop (honoured from loopback only)."""
        await self.connection.request(m.ShutdownRequest, m.Ack, self._t(timeout))

    # -- process control -------------------------------------------------

    async def process_request(self, unit_address: str, operation: str, payload: Any = None, *,
                              timeout: float = 2.0, expected_seq: int | None = None) -> ProcessControlResponse:
        """Route ``operation`` to the process that owns ``unit_address``.

        Never raises for routing failures: the response has ``ok=False`` and an
        ``error_code`` (UNROUTABLE_UNIT, TIMEOUT, PROCESS_DISCONNECTED, ...).
        """
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        return await self.connection.request(
            lambda rid: ProcessRequest(rid, unit_address, operation, payload, timeout, expected_seq),
            ProcessControlResponse, timeout + ROUTE_MARGIN)

    async def _checked(self, unit_address: str, operation: str, payload: Any = None, *, timeout: float = 2.0,
                       expected_seq: int | None = None) -> dict[str, Any]:
        response = await self.process_request(unit_address, operation, payload, timeout=timeout,
                                              expected_seq=expected_seq)
        if not response.ok:
            raise process_error(response)
        answer: dict[str, Any] = response.payload  # these operations answer a map
        return answer

    async def process_ping(self, unit_address: str, *, timeout: float = 2.0) -> dict[str, Any]:
        """PING the process owning ``unit_address``: process_id, pid, host, timestamp."""
        return await self._checked(unit_address, Operation.PING.value, timeout=timeout)

    async def process_stats(self, unit_address: str, *, timeout: float = 2.0) -> dict[str, Any]:
        """Pid, host, owned units, uptime, CPU, memory and message counts of the owning process,
        plus ``ping_ms``: the round trip of this request (server, process and back)."""
        start = time.perf_counter()
        stats = await self._checked(unit_address, Operation.GET_PROCESS_STATS.value, timeout=timeout)
        return {**stats, "ping_ms": (time.perf_counter() - start) * 1000.0}

    # -- profiling -------------------------------------------------------

    async def _checked_as(self, tp: type[T], unit_address: str, operation: str, payload: Any = None, *,
                          timeout: float = 2.0) -> T:
        response = await self.process_request(unit_address, operation, payload, timeout=timeout)
        if not response.ok:
            raise process_error(response)
        return _decode_payload(tp, response, unit_address, operation)

    async def process_profiling_snapshot(self, unit_address: str, *, timeout: float = 2.0) -> ProcessProfilingSnapshot:
        """Counters, rates and histograms of the process owning ``unit_address``.

        Each ``*_window`` covers the time since *this session's* previous
        snapshot of that process (``window_seconds`` is 0.0 the first time).
        Raises ProcessUnavailable / RequestTimeout-coded errors like the other
        process calls, and DecodeError (details ``error_code`` INVALID_RESPONSE)
        if the process answers with something that is not a snapshot.
        """
        return await self._checked_as(ProcessProfilingSnapshot, unit_address,
                                      Operation.GET_PROFILING_SNAPSHOT.value, None, timeout=timeout)

    async def process_set_profiling_trace(self, unit_address: str, control: ProfilingTraceControl, *,
                                          timeout: float = 2.0) -> dict[str, Any]:
        """Turn tracing of the owning process on or off, or change its filters.

        Every call clears the process's trace buffers and sampling counters.
        Returns the process's description of the new trace state (plain data).
        """
        return await self._checked(unit_address, Operation.SET_PROFILING_TRACE.value, wire.to_wire(control),
                                   timeout=timeout)

    async def process_profiling_trace_batch(self, unit_address: str, max_samples: int = 1000, *,
                                            timeout: float = 2.0) -> ProfilingTraceBatch:
        """Drain up to ``max_samples`` trace samples straight from the owning process.

        This reads the same ring the process pushes to the GraphServer from, so
        it races :meth:`subscribe_profiling_trace`; prefer the stream when more
        than one observer is interested.
        """
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples must be an int >= 1, got {max_samples!r}")
        return await self._checked_as(ProfilingTraceBatch, unit_address, Operation.GET_PROFILING_TRACE_BATCH.value,
                                      {"max_samples": max_samples}, timeout=timeout)

    async def profiling_snapshot_all(
            self, timeout_per_process: float = 0.5) -> dict[str, ProcessProfilingSnapshot | ProfilingError]:
        """A profiling snapshot of every process that owns units, asked concurrently.

        Each process is asked through its first unit (sorted) with
        ``timeout_per_process``, so the call takes about that long at most.
        The result maps *every* such process id to its snapshot or, if it did
        not answer properly, to a :class:`ProfilingError` with the error code
        (TIMEOUT, PROCESS_DISCONNECTED, HANDLER_ERROR, INVALID_RESPONSE, ...).
        Only a lost connection to the GraphServer raises.
        """
        if not timeout_per_process > 0:
            raise ValueError("timeout_per_process must be > 0")
        snapshot = await self.snapshot()
        targets = [(p.process_id, sorted(p.units)[0]) for p in snapshot.processes if p.units]

        async def ask(process_id: str, unit: str) -> ProcessProfilingSnapshot | ProfilingError:
            op = Operation.GET_PROFILING_SNAPSHOT.value
            try:
                response = await self.process_request(unit, op, timeout=timeout_per_process)
                if not response.ok:
                    code = response.error_code or ErrorCode.INVALID_RESPONSE.value
                    return ProfilingError(process_id, code, response.error or code)
                return _decode_payload(ProcessProfilingSnapshot, response, unit, op)
            except ConnectionClosed:
                raise
            except ConsoleError as exc:
                return ProfilingError(process_id, exc.details.get("error_code", exc.code), exc.message)

        results = await asyncio.gather(*(ask(pid, unit) for pid, unit in targets))
        return {pid: result for (pid, _unit), result in zip(targets, results)}

    def subscribe_profiling_trace(self, control: ProfilingStreamControl | None = None, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> EventSubscription:
        """Trace samples of every process (or ``control.process_ids``), pushed by the GraphServer.

        Yields :class:`ProfilingTraceEvent` every ``control.interval`` seconds
        that something is new, one batch per process, or a StreamGap when this
        reader fell behind and events were lost. A batch's ``gap_from``/``gap_to``
        name that process's samples skipped because the server no longer had
        them. Streams do not take samples from each other. Raises
        InvalidRequest for a bad control (interval <= 0, max_samples < 1).
        """
        control = control if control is not None else ProfilingStreamControl()
        return self._open_stream(lambda rid: ProfilingSubscribe(rid, control), max_queue, timeout)

    # -- streams ---------------------------------------------------------

    def _open_stream(self, build: Callable[[int], m.Request], max_queue: int,
                     timeout: float | None) -> EventSubscription:
        async def open_stream(receiver: StreamReceiver) -> ClientConnection:
            conn = self.connection
            await conn.request(build, m.Subscribed, self._t(timeout), stream=receiver)
            return conn

        return EventSubscription(open_stream, max_queue)

    def _subscribe(self, kind: m.StreamKind, after_seq: int | None, max_queue: int,
                   timeout: float | None) -> EventSubscription:
        start_after = -1 if after_seq is None else after_seq
        return self._open_stream(lambda rid: m.Subscribe(rid, kind, start_after), max_queue, timeout)

    def subscribe_topology_events(self, after_seq: int | None = 0, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> EventSubscription:
        """Topology events after ``after_seq`` (retained history first, then live).

        ``after_seq=None`` means live events only. ``await`` the result to
        subscribe at once, or iterate it with ``async for``.
        """
        return self._subscribe(m.StreamKind.TOPOLOGY, after_seq, max_queue, timeout)

    # -- settings --------------------------------------------------------

    async def settings_snapshot(self, timeout: float | None = None) -> tuple[SettingsState, ...]:
        """Every component's current settings (value, schema, declaring session, reporting process, seq)."""
        reply = await self.connection.request(SettingsSnapshotRequest, SettingsSnapshotReply, self._t(timeout))
        return reply.states

    async def settings_events(self, after_seq: int = 0, timeout: float | None = None) -> SettingsEventsReply:
        """Retained settings events after ``after_seq``; ``gap_from``/``gap_to`` name lost ones."""
        return await self.connection.request(lambda rid: SettingsEventsRequest(rid, after_seq), SettingsEventsReply,
                                             self._t(timeout))

    def subscribe_settings_events(self, after_seq: int | None = 0, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> EventSubscription:
        """Settings events after ``after_seq`` (history, then live), with gap markers like topology."""
        return self._subscribe(m.StreamKind.SETTINGS, after_seq, max_queue, timeout)

    async def update_setting(self, component_address: str, field_path: str, value: Any, *,
                             expected_seq: int | None = None, timeout: float = 2.0) -> dict[str, Any]:
        """Change one field (dotted path) of a unit's settings, in the process that owns it.

        Returns ``{"value": <the applied settings>, "seq": <the event's seq>}``.
        Raises InvalidValue / UnknownField (naming the path and what was
        expected), Conflict (``expected_seq`` is stale), InvalidRequest, or
        ProcessUnavailable; nothing changes when it raises.
        """
        _check_sendable(field_path, value)
        return await self._checked(component_address, Operation.UPDATE_SETTING_FIELD.value,
                                   {"field_path": field_path, "value": value}, timeout=timeout,
                                   expected_seq=expected_seq)

    async def update_settings(self, component_address: str, value: Any, *, timeout: float = 2.0) -> dict[str, Any]:
        """Replace a unit's whole settings (a settings object or its field dict), validated first,
        delivered through the unit's INPUT_SETTINGS stream."""
        return await self._checked(component_address, Operation.UPDATE_SETTINGS.value, {"value": to_plain(value)},
                                   timeout=timeout)


_INT_RANGE = (-(2**63), 2**64 - 1)


def _check_sendable(field_path: str, value: Any, depth: int = 0) -> None:
    """InvalidValue, naming the field, for a value the wire cannot carry (an integer outside 64 bits),
    instead of an encoding error that names nothing."""
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        shown = str(value) if len(str(value)) <= 40 else f"{str(value)[:37]}..."
        path = field_path if isinstance(field_path, str) and field_path.isprintable() and len(field_path) <= 256 \
            else repr(field_path)[:80]
        raise InvalidValue(f"{path}: {shown} does not fit in 64 bits (integers travel between -2**63 and "
                           "2**64-1)", {"field_path": path, "got": shown, "reason": "int_range"})
    if depth < 32 and isinstance(value, (list, tuple)):
        for item in value:
            _check_sendable(field_path, item, depth + 1)
    elif depth < 32 and isinstance(value, dict):
        for item in value.values():
            _check_sendable(field_path, item, depth + 1)


def _decode_payload(tp: type[T], response: ProcessControlResponse, unit_address: str, operation: str) -> T:
    """A routed answer's payload as ``tp``; DecodeError (error_code INVALID_RESPONSE) if it is not one."""
    try:
        return wire.from_wire(tp, response.payload)  # type: ignore[no-any-return]
    except DecodeError as exc:
        raise DecodeError(
            f"Process request failed ({ErrorCode.INVALID_RESPONSE.value}): the {operation} answer for "
            f"{unit_address} is not a {tp.__name__}: {exc.message}",
            {**exc.details, "error_code": ErrorCode.INVALID_RESPONSE.value, "process_id": response.process_id,
             "unit_address": unit_address},
        ) from None
