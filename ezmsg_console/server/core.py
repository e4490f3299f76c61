"""The GraphServer's state: stores plus event streams, with no I/O.

Every operation is synchronous and runs on the server's event loop thread, so
no lock is needed and none is ever held across a socket write: operations
only append to per-peer queues, which the peers' writer tasks drain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Callable

from ..protocol.errors import InvalidRequest, PermissionDenied
from ..protocol.endpoints import RoutesUpdate
from ..protocol.graph import (PERSISTENT_OWNER, GraphMetadata, GraphSnapshot, PublisherInfo, SubscriberInfo,
                              TopologyEvent)
from ..protocol.messages import Role, StreamKind
from ..protocol.process import ErrorCode, Operation, ProcessControlResponse, ProcessRequest
from ..protocol.profiling import ProfilingStreamControl, ProfilingTraceBatch
from ..protocol.settings import ProcessSettingsUpdate, SettingsChangedEvent
from ..protocol.wire import Message
from .endpoints import EndpointStore
from .profiling_hub import DEFAULT_LIMIT, ProfilingHub
from .registry import ProcessRecord, Registry
from .routing import Router, failure
from .settings_store import SettingsStore
from .streams import EventStream, Subscription
from .topology import TopologyStore


class ServerCore:
    """Topology, registry and push streams of one GraphServer run (one epoch)."""

    def __init__(self, *, server_id: str, history_limit: int = 10000, queue_events: int = 1024,
                 queue_bytes: int = 4 * 1024 * 1024, clock: Callable[[], float] = time.time,
                 send_to_peer: Callable[[str, Message], bool] | None = None,
                 profiling_limit: int = DEFAULT_LIMIT, max_event_bytes: int | None = None) -> None:
        self.server_id = server_id
        self._send_to_peer = send_to_peer or (lambda peer_id, msg: False)
        self.router = Router(self._send_to_peer)
        self.endpoints = EndpointStore()
        self.epoch = uuid.uuid4().hex
        self.clock = clock
        self.topology = TopologyStore(self.epoch, clock)
        self.registry = Registry(clock)
        self.settings = SettingsStore(self.epoch, clock)
        self._edit_locks: dict[str, asyncio.Lock] = {}
        self.streams: dict[StreamKind, EventStream] = {
            kind: EventStream(kind, history_limit, queue_events, queue_bytes)
            for kind in (StreamKind.TOPOLOGY, StreamKind.SETTINGS)
        }
        self.profiling = ProfilingHub(self.registry, limit=profiling_limit, queue_events=queue_events,
                                      queue_bytes=queue_bytes, clock=clock,
                                      max_event_bytes=max_event_bytes or queue_bytes // 2)

    def close(self) -> None:
        """Stop background work (the profiling streams' timers); the server is shutting down."""
        self.profiling.close()

    # -- peers -----------------------------------------------------------

    def peer_joined(self, peer_id: str, name: str, role: Role, peer_address: str) -> None:
        self.registry.add_peer(peer_id, name, role, peer_address)

    def peer_left(self, peer_id: str, subscriptions: list[str]) -> None:
        """Release everything the peer owned: edges, metadata, streams."""
        for stream_id in subscriptions:
            self.unsubscribe(stream_id)
        record = self.registry.remove_peer(peer_id)
        self.settings.release_session(peer_id)
        self._publish_settings(self.settings.process_gone(peer_id))
        self.endpoints.drop_peer(peer_id)
        self._publish_topology(self.topology.drop_owner(peer_id))
        self._update_routes()
        if isinstance(record, ProcessRecord):
            self.router.process_gone(peer_id)
            self.profiling.process_left(peer_id)
            # Always, even for a process that never registered a unit.
            self._publish_topology(self.topology.process_changed(peer_id))

    # -- topology --------------------------------------------------------

    def _publish_topology(self, event: TopologyEvent | None) -> None:
        if event is not None:
            self.streams[StreamKind.TOPOLOGY].publish(event)
            if event.changed_topics:
                self._update_routes()

    def _publish_settings(self, events: list[SettingsChangedEvent]) -> None:
        for event in events:
            self.streams[StreamKind.SETTINGS].publish(event)

    def settings_events(self, after_seq: int) -> tuple[list[SettingsChangedEvent], tuple[int, int] | None]:
        """Retained settings events after ``after_seq``, and the lost range if it is too old."""
        stream = self.streams[StreamKind.SETTINGS]
        events = [ev for ev, _size in stream.history if ev.seq > after_seq]
        first = events[0].seq if events else stream.last_seq + 1
        gap = (after_seq + 1, first - 1) if after_seq + 1 < first and after_seq < stream.last_seq else None
        return events, gap  # type: ignore[return-value]

    def _update_routes(self) -> None:
        for sub, publishers in self.endpoints.changed_routes(self.topology.upstream):
            self._send_to_peer(sub.peer_id, RoutesUpdate(sub.sub_id, publishers))

    def _owner(self, peer_id: str, role: Role, persistent: bool) -> str:
        if role is Role.OBSERVER:
            raise PermissionDenied("observers cannot change the topology", {"role": role.value})
        return PERSISTENT_OWNER if persistent else peer_id

    def connect(self, peer_id: str, role: Role, from_topic: str, to_topic: str, persistent: bool) -> None:
        self._publish_topology(self.topology.connect(from_topic, to_topic, self._owner(peer_id, role, persistent)))

    def disconnect(self, peer_id: str, role: Role, from_topic: str, to_topic: str, persistent: bool) -> None:
        self._publish_topology(
            self.topology.disconnect(from_topic, to_topic, self._owner(peer_id, role, persistent))
        )

    def clear_session(self, peer_id: str) -> None:
        self.registry.clear_metadata(peer_id)
        self.settings.release_session(peer_id)
        self._publish_topology(self.topology.drop_owner(peer_id))

    # -- processes -------------------------------------------------------

    def register_process(self, peer_id: str, pid: int, host: str, units: tuple[str, ...]) -> None:
        if self.registry.register_process(peer_id, pid, host, units):
            self._publish_topology(self.topology.process_changed(peer_id))

    def update_ownership(self, peer_id: str, added: tuple[str, ...], removed: tuple[str, ...]) -> None:
        if self.registry.update_ownership(peer_id, added, removed):
            self._publish_topology(self.topology.process_changed(peer_id))

    async def process_request(self, session_id: str, req: ProcessRequest) -> ProcessControlResponse:
        if req.operation in (Operation.UPDATE_SETTING_FIELD.value, Operation.UPDATE_SETTINGS.value):
            return await self._edit_setting(session_id, req)
        owner = self.registry.owner_of(req.unit_address)
        return await self.router.route(owner.process_id if owner else None, session_id, req)

    async def _edit_setting(self, session_id: str, req: ProcessRequest) -> ProcessControlResponse:
        """Edits of one component run one at a time; a stale ``expected_seq`` is a CONFLICT.
        The owner reports the new value before it answers, so the answer carries
        the seq of the event it caused and a snapshot already shows the value."""
        lock = self._edit_locks.setdefault(req.unit_address, asyncio.Lock())
        async with lock:
            state = self.settings.state(req.unit_address)
            if req.expected_seq is not None and (state is None or state.seq != req.expected_seq):
                current_seq = state.seq if state is not None else None
                return failure(req.request_id, ErrorCode.CONFLICT,
                               f"settings of {req.unit_address} changed since seq {req.expected_seq} "
                               f"(now {current_seq})", None,
                               {"current_seq": current_seq,
                                "current_value": state.value.structured_value if state else None})
            owner = self.registry.owner_of(req.unit_address)
            response = await self.router.route(owner.process_id if owner else None, session_id, req)
            if response.ok:
                after = self.settings.state(req.unit_address)
                payload = {"value": response.payload, "seq": after.seq if after else None}
                response = dataclasses.replace(response, payload=payload)
        if not lock.locked() and not lock._waiters:  # noqa: SLF001 - drop idle locks
            self._edit_locks.pop(req.unit_address, None)
        return response

    def process_settings_update(self, peer_id: str, req: ProcessSettingsUpdate) -> None:
        record = self.registry.process(peer_id)
        event = self.settings.process_update(peer_id, record.units, req.component_address, req.value,
                                             req.timestamp)
        self._publish_settings([event])

    # -- data-plane endpoints --------------------------------------------

    def register_publisher(self, peer_id: str, info: PublisherInfo) -> None:
        self.endpoints.add_publisher(peer_id, info)
        self._update_routes()

    def register_subscriber(self, peer_id: str, info: SubscriberInfo) -> None:
        self.endpoints.add_subscriber(peer_id, info)
        self._update_routes()

    def unregister_endpoint(self, peer_id: str, endpoint_id: str) -> None:
        self.endpoints.remove(peer_id, endpoint_id)
        self._update_routes()

    # -- metadata --------------------------------------------------------

    def register_metadata(self, peer_id: str, role: Role, metadata: GraphMetadata) -> None:
        if role is not Role.SESSION:
            raise PermissionDenied(f"a {role.value} connection cannot register session metadata",
                                   {"role": role.value})
        self.registry.register_metadata(peer_id, metadata)
        self._publish_settings(self.settings.register_metadata(peer_id, metadata))

    # -- snapshot and streams --------------------------------------------

    def snapshot(self) -> GraphSnapshot:
        return GraphSnapshot(
            server_id=self.server_id,
            server_epoch=self.epoch,
            topology_seq=self.topology.seq,
            timestamp=self.clock(),
            graph=self.topology.graph(),
            edge_owners=self.topology.edge_owners(),
            sessions=self.registry.session_infos(self.topology.edges_of),
            processes=self.registry.process_infos(),
            publishers=self.endpoints.publisher_list(),
            subscribers=self.endpoints.subscriber_list(),
        )

    def subscribe(self, kind: StreamKind, after_seq: int, notify: Callable[[], None]) -> Subscription:
        stream = self.streams[kind]
        if after_seq < -1:
            raise InvalidRequest("after_seq must be >= 0 (or -1 for live events only)", {"after_seq": after_seq})
        start_after = stream.last_seq if after_seq == -1 else after_seq
        return stream.subscribe(uuid.uuid4().hex, start_after, notify)

    def subscribe_profiling(self, control: ProfilingStreamControl, notify: Callable[[], None]) -> Subscription:
        """Open a ``profiling`` trace stream (InvalidRequest for a bad control)."""
        return self.profiling.subscribe(uuid.uuid4().hex, control, notify)

    def profiling_update(self, peer_id: str, role: Role, batch: ProfilingTraceBatch) -> None:
        """A process pushed trace samples; only process connections may."""
        if role is not Role.PROCESS or peer_id not in self.registry.processes:
            raise PermissionDenied(f"a {role.value} connection cannot push profiling trace samples",
                                   {"role": role.value})
        self.profiling.ingest(peer_id, batch.pid, batch.host, batch)

    def unsubscribe(self, stream_id: str) -> Subscription | None:
        for stream in self.streams.values():
            sub = stream.unsubscribe(stream_id)
            if sub is not None:
                return sub
        return self.profiling.unsubscribe(stream_id)

    def current_seq(self, kind: StreamKind) -> int:
        return self.streams[kind].last_seq
