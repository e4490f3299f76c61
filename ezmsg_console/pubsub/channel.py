"""The publisher <-> subscriber link: a tiny binary protocol over a socket.

Theory of operation
-------------------
A subscriber opens one connection per publisher that feeds it: a Unix socket
on the same host (payloads then travel through the publisher's shared-memory
ring), TCP otherwise (payloads travel inline). The control plane only told it
where the publisher is; it never sees a payload.

1. The publisher sends a CHALLENGE frame (4-byte length + msgpack map) with a
   fresh nonce; the subscriber answers with a HELLO frame naming the publisher
   and itself and proving it holds the data-link secret the GraphServer gave
   its process (``auth.link_proof`` over the nonce and both ids); the publisher
   checks the proof and answers with a frame carrying the shared-memory segment
   name (or none for inline) and the ring geometry, or refuses and closes. So
   only processes of the same GraphServer can read a publisher's data port.
2. Then the publisher sends, per message, a fixed 28-byte header
   ``MSG = (kind, slot, msg_id, publish_ns, length)``: kind ``SHM`` means the
   payload is in ring slot ``slot``; kind ``INLINE`` means ``length`` payload
   bytes follow the header; kind ``RING`` (``length`` bytes of msgpack follow:
   ``shm_name``, ``buf_size``) says the publisher grew its ring for a bigger
   message: every ``SHM`` message after it is in the new ring, every one before
   it in the old one (which stays mapped while views of it live).
3. The subscriber answers each message with a 12-byte ``ACK = (slot, msg_id)``
   once it no longer needs it. The publisher reuses a slot only when every
   subscriber it went to has acknowledged it: that is the backpressure. A link
   that closes releases every slot it still held.

Both ends are :class:`asyncio.Protocol` objects: parsing happens in
``data_received`` without an await per message.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Callable, cast

from ..protocol import auth
from ..protocol.codec import packb, unpackb
from ..protocol.errors import ConnectionClosed, DecodeError, RemoteProtocolError
from .shm import Segment

MSG = struct.Struct("<BxxxIQqI")
ACK = struct.Struct("<IQ")
FRAME = struct.Struct("<I")
KIND_SHM = 1
KIND_INLINE = 2
KIND_RING = 3
MAX_HELLO = 64 * 1024


def hello_frame(obj: dict[str, Any]) -> bytes:
    body = packb(obj)
    return FRAME.pack(len(body)) + body


BATCH = 8
"""Frames gathered before a write when many are sent in one loop turn."""


class _Coalescer:
    """Writes small frames (message headers, acknowledgements) to a transport.

    The first frame of a loop turn is written at once (no added latency);
    further frames in the same turn are gathered and written every
    :data:`BATCH` frames and at the end of the turn, so a burst costs a few
    system calls instead of one per message, while the peer keeps working in
    parallel on what has already been sent.
    """

    __slots__ = ("transport", "_buf", "_count", "_in_turn")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._buf = bytearray()
        self._count = 0
        self._in_turn = False

    def put(self, frame: bytes) -> None:
        if not self._in_turn:
            self._in_turn = True
            asyncio.get_running_loop().call_soon(self._end_turn)
            self.transport.write(frame)
            return
        self._buf += frame
        self._count += 1
        if self._count >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            if not self.transport.is_closing():
                self.transport.write(bytes(self._buf))
            self._buf.clear()
        self._count = 0

    def _end_turn(self) -> None:
        self._in_turn = False
        self.flush()


class _FrameReader:
    """Collects one length-prefixed msgpack frame (the hello exchange)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def take(self) -> tuple[dict[str, Any] | None, bytes]:
        """(decoded frame or None if incomplete, bytes left over after it)."""
        if len(self.buffer) < FRAME.size:
            return None, b""
        (size,) = FRAME.unpack_from(self.buffer)
        if size > MAX_HELLO:
            raise RemoteProtocolError(f"link hello of {size} bytes is too large")
        end = FRAME.size + size
        if len(self.buffer) < end:
            return None, b""
        obj = unpackb(bytes(self.buffer[FRAME.size:end]))
        rest = bytes(self.buffer[end:])
        self.buffer.clear()
        if not isinstance(obj, dict):
            raise DecodeError("link hello must be a map")
        return obj, rest


