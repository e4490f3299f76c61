"""One accepted connection: handshake, read loop, and a writer task.

Nothing that handles a request ever awaits the socket. Replies and errors go
into this peer's control outbox; pushes wait in its subscriptions' bounded
queues. A single writer task drains both (control first) and is the only code
that writes or drains. If the peer stops reading, the writer's drain passes
its deadline, or the control outbox passes its byte limit, and only this peer
is closed, as a slow consumer. Other peers never notice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import sys
import uuid
from typing import TYPE_CHECKING, Any

from ..net import is_loopback_host
from ..protocol import auth
from ..protocol import messages as m
from ..protocol.connection import MalformedRequest, ProtocolConnection, Side
from ..protocol.errors import (
    AuthError,
    AuthRateLimited,
    AuthRequired,
    ConsoleError,
    InvalidRequest,
    LocalProtocolError,
    ProtocolError,
    RequestTimeout,
    ServerError,
    VersionMismatch,
    wire_code,
)
from ..protocol.gapqueue import GapMarker
from ..protocol.wire import Message
from .dispatch import dispatch
from .streams import Subscription

if TYPE_CHECKING:
    from .graph_server import GraphServer

log = logging.getLogger(__name__)

if sys.platform.startswith("linux"):
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ  # bytes in a socket's send queue (SIOCOUTQ)
else:  # pragma: no cover - elsewhere progress is read from the transport's buffer alone
    _OUTQ = None

READ_CHUNK = 256 * 1024
PUSH_BATCH = 64  # push frames taken per subscription per writer pass
WRITE_BATCH = 4 * 1024 * 1024  # control bytes written (and drained, within the deadline) per writer pass


def error_reply(request_id: int | None, err: ConsoleError) -> m.ErrorReply:
    return m.ErrorReply(request_id, wire_code(err), err.message, dict(err.details))


class Peer:
    """Server side of one client connection."""

    def __init__(self, server: GraphServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.conn = ProtocolConnection(Side.SERVER, server.max_frame_size, server.max_message_size)
        peername = writer.get_extra_info("peername") or ("?", 0)
        self.peer_host = str(peername[0])
        self.peer_address = f"{peername[0]}:{peername[1]}"
        self.is_loopback = is_loopback_host(self.peer_host)
        self.peer_id = uuid.uuid4().hex
        self.role = m.Role.OBSERVER
        self.name = ""
        self.joined = False
        self.subscriptions: dict[str, Subscription] = {}
        self._outbox: collections.deque[bytes] = collections.deque()
        self._outbox_bytes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._writer_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # requests answered later (routed requests)
        self._frame_deadline: float | None = None  # loop time by which the unfinished frame must be whole

    @property
    def may_shutdown(self) -> bool:
        return self.is_loopback or self.server.allow_remote_shutdown

    # -- outgoing --------------------------------------------------------

    def wake_writer(self) -> None:
        self._wake.set()

    def queue_control(self, msg: Message) -> bool:
        """Queue a reply/error/control frame; never blocks. False if the peer is
        closing or was just closed for having too much pending."""
        if self._closing:
            return False
        # What was pending before this message decides: one message, however big (up to the
        # message limit, in chunks), is always deliverable to a peer that keeps up.
        pending = self._outbox_bytes + self.writer.transport.get_write_buffer_size()
        if pending > self.server.max_pending_bytes:
            self._abort_slow(f"{pending} bytes pending for this peer")
            return False
        for frame in self.conn.send_frames(msg):
            self._outbox.append(frame)
            self._outbox_bytes += len(frame)
        self._wake.set()
        return True

    def _take_frames(self) -> list[bytes]:
        """Control frames first (up to WRITE_BATCH bytes a pass, so a big chunked reply is
        written, and its deadline counted, a few MiB at a time), then a batch of pushes."""
        frames: list[bytes] = []
        taken = 0
        outbox = self._outbox
        while outbox and (not frames or taken + len(outbox[0]) <= WRITE_BATCH):
            frame = outbox.popleft()
            frames.append(frame)
            taken += len(frame)
        self._outbox_bytes -= taken
        for sub in list(self.subscriptions.values()):
            for _ in range(min(PUSH_BATCH, len(sub.queue))):
                item = sub.queue.pop()
                if isinstance(item, GapMarker):
                    msg: Message = m.StreamGap(sub.stream_id, sub.kind, item.from_seq, item.to_seq, item.reason)
                else:
                    msg = m.StreamEvent(sub.stream_id, sub.kind, item.seq, item)
                frames.extend(self.conn.send_frames(msg))
        return frames

    async def _writer_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while frames := self._take_frames():
                    self.writer.writelines(frames)
                    await self._drain()
                if self._closing:
                    return
        except (TimeoutError, asyncio.TimeoutError):
            self._abort_slow(f"no progress writing for {self.server.write_deadline:.1f} s")
        except (ConnectionError, OSError):
            pass
        finally:
            if not self.writer.transport.is_closing():
                self.writer.close()

    async def _drain(self) -> None:
        """Wait until the socket takes what was written; TimeoutError only if a whole
        ``write_deadline`` passes without it taking anything. A reader that is slow but keeps
        reading is not closed: meanwhile its push streams overflow into gap markers."""
        left = self._unsent()
        while True:
            try:
                await asyncio.wait_for(self.writer.drain(), self.server.write_deadline)
                return
            except (TimeoutError, asyncio.TimeoutError):
                now = self._unsent()
                if now >= left:
                    raise
                left = now  # it took some: keep waiting

    def _unsent(self) -> int:
        """Bytes written but not yet taken by the peer: the transport's buffer plus, on Linux, the
        kernel's send queue (the transport's buffer alone moves only in big steps, when the socket
        turns writable again)."""
        transport = self.writer.transport
        queued = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None and _OUTQ is not None:
            try:
                queued += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
            except OSError:
                pass
        return queued

    def _abort_slow(self, why: str) -> None:
        log.warning("closing slow consumer %s (%s): %s", self.peer_address, self.name, why)
        self._closing = True
        self._outbox.clear()
        self.writer.transport.abort()

    def close(self, error: ConsoleError | None = None) -> None:
        """Close after flushing queued frames (plus ``error``, if given)."""
        if self._closing:
            return
        if error is not None:
            try:
                self.queue_control(error_reply(None, error))
            except ProtocolError:
                pass
        self._closing = True
        self._wake.set()

    # -- lifecycle -------------------------------------------------------

    async def run(self) -> None:
        self._writer_task = asyncio.create_task(self._writer_loop(), name=f"peer-writer-{self.peer_address}")
        try:
            if await self._handshake():
                await self._read_loop()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.joined:
                subs = list(self.subscriptions)
                self.subscriptions.clear()
                self.server.core.peer_left(self.peer_id, subs)
            self.close()
            try:
                await asyncio.wait_for(asyncio.shield(self._writer_task), self.server.write_deadline)
            except (TimeoutError, asyncio.TimeoutError, asyncio.CancelledError):
                self._writer_task.cancel()
                self.writer.transport.abort()

    async def _read_messages(self) -> list[Message]:
        """The next non-empty batch of complete messages. While a frame (or a chunked message) is
        unfinished, the rest must come within the server's ``frame_timeout``."""
        loop = asyncio.get_running_loop()
        while True:
            if self.conn.unfinished_bytes:  # the whole frame must arrive within frame_timeout of its start
                if self._frame_deadline is None:
                    self._frame_deadline = loop.time() + self.server.frame_timeout
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_CHUNK),
                                                  max(0.0, self._frame_deadline - loop.time()))
                except (TimeoutError, asyncio.TimeoutError):
                    raise RequestTimeout(
                        f"a frame was still unfinished ({self.conn.unfinished_bytes} bytes) "
                        f"{self.server.frame_timeout:g} s after it began",
                        {"unfinished_bytes": self.conn.unfinished_bytes}) from None
            else:
                self._frame_deadline = None
                data = await self.reader.read(READ_CHUNK)
            if not data:
                raise ConnectionResetError("peer closed")
            msgs = self.conn.receive_data(data)
            if msgs:
                return msgs

    async def _handshake(self) -> bool:
        server = self.server
        wait = server.auth_failures.retry_after(self.peer_host) if server.token is not None else 0.0
        if wait > 0:
            log.warning("refused %s: too many failed handshakes from %s", self.peer_address, self.peer_host)
            self.close(AuthRateLimited(f"too many failed authentication attempts from {self.peer_host}; "
                                       f"try again in {wait:.0f} s", {"retry_after_s": round(wait, 1)}))
            return False
        nonce = auth.new_nonce()
        self.queue_control(m.ServerHello(m.PROTOCOL_VERSION, server.core.server_id, server.core.epoch,
                                         nonce, server.token is not None))
        try:
            msgs = await asyncio.wait_for(self._read_messages(), server.handshake_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            self.close(RequestTimeout(f"no HELLO within {server.handshake_timeout:.1f} s"))
            return False
        except ProtocolError as exc:
            self.close(exc)
            return False
        except (ConnectionError, OSError):
            return False
        hello = msgs[0]
        if not isinstance(hello, m.Hello):  # pragma: no cover - the state machine refuses it
            self.close(ProtocolError("expected HELLO"))
            return False
        if hello.protocol_version != m.PROTOCOL_VERSION:
            err = VersionMismatch(
                f"protocol version mismatch: client speaks {hello.protocol_version}, "
                f"server speaks {m.PROTOCOL_VERSION}",
                {"client_version": hello.protocol_version, "server_version": m.PROTOCOL_VERSION},
            )
            log.warning("refused %s: %s", self.peer_address, err)
            self.close(err)
            return False
        if server.token is not None:
            expected = auth.client_proof(server.token, nonce, hello.client_nonce, hello.role.value, hello.name)
            if not auth.proofs_match(expected, hello.auth):
                server.auth_failures.failed(self.peer_host)
                log.warning("authentication failed for %s (%s)", self.peer_address, hello.name)
                self.close(AuthError("authentication failed: wrong or missing token"))
                return False
            proof: str | None = auth.server_proof(server.token, nonce, hello.client_nonce)
        elif not self.is_loopback:
            self.close(AuthRequired("this server accepts peers without a token only from loopback"))
            return False
        else:
            proof = None
        self.role, self.name = hello.role, hello.name
        server.core.peer_joined(self.peer_id, self.name, self.role, self.peer_address)
        self.joined = True
        secret = server.data_secret if self.role is m.Role.PROCESS else None  # processes only
        self.queue_control(m.Welcome(m.PROTOCOL_VERSION, server.core.server_id, server.core.epoch,
                                     self.peer_id, self.role, server.max_frame_size, proof, secret))
        return True

    async def _read_loop(self) -> None:
        while not self._closing:
            try:
                msgs = await self._read_messages()
            except (ProtocolError, RequestTimeout) as exc:
                log.info("closing %s: %s", self.peer_address, exc)
                self.close(exc)
                return
            except (ConnectionError, OSError):
                return
            for msg in msgs:
                self._handle(msg)

    def _handle(self, msg: Message) -> None:
        if isinstance(msg, MalformedRequest):
            self.queue_control(m.ErrorReply(msg.request_id, InvalidRequest.code, f"malformed {msg.kind}: {msg.error}",
                                            {"kind": msg.kind, **msg.details}))
            return
        request_id = msg.request_id if isinstance(msg, m.Request) else None
        try:
            reply = dispatch(self.server.core, self, msg)
        except ConsoleError as exc:
            reply = error_reply(request_id, exc)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the server
            log.exception("internal error handling %s from %s", msg.KIND, self.peer_address)
            reply = error_reply(request_id, ServerError(f"internal server error: {type(exc).__name__}: {exc}"))
        if reply is None:
            return
        if asyncio.iscoroutine(reply):
            task = asyncio.ensure_future(self._answer_later(request_id, reply))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._send_reply(request_id, msg, reply)

    async def _answer_later(self, request_id: int | None, pending: Any) -> None:
        try:
            reply = await pending
        except ConsoleError as exc:
            reply = error_reply(request_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the server
            log.exception("internal error answering request %s from %s", request_id, self.peer_address)
            reply = error_reply(request_id, ServerError(f"internal server error: {type(exc).__name__}: {exc}"))
        self.queue_control(reply)

    def _send_reply(self, request_id: int | None, msg: Message, reply: Message) -> None:
        try:
            self.queue_control(reply)
        except LocalProtocolError as exc:  # the reply does not fit in one frame
            self.queue_control(error_reply(request_id, ServerError(
                f"the {msg.KIND} reply is too large to send: {exc}",
                {"code": "RESPONSE_TOO_LARGE", **exc.details},
            )))

    def request_server_shutdown(self) -> None:
        self.server.request_shutdown()
