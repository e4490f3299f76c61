"""The client end of a framed connection: handshake, request/response
correlation by request id, and demultiplexing of pushes to stream receivers.

One reader task owns the socket's read side. Requests write their frame and
await a future keyed by request id, with a deadline. When the connection ends,
every pending request fails with the reason (a typed error from the server,
or :class:`ConnectionClosed`), and every open stream ends with it too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from typing import Any, Callable, TypeVar

from ..protocol import auth
from ..protocol import messages as m
from ..protocol.address import Address
from ..protocol.connection import ProtocolConnection, Side
from ..protocol.process import ProcessControlResponse
from ..protocol.errors import (
    AuthError,
    AuthRequired,
    ConnectionClosed,
    ConsoleError,
    ProcessUnavailable,
    ProtocolError,
    RemoteProtocolError,
    RequestTimeout,
    ServerUnreachable,
    VersionMismatch,
    error_from_wire,
)
from ..protocol.wire import Message
from .streams import StreamReceiver

log = logging.getLogger(__name__)

R = TypeVar("R", bound=m.Reply)
M = TypeVar("M", bound=Message)
READ_CHUNK = 256 * 1024


_PROCESS_UNAVAILABLE = {"UNROUTABLE_UNIT", "PROCESS_DISCONNECTED", "ROUTE_WRITE_FAILED"}


def process_error(response: ProcessControlResponse) -> ConsoleError:
    """The typed exception for a failed routed request: "Process request failed (<code>): <error>"."""
    code = response.error_code or "SERVER_ERROR"
    details = {**response.details, "error_code": code, "process_id": response.process_id}
    message = f"Process request failed ({code}): {response.error}"
    if code in _PROCESS_UNAVAILABLE:
        return ProcessUnavailable(message, details)
    return error_from_wire(code, message, details)


def _unreachable(address: Address, why: str) -> ServerUnreachable:
    return ServerUnreachable(
        f"no GraphServer answered at {address} ({why}); start one with "
        f"`ezmsg-console serve --address {address}`, or pass auto_start=True",
        {"address": str(address)},
    )


class ClientConnection:
    """An open, handshaken connection to a GraphServer."""

    def __init__(self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: ProtocolConnection, welcome: m.Welcome) -> None:
        self.address = address
        self.welcome = welcome
        self._reader = reader
        self._writer = writer
        self._conn = conn
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Message], StreamReceiver | None]] = {}
        self._streams: dict[str, StreamReceiver] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {}
        self._close_error: ConsoleError | None = None
        self._closed = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"ezmsg-console-client-{address}")

    @property
    def closed(self) -> bool:
        return self._close_error is not None

    @property
    def close_error(self) -> ConsoleError | None:
        return self._close_error

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- opening ---------------------------------------------------------

    @classmethod
    async def open(cls, address: Address, *, role: m.Role, name: str, token: str | None,
                   timeout: float) -> ClientConnection:
        """Connect and complete the handshake within ``timeout`` seconds."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address.host, address.port), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise _unreachable(address, f"no answer within {timeout:.1f} s") from None
        except OSError as exc:
            raise _unreachable(address, exc.strerror or str(exc)) from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = ProtocolConnection(Side.CLIENT)
        try:
            welcome = await asyncio.wait_for(_handshake(reader, writer, conn, address, role, name, token), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            writer.close()
            raise RequestTimeout(
                f"GraphServer at {address} did not complete the handshake in {timeout:.1f} s") from None
        except BaseException:
            writer.close()
            raise
        return cls(address, reader, writer, conn, welcome)

    # -- requests --------------------------------------------------------

    async def request(self, build: Callable[[int], m.Request], expect: type[R], timeout: float,
                      stream: StreamReceiver | None = None) -> R:
        """Send ``build(request_id)`` and await its reply of type ``expect``."""
        if self._close_error is not None:
            raise self._close_error
        request_id = next(self._ids)
        msg = build(request_id)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, stream)
        try:
            self._writer.writelines(self._conn.send_frames(msg))
            reply = await asyncio.wait_for(future, timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise RequestTimeout(
                f"{msg.KIND} got no reply from {self.address} within {timeout:.1f} s",
                {"kind": msg.KIND, "timeout": timeout},
            ) from None
        finally:
            self._pending.pop(request_id, None)
        if not isinstance(reply, expect):
            raise RemoteProtocolError(f"{msg.KIND} got a {reply.KIND} reply, expected {expect.KIND}")
        return reply

    def send(self, msg: Message) -> None:
        """Send a message that is not a request (e.g. an answer to a routed request)."""
        if self._close_error is not None:
            raise self._close_error
        self._writer.writelines(self._conn.send_frames(msg))

    def add_handler(self, kind: type[M], handler: Callable[[M], None]) -> None:
        """Call ``handler(msg)`` for every unsolicited message of type ``kind``
        (e.g. routes updates), on the reader task: it must not block."""
        self._handlers[kind] = handler

    def forget_stream(self, stream_id: str) -> None:
        self._streams.pop(stream_id, None)

    # -- reading ---------------------------------------------------------

    async def _read_loop(self) -> None:
        error: ConsoleError = ConnectionClosed(f"connection to GraphServer at {self.address} closed")
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                for msg in self._conn.receive_data(data):
                    fatal = self._deliver(msg)
                    if fatal is not None:
                        error = fatal
                        return
        except ProtocolError as exc:
            error = exc
        except (ConnectionError, OSError) as exc:
            error = ConnectionClosed(f"connection to GraphServer at {self.address} lost: {exc}")
        except asyncio.CancelledError:
            pass
        finally:
            self._finish(error)

    def _deliver(self, msg: Message) -> ConsoleError | None:
        if isinstance(msg, m.ErrorReply):
            err = error_from_wire(msg.code, msg.message, msg.details)
            if msg.request_id is None:
                return err
            self._resolve(msg.request_id, exc=err)
        elif isinstance(msg, m.Reply):
            entry = self._pending.get(msg.request_id)
            if isinstance(msg, m.Subscribed) and entry is not None and entry[1] is not None:
                entry[1].attach(msg.stream_id, msg.stream, msg.current_seq)
                self._streams[msg.stream_id] = entry[1]
            self._resolve(msg.request_id, reply=msg)
        elif isinstance(msg, m.Push):
            receiver = self._streams.get(msg.stream_id)
            if receiver is not None:  # else: a push racing our unsubscribe
                receiver.push(msg)
                if isinstance(msg, m.StreamClosed):
                    self._streams.pop(msg.stream_id, None)
        else:
            handler = self._handlers.get(type(msg))
            if handler is None:
                log.debug("ignoring unexpected %s from server", msg.KIND)
            else:
                try:
                    handler(msg)
                except Exception:  # noqa: BLE001 - a handler bug must not kill the connection
                    log.exception("handler for %s failed", msg.KIND)
        return None

    def _resolve(self, request_id: int, *, reply: Message | None = None, exc: BaseException | None = None) -> None:
        entry = self._pending.get(request_id)
        if entry is None or entry[0].done():
            return  # the caller gave up (timeout); the late reply is dropped
        if exc is not None:
            entry[0].set_exception(exc)
        else:
            entry[0].set_result(reply)  # type: ignore[arg-type]

    def _finish(self, error: ConsoleError) -> None:
        if self._close_error is None:
            self._close_error = error
        for future, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(self._close_error)
        for receiver in list(self._streams.values()):
            receiver.end(self._close_error)
        self._streams.clear()
        self._conn.close()
        if not self._writer.is_closing():
            self._writer.close()
        self._closed.set()

    async def close(self) -> None:
        """Close the connection; pending requests fail with ConnectionClosed."""
        if not self._writer.is_closing():
            self._writer.close()
        self._reader_task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self._reader_task), 2.0)
        except (asyncio.CancelledError, TimeoutError, asyncio.TimeoutError):
            pass
        self._finish(ConnectionClosed(f"connection to GraphServer at {self.address} closed by this client"))


