"""Routed requests: session -> server -> owning process -> server -> session.

Each routed request gets a ``route_id``, a future and a deadline (the
caller's timeout). Every way it can end is an answer with a stable code:
no owner (UNROUTABLE_UNIT), the owner's queue refused it
(ROUTE_WRITE_FAILED), no answer in time (TIMEOUT), the owner went away
(PROCESS_DISCONNECTED), or an answer from the wrong process
(INVALID_RESPONSE). A reply arriving after its deadline finds no entry and
is dropped. Waiting on one process never delays requests to another: each
request is its own task and nothing holds a lock across the wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import Any, Callable

from ..protocol.process import ErrorCode, ProcessControlResponse, ProcessRequest, RoutedRequest, RoutedResponse
from ..protocol.wire import Message

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Pending:
    owner_id: str
    future: asyncio.Future[RoutedResponse | ErrorCode]


def failure(request_id: int, code: ErrorCode, message: str, process_id: str | None = None,
            details: dict[str, Any] | None = None) -> ProcessControlResponse:
    return ProcessControlResponse(request_id, ok=False, error=message, error_code=code.value,
                                  process_id=process_id, details=details or {})


class Router:
    """Pending routed requests and their resolution."""

    def __init__(self, send_to_peer: Callable[[str, Message], bool]) -> None:
        self._send = send_to_peer
        self._pending: dict[str, _Pending] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def route(self, owner_id: str | None, source_session_id: str, req: ProcessRequest,
                    payload: object = None) -> ProcessControlResponse:
        """Forward ``req`` to ``owner_id`` and wait (at most ``req.timeout``) for its answer."""
        if owner_id is None:
            return failure(req.request_id, ErrorCode.UNROUTABLE_UNIT, f"No process owns unit '{req.unit_address}'")
        route_id = uuid.uuid4().hex
        future: asyncio.Future[RoutedResponse | ErrorCode] = asyncio.get_running_loop().create_future()
        self._pending[route_id] = _Pending(owner_id, future)
        try:
            routed = RoutedRequest(route_id, req.unit_address, req.operation,
                                   req.payload if payload is None else payload, source_session_id, req.timeout)
            if not self._send(owner_id, routed):
                return failure(req.request_id, ErrorCode.ROUTE_WRITE_FAILED,
                               f"Could not send the request to process {owner_id}", owner_id)
            try:
                answer = await asyncio.wait_for(asyncio.shield(future), req.timeout)
            except (TimeoutError, asyncio.TimeoutError):
                return failure(
                    req.request_id, ErrorCode.TIMEOUT,
                    f"Timed out waiting for process response (unit={req.unit_address}, "
                    f"operation={req.operation}, timeout={req.timeout:g}s)", owner_id)
        finally:
            self._pending.pop(route_id, None)
        if isinstance(answer, ErrorCode):
            if answer is ErrorCode.PROCESS_DISCONNECTED:
                return failure(req.request_id, answer, "Owning process disconnected before response", owner_id)
            return failure(req.request_id, answer, "The response came from a process that does not own the unit",
                           owner_id)
        return ProcessControlResponse(req.request_id, ok=answer.ok, payload=answer.payload, error=answer.error,
                                      error_code=answer.error_code, process_id=owner_id, details=answer.details)

    def resolve(self, from_peer_id: str, msg: RoutedResponse) -> None:
        """A process answered; late or unknown answers are dropped."""
        entry = self._pending.get(msg.route_id)
        if entry is None or entry.future.done():
            log.info("dropping late or unknown routed response %s from %s", msg.route_id, from_peer_id)
            return
        if entry.owner_id != from_peer_id:
            entry.future.set_result(ErrorCode.INVALID_RESPONSE)
            return
        entry.future.set_result(msg)

    def process_gone(self, process_id: str) -> None:
        """Fail every request still waiting on ``process_id``."""
        for entry in self._pending.values():
            if entry.owner_id == process_id and not entry.future.done():
                entry.future.set_result(ErrorCode.PROCESS_DISCONNECTED)
