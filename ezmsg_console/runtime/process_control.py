"""ProcessControlClient: a worker's side of the process control plane.

It registers the worker's ``(pid, host, units)`` on the worker's ``process``
connection and answers the requests the GraphServer routes to it. Built in:
``PING`` and ``GET_PROCESS_STATS``; the runtime installs more operations
(``UPDATE_SETTING_FIELD``) with :meth:`set_operation`, and any other
operation goes to the handler given to :meth:`set_request_handler`. Each
request runs in its own task, so a slow handler delays nothing else.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import resource
import socket
import time
from typing import Any, Callable

from ..client.connection import ClientConnection
from ..protocol import messages as m
from ..protocol.errors import ConsoleError
from ..protocol.process import (
    ErrorCode,
    Operation,
    ProcessRegister,
    ProcessUpdateOwnership,
    RoutedRequest,
    RoutedResponse,
)

log = logging.getLogger(__name__)

OperationFn = Callable[[RoutedRequest], Any]
"""An operation: takes the routed request, returns the success payload (or awaits it);
raises a ConsoleError whose code becomes the error code."""

ACK_TIMEOUT = 5.0


class ProcessControlClient:
    def __init__(self, conn: ClientConnection, stats: Callable[[], dict[str, Any]] | None = None) -> None:
        self.conn = conn
        self.units: list[str] = []
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.monotonic()
        self._stats = stats
        self._operations: dict[str, OperationFn] = {
            Operation.PING.value: self._ping,
            Operation.GET_PROCESS_STATS.value: self._process_stats,
        }
        self._handler: Callable[[str, str, Any], Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cpu_mark = (time.monotonic(), self._cpu_seconds())
        conn.add_handler(RoutedRequest, self._on_request)

    @property
    def process_id(self) -> str:
        return self.conn.welcome.peer_id

    async def rejoin(self, conn: ClientConnection) -> None:
        """Take over a new connection (the GraphServer restarted) and claim our units again."""
        self.conn = conn
        conn.add_handler(RoutedRequest, self._on_request)
        await self.register(self.units)

    async def register(self, units: list[str] | tuple[str, ...]) -> None:
        """Claim ``units`` (sorted, de-duplicated); raises OwnershipConflict naming their owners."""
        wanted = tuple(sorted(set(units)))
        await self.conn.request(lambda rid: ProcessRegister(rid, self.pid, self.host, wanted), m.Ack, ACK_TIMEOUT)
        self.units = list(wanted)

    async def update_ownership(self, added_units: tuple[str, ...] = (), removed_units: tuple[str, ...] = ()) -> None:
        await self.conn.request(lambda rid: ProcessUpdateOwnership(rid, tuple(added_units), tuple(removed_units)),
                                m.Ack, ACK_TIMEOUT)
        self.units = sorted((set(self.units) | set(added_units)) - set(removed_units))

    def set_operation(self, operation: str, fn: OperationFn) -> None:
        self._operations[operation] = fn

    def set_request_handler(self, handler: Callable[[str, str, Any], Any] | None) -> None:
        """``handler(unit_address, operation, payload)`` (sync or async) answers every other operation."""
        self._handler = handler

    # -- answering -------------------------------------------------------

    def _on_request(self, msg: RoutedRequest) -> None:
        task = asyncio.ensure_future(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: RoutedRequest) -> None:
        try:
            payload = await self._run(msg)
            reply = RoutedResponse(msg.route_id, ok=True, payload=payload)
        except OperationRefused as exc:
            reply = RoutedResponse(msg.route_id, ok=False, error=exc.message, error_code=exc.code.value)
        except ConsoleError as exc:
            reply = RoutedResponse(msg.route_id, ok=False, error=exc.message, error_code=exc.code,
                                   details=dict(exc.details))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the handler's failure is the caller's answer
            log.warning("handler for %s on %s raised %s: %s", msg.operation, msg.unit_address,
                        type(exc).__name__, exc)
            reply = RoutedResponse(msg.route_id, ok=False, error=f"{type(exc).__name__}: {exc}",
                                   error_code=ErrorCode.HANDLER_ERROR.value)
        if not self.conn.closed:
            self.conn.send(reply)

    async def _run(self, msg: RoutedRequest) -> Any:
        fn = self._operations.get(msg.operation)
        if fn is not None:
            result = fn(msg)
        elif self._handler is None:
            raise OperationRefused(ErrorCode.HANDLER_NOT_CONFIGURED,
                           f"no handler is installed for operation {msg.operation!r}")
        else:
            result = self._handler(msg.unit_address, msg.operation, msg.payload)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- built-in operations ---------------------------------------------

    def _ping(self, msg: RoutedRequest) -> dict[str, Any]:
        return {"process_id": self.process_id, "pid": self.pid, "host": self.host, "timestamp": time.time()}

    @staticmethod
    def _cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def _process_stats(self, msg: RoutedRequest) -> dict[str, Any]:
        now, cpu = time.monotonic(), self._cpu_seconds()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        return {
            "process_id": self.process_id,
            "pid": self.pid,
            "host": self.host,
            "owned_units": list(self.units),
            "uptime_s": now - self.started,
            "cpu_percent": 100.0 * (cpu - cpu_then) / (now - then) if now > then else 0.0,
            "cpu_seconds": cpu,
            "memory_rss_bytes": _rss_bytes(),
            "topics": self._stats() if self._stats is not None else {},
            "timestamp": time.time(),
        }


class OperationRefused(Exception):
    """Raise in an operation to answer with ``code`` (e.g. UNSUPPORTED_OPERATION)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