async def _read_one(reader: asyncio.StreamReader, conn: ProtocolConnection, address: Address) -> Message:
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            raise ConnectionClosed(f"GraphServer at {address} closed the connection during the handshake")
        msgs = conn.receive_data(data)
        if msgs:
            return msgs[0]


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: ProtocolConnection,
                     address: Address, role: m.Role, name: str, token: str | None) -> m.Welcome:
    first = await _read_one(reader, conn, address)
    if isinstance(first, m.ErrorReply):
        raise error_from_wire(first.code, first.message, first.details)
    if not isinstance(first, m.ServerHello):  # pragma: no cover - the state machine refuses it
        raise RemoteProtocolError(f"expected SERVER_HELLO, got {first.KIND}")
    if first.auth_required and token is None:
        raise AuthRequired(
            f"the GraphServer at {address} requires a token: pass token=... or set EZMSG_CONSOLE_TOKEN",
            {"address": str(address)},
        )
    if token is not None and not first.auth_required:
        # Holding a token means trusting only a server that proves it holds it too: one that asks
        # for none cannot, whether it is an impostor on the port or a server started without one.
        raise AuthError(
            f"the server at {address} does not ask for a token, so it cannot prove it holds yours: not "
            f"connecting (start the GraphServer with the same --token, or connect without a token)",
            {"address": str(address), "reason": "server_unauthenticated"},
        )
    client_nonce = auth.new_nonce()
    proof = auth.client_proof(token, first.nonce, client_nonce, role.value, name) if token else None
    writer.write(conn.send(m.Hello(m.PROTOCOL_VERSION, role, name, client_nonce, proof)))
    reply = await _read_one(reader, conn, address)
    if isinstance(reply, m.ErrorReply):
        raise error_from_wire(reply.code, reply.message, reply.details)
    if not isinstance(reply, m.Welcome):  # pragma: no cover - the state machine refuses it
        raise RemoteProtocolError(f"expected WELCOME, got {reply.KIND}")
    if reply.protocol_version != m.PROTOCOL_VERSION:
        raise VersionMismatch(
            f"protocol version mismatch: client speaks {m.PROTOCOL_VERSION}, server speaks {reply.protocol_version}",
            {"client_version": m.PROTOCOL_VERSION, "server_version": reply.protocol_version},
        )
    if token is not None:
        expected = auth.server_proof(token, first.nonce, client_nonce)
        if not auth.proofs_match(expected, reply.server_proof):
            raise AuthError(f"the GraphServer at {address} could not prove it holds the token: not connecting",
                            {"address": str(address), "reason": "bad_server_proof"})
    return reply
