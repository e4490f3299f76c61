"""Telling GraphServers apart by the first bytes they send (sans-IO).

Both kinds speak first on every new connection. Ours sends a SERVER_HELLO
frame: a big-endian uint32 length, then a msgpack map whose first entry is
``"kind": "SERVER_HELLO"``. Upstream ezmsg's GraphServer writes its version:
a little-endian uint64 length and that many bytes of UTF-8
(``b"\\x05\\0\\0\\0\\0\\0\\0\\0" b"3.9.0"``). :func:`classify_greeting` names what
some first bytes are.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

MAX_VERSION_LENGTH = 64
"""Longest version text an ezmsg greeting can carry (anything longer is not one)."""
GREETING_READ = 8 + MAX_VERSION_LENGTH
"""Bytes to read to see a whole ezmsg greeting."""
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*([.+-]?[A-Za-z0-9]+)*")


NATIVE_MARK = b"\xa4kind\xacSERVER_HELLO"
"""msgpack of the SERVER_HELLO frame's first entry, after the frame length and the map header."""
NATIVE_FRAME_MAX = 1 << 16
"""A SERVER_HELLO frame is far smaller than this (a longer first frame is not one)."""


class GreetingKind(str, enum.Enum):
    SILENT = "silent"  # nothing was said (a service that waits for a request)
    NATIVE = "native"  # an ezmsg-console GraphServer (its SERVER_HELLO frame)
    EZMSG = "ezmsg"  # an upstream ezmsg GraphServer; ``version`` is its version
    INCOMPLETE = "incomplete"  # could be an ezmsg greeting: read more
    OTHER = "other"  # something that is not a GraphServer of either kind


class Greeting(NamedTuple):
    kind: GreetingKind
    version: str = ""


def classify_greeting(data: bytes) -> Greeting:
    """What the first bytes a server sent (before any request) say about it."""
    if not data:
        return Greeting(GreetingKind.SILENT)
    native = _native(data)
    if native is not None:
        return Greeting(native)
    if len(data) < 8:
        return _maybe_short(data)
    length = int.from_bytes(data[:8], "little")
    if not 0 < length <= MAX_VERSION_LENGTH:
        return Greeting(GreetingKind.OTHER)
    if len(data) < 8 + length:
        return Greeting(GreetingKind.INCOMPLETE)
    try:
        version = data[8:8 + length].decode("ascii")
    except UnicodeDecodeError:
        return Greeting(GreetingKind.OTHER)
    if not _VERSION.fullmatch(version):
        return Greeting(GreetingKind.OTHER)
    return Greeting(GreetingKind.EZMSG, version)


def _maybe_short(data: bytes) -> Greeting:
    """Fewer than 8 bytes: a greeting's length is small, so every byte after the first is zero."""
    return Greeting(GreetingKind.INCOMPLETE) if 0 < data[0] <= MAX_VERSION_LENGTH and not any(data[1:]) \
        else Greeting(GreetingKind.OTHER)


def _native(data: bytes) -> GreetingKind | None:
    """NATIVE or INCOMPLETE if ``data`` is (the start of) our SERVER_HELLO frame, else None."""
    if len(data) < 4:
        return GreetingKind.INCOMPLETE if not any(data[:2]) else None  # the length's high bytes are 0
    if not 0 < int.from_bytes(data[:4], "big") < NATIVE_FRAME_MAX:
        return None
    body = data[4:]
    if not body:
        return GreetingKind.INCOMPLETE
    if 0x80 <= body[0] <= 0x8F:  # fixmap
        mark = body[1:]
    elif body[0] == 0xDE:  # map 16
        mark = body[3:]
    else:
        return None
    seen = min(len(mark), len(NATIVE_MARK))
    if mark[:seen] != NATIVE_MARK[:seen]:
        return None
    return GreetingKind.NATIVE if seen == len(NATIVE_MARK) else GreetingKind.INCOMPLETE
