"""The publisher <-> subscriber link: a tiny binary protocol over a socket.

Theory of operation
-------------------
A subscriber opens one connection per publisher that feeds it: a Unix socket
on the same host (payloads then travel through the publisher's shared-memory
ring), TCP otherwise (payloads travel inline). The control plane only told it
where the publisher is; it never sees a payload.

1. The subscriber sends a HELLO frame (4-byte length + msgpack map) naming the
   publisher and itself; the publisher answers with a frame carrying the
   shared-memory segment name (or none for inline) and the ring geometry.
2. Then the publisher sends, per message, a fixed 28-byte header
   ``MSG = (kind, slot, msg_id, publish_ns, length)``: kind ``SHM`` means the
   payload is in ring slot ``slot``; kind ``INLINE`` means ``length`` payload
   bytes follow the header.
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
from typing import Any, Callable

from ..protocol.codec import packb, unpackb
from ..protocol.errors import ConnectionClosed, DecodeError, RemoteProtocolError
from .shm import Segment

MSG = struct.Struct("<BxxxIQqI")
ACK = struct.Struct("<IQ")
FRAME = struct.Struct("<I")
KIND_SHM = 1
KIND_INLINE = 2
MAX_HELLO = 64 * 1024


def hello_frame(obj: dict[str, Any]) -> bytes:
    body = packb(obj)
    return FRAME.pack(len(body)) + body


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
        self._hello: _FrameReader | None = _FrameReader()
        self._acks = bytearray()
        self.transport: asyncio.Transport | None = None
        self.outstanding: set[int] = set()
        self.use_shm = False
        self.sub_id = ""
        self.on_ack: Callable[[PublisherLink, int], None] | None = None
        self.on_lost: Callable[[PublisherLink], None] | None = None
        self.closed = False
        self._out = bytearray()  # headers written this loop iteration, sent in one write
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

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
        """Queue a message header (plus inline payload). Headers published in the same
        loop iteration leave in one write: one system call for a burst, not one each."""
        if self.transport is None or self.closed:
            return
        if payload is None:
            self._out += header
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)
            return
        self.flush()
        self.transport.writelines((header, payload))

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.closed:
            self.transport.write(bytes(self._out))
        self._out.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.on_lost is not None:
            self.on_lost(self)


class SubscriberLink(asyncio.Protocol):
    """Subscriber side of one publisher connection."""

    def __init__(self, hello: dict[str, Any],
                 on_message: Callable[[SubscriberLink, int, int, int, int, memoryview | bytes], None]) -> None:
        self._hello_obj = hello
        self._on_message = on_message
        self._reply = _FrameReader()
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self.shm_view: memoryview | None = None
        self.segment: Segment | None = None
        self.buf_size = 0
        self._acks = bytearray()  # acknowledgements of this loop iteration, sent in one write
        self._ack_scheduled = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(hello_frame(self._hello_obj))

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self._reply.buffer += data
            try:
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

    def release_ring(self) -> None:
        self.shm_view = None
        if self.segment is not None:
            self.segment.close()
            self.segment = None

    def ack(self, slot: int, msg_id: int) -> None:
        """Acknowledge a message; acks of one loop iteration leave in one write."""
        self._acks += ACK.pack(slot, msg_id)
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_scheduled = False
        if self._acks and self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes(self._acks))
        self._acks.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionClosed("publisher closed the link before answering"))
        if not self.closed.done():
            self.closed.set_result(None)
