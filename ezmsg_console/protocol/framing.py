"""Length-prefixed frames: a 4-byte unsigned big-endian length, then the body.

The decoder is incremental and sans-IO: feed it whatever bytes arrived, in any
chunking, and it hands back complete bodies. The length is checked against the
limit as soon as the 4 header bytes are in, so an oversized claim is refused
before a single byte of its body is buffered.
"""

from __future__ import annotations

import struct

from .errors import FrameTooLarge, LocalProtocolError

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
MAX_FRAME_SIZE = 16 * 1024 * 1024
"""Default largest frame body after the handshake (configurable on the server)."""
HANDSHAKE_MAX_FRAME_SIZE = 4 * 1024
"""Largest frame body accepted before the handshake completes."""
ABSOLUTE_MAX_FRAME_SIZE = 2**32 - 1
MAX_MESSAGE_SIZE = 256 * 1024 * 1024
"""Default largest message after joining its chunks (see ``connection``; configurable on the server)."""
MAX_CONNECTIONS = 1024
"""Default peers a GraphServer serves at once; one more is refused with TOO_MANY_CONNECTIONS."""
FRAME_TIMEOUT_S = 30.0
"""Default seconds a peer may take to finish a frame (or a chunked message) after its first byte:
then it is closed and what it had sent is freed (a peer cannot pin a 15 MiB partial frame forever)."""
MAX_PENDING_BYTES = 8 * 1024 * 1024
"""Default bytes of replies a GraphServer queues for one peer before closing it as a slow consumer
(what was pending before a message decides: one message is always delivered whole)."""


def encode_frame(body: bytes, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """Prefix ``body`` with its length; refuse bodies over ``max_frame_size``."""
    size = len(body)
    if size > max_frame_size:
        raise LocalProtocolError(
            f"frame of {size} bytes is over the {max_frame_size}-byte limit",
            {"size": size, "limit": max_frame_size},
        )
    return HEADER.pack(size) + body


_HAND_OVER = 64 * 1024
"""A whole-buffer frame at least this long is returned as the decoder's own bytearray (no copy of
16 MiB of a big frame); smaller ones as bytes."""


class FrameDecoder:
    """Turns a byte stream into frame bodies.

    ``max_frame_size`` may be changed between feeds (it is raised once the
    handshake completes). After a :class:`FrameTooLarge` the decoder is
    poisoned: the stream has lost framing and the connection must close.
    """

    __slots__ = ("max_frame_size", "_buffer", "_need", "_failed")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 0 < max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in 1..{ABSOLUTE_MAX_FRAME_SIZE}")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._need: int | None = None  # body length of the frame being read
        self._failed: FrameTooLarge | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return every frame body it completes, in order."""
        self.add(data)
        frames: list[bytes] = []
        while (body := self.next_frame()) is not None:
            frames.append(body)
        return frames

    def add(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` without parsing it (see :meth:`next_frame`)."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None until more bytes arrive.

        The limit is checked per frame, so it may change between calls (the
        handshake raises it) without touching frames already parsed.
        """
        if self._failed is not None:
            raise self._failed
        buf = self._buffer
        if self._need is None:
            if len(buf) < HEADER_SIZE:
                return None
            (size,) = HEADER.unpack_from(buf, 0)
            if size > self.max_frame_size:
                self._failed = FrameTooLarge(
                    f"frame length {size} is over the {self.max_frame_size}-byte limit",
                    {"size": size, "limit": self.max_frame_size},
                )
                del buf[:]
                raise self._failed
            del buf[:HEADER_SIZE]
            self._need = size
        need = self._need
        if len(buf) < need:
            return None
        self._need = None
        if len(buf) == need:  # the frame is all that is buffered (as a big one is): hand it over, no copy
            self._buffer = bytearray()
            return bytes(buf) if need < _HAND_OVER else buf  # type: ignore[return-value]  # bytes-like
        body = bytes(memoryview(buf)[:need])  # one copy (a slice of a bytearray would be two)
        del buf[:need]
        return body