class PublisherLink(asyncio.Protocol):
    """Publisher side of one subscriber connection (created by the data server)."""

    def __init__(self, attach: Callable[[PublisherLink, dict[str, Any]], dict[str, Any]]) -> None:
        self._attach = attach
        self.nonce = auth.new_nonce()  # the challenge the subscriber's proof must cover
        self._hello: _FrameReader | None = _FrameReader()
        self._acks = bytearray()
        self.transport: asyncio.Transport | None = None
        self.outstanding: set[int] = set()
        self.use_shm = False
        self.sub_id = ""
        self.on_ack: Callable[[PublisherLink, int], None] | None = None
        self.on_lost: Callable[[PublisherLink], None] | None = None
        self.closed = False
        self._headers: _Coalescer | None = None
        self.writable = asyncio.Event()  # cleared while the transport's buffer is over its limit
        self.writable.set()
        self.acks_seen = 0  # reads that brought acknowledgements (the stall watchdog's progress mark)
        self.watch_mark = 0
        self.stalled_for = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._headers = _Coalescer(self.transport)  # type: ignore[arg-type]
        self.transport.write(hello_frame({"nonce": self.nonce}))  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if self._hello is not None:
            self._hello.buffer += data
            try:
                hello, rest = self._hello.take()
                if hello is None:
                    return
                self._hello = None
                reply = self._attach(self, hello)
            except Exception as exc:  # noqa: BLE001 - refuse this link, keep the publisher
                self._reply_and_close({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
                return
            assert self.transport is not None
            self.transport.write(hello_frame(reply))
            if not reply.get("ok"):
                self.transport.close()
                return
            data = rest
        acks = self._acks
        acks += data
        usable = len(acks) - len(acks) % ACK.size
        if usable:
            self.acks_seen += 1
        if usable and self.on_ack is not None:
            for slot, _msg_id in ACK.iter_unpack(memoryview(acks)[:usable]):
                if slot in self.outstanding:
                    self.outstanding.discard(slot)
                    self.on_ack(self, slot)
        del acks[:usable]

    def _reply_and_close(self, reply: dict[str, Any]) -> None:
        if self.transport is not None:
            self.transport.write(hello_frame(reply))
            self.transport.close()

    def send(self, header: bytes, payload: bytes | memoryview | None = None) -> None:
        """Send a message header (plus an inline payload). Headers of a burst are
        coalesced (see :class:`_Coalescer`); inline messages go out at once."""
        if self.transport is None or self.closed or self._headers is None:
            return
        if payload is None:
            self._headers.put(header)
            return
        self._headers.flush()
        self.transport.write(header)
        if payload is not None:
            self.transport.write(payload)

    def close(self) -> None:
        if self.transport is not None:
            if self._headers is not None:
                self._headers.flush()  # what was sent must still arrive
            self.transport.close()

    def abort(self) -> None:
        """Drop the link at once (a stalled subscriber): its slots are released as it is lost."""
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()  # nobody may wait on a link that is gone
        if self.on_lost is not None:
            self.on_lost(self)


class SubscriberLink(asyncio.Protocol):
    """Subscriber side of one publisher connection."""

    def __init__(self, hello: dict[str, Any],
                 on_message: Callable[[SubscriberLink, int, int, int, int, memoryview | bytes], None],
                 prove: Callable[[str], str | None]) -> None:
        self._hello_obj = hello
        self._on_message = on_message
        self._prove = prove  # nonce -> proof of the data-link secret
        self._challenged = False
        self._reply = _FrameReader()
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self.shm_view: memoryview | None = None
        self.segment: Segment | None = None
        self._retired: list[Segment] = []  # rings the publisher replaced: older messages' views may use them
        self.buf_size = 0
        self._acks: _Coalescer | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = cast(asyncio.Transport, transport)  # a stream connection's transport
        self._acks = _Coalescer(stream)  # the HELLO waits for the publisher's challenge

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self._reply.buffer += data
            try:
                reply, rest = self._reply.take()
                if reply is not None and not self._challenged:  # the challenge: prove, say HELLO
                    self._challenged = True
                    nonce = reply.get("nonce")
                    if not isinstance(nonce, str):
                        raise DecodeError("link challenge without a nonce")
                    assert self.transport is not None
                    self.transport.write(hello_frame({**self._hello_obj, "proof": self._prove(nonce)}))
                    self._reply.buffer += rest
                    reply, rest = self._reply.take()
            except Exception as exc:  # noqa: BLE001 - a broken peer ends the link
                self.ready.set_exception(RemoteProtocolError(f"bad link reply: {exc}"))
                self.close()
                return
            if reply is None:
                return
            try:
                self._attach_ring(reply)
            except OSError as exc:
                self.ready.set_exception(exc)
                self.close()
                return
            self.ready.set_result(reply)
            data = rest
            if not data:
                return
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        view = memoryview(buf)
        try:
            while end - pos >= MSG.size:
                kind, slot, msg_id, publish_ns, length = MSG.unpack_from(buf, pos)
                if kind == KIND_SHM:
                    pos += MSG.size
                    shm = self.shm_view
                    if shm is None or length > self.buf_size:
                        raise RemoteProtocolError("shared-memory message on a link without a ring")
                    start = slot * self.buf_size
                    self._on_message(self, kind, slot, msg_id, publish_ns, shm[start:start + length])
                elif kind == KIND_INLINE:
                    if end - pos - MSG.size < length:
                        break
                    with view[pos + MSG.size:pos + MSG.size + length] as body:
                        self._on_message(self, kind, slot, msg_id, publish_ns, body)
                    pos += MSG.size + length
                elif kind == KIND_RING:
                    if end - pos - MSG.size < length:
                        break
                    self._switch_ring(unpackb(bytes(view[pos + MSG.size:pos + MSG.size + length])))
                    pos += MSG.size + length
                else:
                    raise RemoteProtocolError(f"unknown link message kind {kind}")
        except Exception:
            view.release()
            self.close()
            raise
        view.release()
        del buf[:pos]

    def _attach_ring(self, reply: dict[str, Any]) -> None:
        """Map the publisher's ring before reading on: its first messages may share this read."""
        name = reply.get("shm_name")
        if reply.get("ok") and isinstance(name, str) and name:
            self.segment = Segment(name, 0, create=False)
            self.shm_view = self.segment.buf
            self.buf_size = int(reply["buf_size"])

    def _switch_ring(self, ring: Any) -> None:
        if not isinstance(ring, dict) or not isinstance(ring.get("shm_name"), str) \
                or not isinstance(ring.get("buf_size"), int) or self.segment is None:
            raise RemoteProtocolError(f"bad ring announcement {ring!r}")
        segment = Segment(ring["shm_name"], 0, create=False)
        self._retired.append(self.segment)
        self.segment, self.shm_view, self.buf_size = segment, segment.buf, ring["buf_size"]

    def release_ring(self) -> None:
        self.shm_view = None
        for segment in self._retired:
            segment.close()
        self._retired.clear()
        if self.segment is not None:
            self.segment.close()
            self.segment = None

    def ack(self, slot: int, msg_id: int, big: bool = False) -> None:
        """Acknowledge a message (coalesced with others of the same loop turn, except
        for big ones: their slot is worth handing back while it is still in cache)."""
        if self._acks is not None and self.transport is not None and not self.transport.is_closing():
            if big:
                self._acks.flush()
                self.transport.write(ACK.pack(slot, msg_id))
            else:
                self._acks.put(ACK.pack(slot, msg_id))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionClosed("publisher closed the link before answering"))
        if not self.closed.done():
            self.closed.set_result(None)
