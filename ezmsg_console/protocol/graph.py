"""Graph data carried by messages: session metadata, topology events, snapshots.

These are plain frozen dataclasses (no ``kind`` tag of their own, except
events, which are tagged so a push stream can carry any event type).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .wire import Message

PERSISTENT_OWNER = "persistent"
"""How an edge made by a one-shot (non-session) connect is listed among its owners."""


class ComponentType(str, enum.Enum):
    UNIT = "unit"
    COLLECTION = "collection"


class StreamDirection(str, enum.Enum):
    INPUT = "input"
    OUTPUT = "output"


class TopologyEventType(str, enum.Enum):
    GRAPH_CHANGED = "GRAPH_CHANGED"
    PROCESS_CHANGED = "PROCESS_CHANGED"


@dataclasses.dataclass(frozen=True, slots=True)
class StreamMetadata:
    """One input or output stream of a unit; ``topic`` is ``<address>/<name>``."""

    name: str
    direction: StreamDirection
    topic: str
    msg_type: str = "typing.Any"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentMetadata:
    """A collection or unit as a session declares it.

    ``initial_settings`` is plain data (a dataclass's field dict); the schema
    arrives with the settings issue and is plain data too.
    """

    address: str
    name: str
    component_type: ComponentType
    python_type: str = ""
    children: tuple[str, ...] = ()
    streams: tuple[StreamMetadata, ...] = ()
    settings_type: str | None = None
    initial_settings: Any = None
    settings_schema: Any = None
    dynamic_settings: bool = False

    def __post_init__(self) -> None:
        validate_address(self.address)


@dataclasses.dataclass(frozen=True, slots=True)
class GraphMetadata:
    """Everything one session registers: its components, addresses unique."""

    components: tuple[ComponentMetadata, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for comp in self.components:
            if comp.address in seen:
                raise ValueError(f"component address {comp.address!r} appears twice")
            seen.add(comp.address)

    @property
    def addresses(self) -> list[str]:
        return sorted(c.address for c in self.components)


def validate_address(address: str) -> str:
    """A component address: '/'-joined, non-empty segments, no surrounding space."""
    if not address or address != address.strip():
        raise ValueError(f"invalid component address {address!r}")
    if any(not part for part in address.split("/")):
        raise ValueError(f"invalid component address {address!r}: empty segment")
    return address


@dataclasses.dataclass(frozen=True, slots=True)
class Event(Message):
    """Base of push-stream events (tagged, so one stream frame type carries any).
    ``seq`` is the event's number in its own stream, from 1."""

    seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class TopologyEvent(Event):
    """An edge appeared or vanished, or a process's unit set changed."""

    KIND = "TOPOLOGY_EVENT"
    event_type: TopologyEventType
    timestamp: float
    changed_topics: tuple[str, ...]
    source_session_id: str | None = None
    source_process_id: str | None = None
    server_epoch: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class EdgeRef:
    from_topic: str
    to_topic: str


@dataclasses.dataclass(frozen=True, slots=True)
class EdgeOwners:
    """An edge and its owners (session ids, or ``"persistent"``), sorted."""

    from_topic: str
    to_topic: str
    owners: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    name: str
    role: str
    peer_address: str
    connected_since: float
    edges: tuple[EdgeRef, ...] = ()
    metadata: GraphMetadata | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessInfo:
    process_id: str
    pid: int | None
    host: str | None
    units: tuple[str, ...]
    connected_since: float


@dataclasses.dataclass(frozen=True, slots=True)
class PublisherInfo:
    """Where and how to reach one publisher.

    ``host_id`` identifies a machine *and* network namespace: subscribers with
    the same ``host_id`` use the Unix socket and shared memory; others use TCP.
    """

    pub_id: str
    topic: str
    peer_id: str = ""  # filled in by the server: the connection that registered it
    host_id: str = ""
    hostname: str = ""
    pid: int = 0
    unix_address: str = ""
    tcp_host: str = ""
    tcp_port: int = 0
    num_buffers: int = 32
    buf_size: int = 65536
    force_tcp: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class SubscriberInfo:
    sub_id: str
    topic: str
    peer_id: str = ""  # filled in by the server
    host_id: str = ""
    hostname: str = ""
    pid: int = 0
    leaky: bool = False
    max_queue: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class GraphSnapshot:
    """The whole control-plane view at one topology sequence number."""

    server_id: str
    server_epoch: str
    topology_seq: int
    timestamp: float
    graph: dict[str, tuple[str, ...]]
    edge_owners: tuple[EdgeOwners, ...]
    sessions: tuple[SessionInfo, ...]
    processes: tuple[ProcessInfo, ...] = ()
    publishers: tuple[PublisherInfo, ...] = ()
    subscribers: tuple[SubscriberInfo, ...] = ()

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(e.from_topic, e.to_topic) for e in self.edge_owners]

    def session(self, session_id: str) -> SessionInfo | None:
        for s in self.sessions:
            if s.session_id == session_id:
                return s
        return None
