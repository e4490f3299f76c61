"""Sans-IO connection: bytes in, messages out, with the handshake as a state machine.

Theory of operation
-------------------
Both ends wrap their socket around a :class:`ProtocolConnection`. The I/O
layer calls :meth:`receive_data` with whatever bytes arrived and gets back the
complete, decoded, *legal* messages; it calls :meth:`send` with a message and
writes the bytes it returns. Nothing here touches a socket or an event loop.

The handshake::

    server                                   client
    SEND_SERVER_HELLO --ServerHello-->       AWAIT_SERVER_HELLO
    AWAIT_HELLO       <--Hello---------      SEND_HELLO
    SEND_WELCOME      --Welcome------->      AWAIT_WELCOME
    OPEN                                     OPEN

Before OPEN only the handshake messages (and an ErrorReply, which ends the
connection) are legal, and frames over 4 KiB are refused; in OPEN any
non-handshake message may flow either way (routed requests go server ->
process too) and the limit rises to the negotiated ``max_frame_size``. Moves
are looked up in :data:`TRANSITIONS`; an illegal one raises
:class:`LocalProtocolError` (our bug) or :class:`RemoteProtocolError` (theirs).

Chunks: once OPEN, a message whose encoding is over the frame limit (a snapshot
of a very large graph, the metadata of thousands of components) travels as
consecutive *chunk frames* (:meth:`send_frames`). A chunk frame's body starts
with ``0xC1``, the one byte msgpack never uses (so it cannot be taken for a
message), then ``u8 last``, ``u32 chunk id``, ``u32 index`` (big-endian) and a
slice of the message's encoding. The receiver joins the slices of each chunk id
(several may interleave with other frames) and decodes the whole as one message.
It holds at most ``max_message_size`` bytes of unfinished chunks in all and
:data:`MAX_PARTIAL` messages at once; more is FRAME_TOO_LARGE / a protocol
error, and the connection closes.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import itertools
import struct
from typing import Any

from .codec import GC_PAUSE_BYTES, gc_paused, packb, unpack_message
from .catalog import KINDS
from .errors import DecodeError, LocalProtocolError, RemoteProtocolError
from .errors import FrameTooLarge
from .framing import (
    ABSOLUTE_MAX_FRAME_SIZE,
    HANDSHAKE_MAX_FRAME_SIZE,
    HEADER,
    MAX_FRAME_SIZE,
    MAX_MESSAGE_SIZE,
    FrameDecoder,
    encode_frame,
)
from .messages import ErrorReply, Hello, Request, ServerHello, Welcome
from .wire import Message, decode_message, encode_message


class Side(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    SEND_SERVER_HELLO = "SEND_SERVER_HELLO"
    AWAIT_SERVER_HELLO = "AWAIT_SERVER_HELLO"
    AWAIT_HELLO = "AWAIT_HELLO"
    SEND_HELLO = "SEND_HELLO"
    SEND_WELCOME = "SEND_WELCOME"
    AWAIT_WELCOME = "AWAIT_WELCOME"
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class Direction(enum.Enum):
    SEND = "send"
    RECV = "recv"


_HANDSHAKE = (ServerHello, Hello, Welcome)
_OPEN_MESSAGE = "open-message"  # any message that is not part of the handshake
_S, _C = Side.SERVER, Side.CLIENT
_TX, _RX = Direction.SEND, Direction.RECV

TRANSITIONS: dict[tuple[Side, State, Direction, object], State] = {
    (_S, State.SEND_SERVER_HELLO, _TX, ServerHello): State.AWAIT_HELLO,
    (_S, State.AWAIT_HELLO, _RX, Hello): State.SEND_WELCOME,
    (_S, State.SEND_WELCOME, _TX, Welcome): State.OPEN,
    (_C, State.AWAIT_SERVER_HELLO, _RX, ServerHello): State.SEND_HELLO,
    (_C, State.SEND_HELLO, _TX, Hello): State.AWAIT_WELCOME,
    (_C, State.AWAIT_WELCOME, _RX, Welcome): State.OPEN,
    (_S, State.OPEN, _TX, _OPEN_MESSAGE): State.OPEN,
    (_S, State.OPEN, _RX, _OPEN_MESSAGE): State.OPEN,
    (_C, State.OPEN, _TX, _OPEN_MESSAGE): State.OPEN,
    (_C, State.OPEN, _RX, _OPEN_MESSAGE): State.OPEN,
}
"""(side, state, direction, message class or open-message) -> next state.
An ErrorReply may always be sent (even once CLOSED, to report why) and received
in any state but CLOSED; during the handshake it closes the connection."""


@dataclasses.dataclass(frozen=True, slots=True)
class MalformedRequest(Message):
    """Not a wire message: a request whose kind and id are readable but whose fields
    are not. The server answers INVALID_REQUEST and the connection stays usable."""

    request_id: int
    kind: str
    error: str
    details: dict[str, Any]


CHUNK_MARK = 0xC1
_CHUNK_HEAD = struct.Struct(">BBII")  # mark, last, chunk id, index
CHUNK_SIZE = 4 * 1024 * 1024
"""Most message bytes one chunk frame carries (less if the frame limit is lower), so a big
reply reaches the socket a few MiB at a time and other frames can go in between."""
MAX_PARTIAL = 16
"""Chunked messages one connection may have unfinished at once."""


class ProtocolConnection:
    """One end of a connection, as a pure state machine."""

    def __init__(self, side: Side, max_frame_size: int = MAX_FRAME_SIZE,
                 max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.side = side
        self.state = State.SEND_SERVER_HELLO if side is Side.SERVER else State.AWAIT_SERVER_HELLO
        self.max_frame_size = max_frame_size
        self.max_message_size = max_message_size
        self._decoder = FrameDecoder(HANDSHAKE_MAX_FRAME_SIZE)
        self._send_limit = HANDSHAKE_MAX_FRAME_SIZE
        self._chunk_ids = itertools.count(1)
        self._partial: dict[int, list[bytes]] = {}  # chunk id -> slices received so far
        self._partial_bytes = 0

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    @property
    def unfinished_bytes(self) -> int:
        """Bytes received that do not make a whole message yet (a partial frame, chunks so far)."""
        return self._decoder.buffered + self._partial_bytes

    def _next_state(self, direction: Direction, msg: Message) -> State:
        """Where ``msg`` moves the connection; raises if the move is illegal."""
        if isinstance(msg, ErrorReply) and (direction is _TX or self.state is not State.CLOSED):
            # Always legal to send: it is how a protocol failure is reported
            # before the close. During the handshake it ends the connection.
            return self.state if self.state is State.OPEN else State.CLOSED
        if self.state is State.CLOSED:
            err = LocalProtocolError if direction is _TX else RemoteProtocolError
            raise err(f"connection is closed; cannot {direction.value} {msg.KIND}")
        if isinstance(msg, Welcome) and not HANDSHAKE_MAX_FRAME_SIZE <= msg.max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            err = LocalProtocolError if direction is _TX else RemoteProtocolError
            raise err(f"WELCOME max_frame_size {msg.max_frame_size} is out of range",
                      {"max_frame_size": msg.max_frame_size})
        key: object = type(msg) if isinstance(msg, _HANDSHAKE) else _OPEN_MESSAGE
        nxt = TRANSITIONS.get((self.side, self.state, direction, key))
        if nxt is None:
            err = LocalProtocolError if direction is _TX else RemoteProtocolError
            raise err(
                f"{msg.KIND} is not allowed to {direction.value} in state {self.state.value}",
                {"state": self.state.value, "kind": msg.KIND},
            )
        return nxt

    def _enter(self, nxt: State, msg: Message) -> None:
        if nxt is State.OPEN and self.state is not State.OPEN:
            if isinstance(msg, Welcome):
                # The server's limit governs both directions once open.
                self.max_frame_size = msg.max_frame_size
            self._decoder.max_frame_size = self.max_frame_size
            self._send_limit = self.max_frame_size
        self.state = nxt

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Feed received bytes; return the complete messages they finish, in order.

        Raises FrameTooLarge, DecodeError or RemoteProtocolError; after any of
        them the connection is CLOSED and the I/O layer should drop it.
        """
        out: list[Message] = []
        if self.state is State.CLOSED:
            return out  # nothing more is read from a closed connection
        try:
            self._decoder.add(data)
            # (mypy keeps self.state narrowed by the check above; handling a frame can close it)
            while self.state is not State.CLOSED and (  # type: ignore[comparison-overlap]
                    frame := self._decoder.next_frame()) is not None:
                body = self._chunk(frame) if frame[:1] == b"\xc1" else frame
                if body is None:
                    continue  # a chunk of a message that is not complete yet
                with gc_paused(len(body) >= GC_PAUSE_BYTES):  # a big message: no collections while built
                    obj = unpack_message(body)  # a big one with budgets: no decode bombs
                    try:
                        msg = decode_message(obj)
                    except DecodeError as exc:
                        bad = self._malformed_request(obj, exc)
                        if bad is None:
                            raise
                        out.append(bad)
                        continue
                self._enter(self._next_state(_RX, msg), msg)
                out.append(msg)
        except RemoteProtocolError:
            self.state = State.CLOSED
            raise
        return out

    def _chunk(self, frame: bytes) -> bytes | None:
        """Take one chunk frame; the whole message's encoding once its last chunk is in."""
        if len(frame) < _CHUNK_HEAD.size:
            raise DecodeError(f"malformed chunk frame of {len(frame)} bytes (its header alone is {_CHUNK_HEAD.size})")
        if self.state is not State.OPEN:
            raise DecodeError("undecodable frame: a chunk frame before the handshake completed")
        _mark, last, chunk_id, index = _CHUNK_HEAD.unpack_from(frame)
        parts = self._partial.get(chunk_id)
        if parts is None:
            if index != 0 or len(self._partial) >= MAX_PARTIAL:
                raise RemoteProtocolError(f"chunk {index} of unknown message {chunk_id}, or more than "
                                          f"{MAX_PARTIAL} chunked messages at once")
            parts = self._partial[chunk_id] = []
        elif index != len(parts):
            raise RemoteProtocolError(f"chunk {index} of message {chunk_id} out of order (expected {len(parts)})")
        data = frame[_CHUNK_HEAD.size:]
        self._partial_bytes += len(data)
        if self._partial_bytes > self.max_message_size:
            self._partial.clear()
            raise FrameTooLarge(f"chunked message over the {self.max_message_size}-byte limit",
                                {"limit": self.max_message_size})
        parts.append(data)
        if not last:
            return None
        del self._partial[chunk_id]
        body = b"".join(parts)
        self._partial_bytes -= len(body)
        return body

    def _malformed_request(self, obj: Any, exc: DecodeError) -> MalformedRequest | None:
        if self.state is not State.OPEN or not isinstance(obj, dict):
            return None
        request_id, kind = obj.get("request_id"), obj.get("kind")
        if type(request_id) is not int or not isinstance(kind, str):
            return None
        cls = KINDS.get(kind)
        if cls is None or not issubclass(cls, Request):
            return None
        return MalformedRequest(request_id, kind, exc.message, dict(exc.details))

    def send(self, msg: Message) -> bytes:
        """Validate and frame ``msg``; return the bytes to write.

        The frame must fit the limit the *peer* applies when it reads it, so
        the handshake's last frame (Welcome) is still held to 4 KiB. Nothing
        changes when the message is refused.
        """
        nxt = self._next_state(_TX, msg)
        frame = encode_frame(packb(encode_message(msg)), self._send_limit)
        self._enter(nxt, msg)
        return frame

    def send_frames(self, msg: Message) -> list[bytes]:
        """Like :meth:`send`, but a message over the frame limit (on an open connection) becomes
        chunk frames the peer joins again; refused (LocalProtocolError) only over the peer's
        ``max_message_size``, which is taken to be this end's."""
        nxt = self._next_state(_TX, msg)
        paused = gc.isenabled()  # spares a big message the collections it would trigger (two calls for a small one)
        if paused:
            gc.disable()
        try:
            body = packb(encode_message(msg))
        finally:
            if paused:
                gc.enable()
        if len(body) <= self._send_limit or self.state is not State.OPEN:
            frames = [encode_frame(body, self._send_limit)]
        else:
            if len(body) > self.max_message_size:
                raise LocalProtocolError(f"{msg.KIND} of {len(body)} bytes is over the {self.max_message_size}-byte "
                                         "message limit", {"size": len(body), "limit": self.max_message_size})
            step = min(self._send_limit, CHUNK_SIZE) - _CHUNK_HEAD.size
            chunk_id = next(self._chunk_ids)
            view = memoryview(body)
            frames = []
            for index, start in enumerate(range(0, len(body), step)):
                part = view[start:start + step]
                last = start + step >= len(body)
                frames.append(HEADER.pack(_CHUNK_HEAD.size + len(part))
                              + _CHUNK_HEAD.pack(CHUNK_MARK, last, chunk_id, index) + part)
        self._enter(nxt, msg)
        return frames

    def close(self) -> None:
        self.state = State.CLOSED
