"""Process control messages: registration, ownership, routed requests.

A worker's ``process`` connection registers ``(pid, host, units)``; the
GraphServer enforces that each unit has one owner. A session's
:class:`ProcessRequest` names a unit; the server forwards it to the owning
process as :class:`RoutedRequest` (with its own ``route_id`` and the
deadline left) and relays the :class:`RoutedResponse` back as a
:class:`ProcessControlResponse`. Routing failures are responses with
``ok=False`` and a stable ``error_code``, never exceptions.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .messages import Reply, Request
from .wire import Message


class ErrorCode(str, enum.Enum):
    UNROUTABLE_UNIT = "UNROUTABLE_UNIT"
    ROUTE_WRITE_FAILED = "ROUTE_WRITE_FAILED"
    TIMEOUT = "TIMEOUT"
    PROCESS_DISCONNECTED = "PROCESS_DISCONNECTED"
    UNSUPPORTED_OPERATION = "UNSUPPORTED_OPERATION"
    HANDLER_NOT_CONFIGURED = "HANDLER_NOT_CONFIGURED"
    HANDLER_ERROR = "HANDLER_ERROR"
    INVALID_RESPONSE = "INVALID_RESPONSE"
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_VALUE = "INVALID_VALUE"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    CONFLICT = "CONFLICT"


class Operation(str, enum.Enum):
    PING = "PING"
    GET_PROCESS_STATS = "GET_PROCESS_STATS"
    UPDATE_SETTING_FIELD = "UPDATE_SETTING_FIELD"
    UPDATE_SETTINGS = "UPDATE_SETTINGS"
    GET_PROFILING_SNAPSHOT = "GET_PROFILING_SNAPSHOT"
    SET_PROFILING_TRACE = "SET_PROFILING_TRACE"
    GET_PROFILING_TRACE_BATCH = "GET_PROFILING_TRACE_BATCH"


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessRegister(Request):
    """Replace this process's pid, host and whole unit set."""

    KIND = "PROCESS_REGISTER"
    pid: int
    host: str
    units: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessUpdateOwnership(Request):
    """Add, then remove units (a unit in both ends up removed)."""

    KIND = "PROCESS_UPDATE_OWNERSHIP"
    added_units: tuple[str, ...] = ()
    removed_units: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessRequest(Request):
    """Session -> server: route ``operation`` to the process owning ``unit_address``."""

    KIND = "PROCESS_REQUEST"
    unit_address: str
    operation: str
    payload: Any = None
    timeout: float = 2.0
    expected_seq: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessControlResponse(Reply):
    """Server -> session: the owner's answer, or a routing failure (``ok=False``)."""

    KIND = "PROCESS_CONTROL_RESPONSE"
    ok: bool
    payload: Any = None
    error: str | None = None
    error_code: str | None = None
    process_id: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class RoutedRequest(Message):
    """Server -> owning process."""

    KIND = "PROCESS_ROUTE_REQUEST"
    route_id: str
    unit_address: str
    operation: str
    payload: Any = None
    source_session_id: str | None = None
    timeout: float = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class RoutedResponse(Message):
    """Owning process -> server."""

    KIND = "PROCESS_ROUTE_RESPONSE"
    route_id: str
    ok: bool
    payload: Any = None
    error: str | None = None
    error_code: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
