"""Telling GraphServers apart by the first bytes they send (sans-IO).

Our GraphServer says nothing until the client's Hello. Upstream ezmsg's
GraphServer writes its version first on every new connection: a little-endian
uint64 length and that many bytes of UTF-8 (``b"\\x05\\0\\0\\0\\0\\0\\0\\0" b"3.9.0"``).
:func:`classify_greeting` names what some first bytes are.
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


class GreetingKind(str, enum.Enum):
    SILENT = "silent"  # nothing was said: our GraphServer (or another service that waits for a request)
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
