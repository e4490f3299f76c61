"""Every wire message kind: handshake, requests, replies and pushes.

Requests carry a ``request_id`` chosen by the sender (unique per connection);
the reply echoes it. Pushes carry the ``stream_id`` the subscribe reply gave,
the stream kind and a sequence number; loss is never silent but a
:class:`StreamGap`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .graph import Event, GraphMetadata, GraphSnapshot
from .wire import Message

PROTOCOL_VERSION = 2
"""2: messages over the frame limit travel as chunk frames (see ``connection``)."""


class Role(str, enum.Enum):
    SESSION = "session"
    PROCESS = "process"
    OBSERVER = "observer"


class StreamKind(str, enum.Enum):
    TOPOLOGY = "topology"
    SETTINGS = "settings"
    PROFILING = "profiling"


# -- handshake ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ServerHello(Message):
    """First frame from the server: who it is and the nonce to authenticate against."""

    KIND = "SERVER_HELLO"
    protocol_version: int
    server_id: str
    server_epoch: str
    nonce: str
    auth_required: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Hello(Message):
    """The client's answer: version, role, a name for humans, and its proof."""

    KIND = "HELLO"
    protocol_version: int
    role: Role
    name: str
    client_nonce: str
    auth: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Welcome(Message):
    """Handshake done. ``server_proof`` shows the server knows the token too. ``data_secret``
    (process connections only) is what their publishers and subscribers prove to each other
    when they link (see ``auth.link_proof``); sessions and observers never get it."""

    KIND = "WELCOME"
    protocol_version: int
    server_id: str
    server_epoch: str
    peer_id: str
    role: Role
    max_frame_size: int
    server_proof: str | None = None
    data_secret: str | None = None


# -- requests ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Request(Message):
    """Base of requests; ``request_id`` is echoed by the reply."""

    request_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class PingRequest(Request):
    KIND = "PING"


@dataclasses.dataclass(frozen=True, slots=True)
class SyncRequest(Request):
    """Answered once every earlier request on this connection has been handled."""

    KIND = "SYNC"


@dataclasses.dataclass(frozen=True, slots=True)
class RegisterMetadata(Request):
    KIND = "SESSION_REGISTER"
    metadata: GraphMetadata


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectEdge(Request):
    """Add an edge. ``persistent`` edges belong to no session and outlive it."""

    KIND = "CONNECT"
    from_topic: str
    to_topic: str
    persistent: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class DisconnectEdge(Request):
    KIND = "DISCONNECT"
    from_topic: str
    to_topic: str
    persistent: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ClearSession(Request):
    """Drop this session's edges and metadata (the session stays connected)."""

    KIND = "SESSION_CLEAR"


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotRequest(Request):
    KIND = "SNAPSHOT"


@dataclasses.dataclass(frozen=True, slots=True)
class Subscribe(Request):
    """Open a push stream, replaying retained history after ``after_seq``
    (-1: no replay, live events only)."""

    KIND = "SUBSCRIBE"
    stream: StreamKind
    after_seq: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Unsubscribe(Request):
    KIND = "UNSUBSCRIBE"
    stream_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ShutdownRequest(Request):
    """Stop the server; honoured only after the handshake and from loopback."""

    KIND = "SHUTDOWN"


# -- replies -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Reply(Message):
    """Base of replies; ``request_id`` is the request's."""

    request_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class Ack(Reply):
    KIND = "ACK"


@dataclasses.dataclass(frozen=True, slots=True)
class Pong(Reply):
    KIND = "PONG"
    server_time: float
    server_epoch: str


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotReply(Reply):
    KIND = "SNAPSHOT_REPLY"
    snapshot: GraphSnapshot


@dataclasses.dataclass(frozen=True, slots=True)
class Subscribed(Reply):
    """The stream is open; pushes carry ``stream_id``. ``current_seq`` is the
    newest event at subscribe time (replayed events come first)."""

    KIND = "SUBSCRIBED"
    stream_id: str
    stream: StreamKind
    current_seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorReply(Message):
    """A typed error. ``request_id`` is None for connection-level errors
    (bad frame, failed handshake), which are followed by a close."""

    KIND = "ERROR"
    request_id: int | None
    code: str
    message: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


# -- pushes ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Push(Message):
    """Base of server pushes on an open stream."""

    stream_id: str
    stream: StreamKind


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEvent(Push):
    KIND = "STREAM_EVENT"
    seq: int
    event: Event


@dataclasses.dataclass(frozen=True, slots=True)
class StreamGap(Push):
    """Events ``from_seq..to_seq`` (inclusive) will never arrive on this stream:
    the subscriber should resynchronise from a snapshot. ``reason`` is
    ``history`` (older than retained) or ``overflow`` (reader too slow)."""

    KIND = "STREAM_GAP"
    from_seq: int
    to_seq: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class StreamClosed(Push):
    """The server ended the stream (unsubscribe or shutdown)."""

    KIND = "STREAM_CLOSED"
    reason: str = ""
