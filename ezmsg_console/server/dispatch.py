"""Request kind -> a small handler that calls the core and builds the reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..protocol import endpoints as ep
from ..protocol import messages as m
from ..protocol import process as pc
from ..protocol import profiling as pf
from ..protocol import settings as st
from ..protocol.errors import InvalidRequest, PermissionDenied
from ..protocol.wire import Message

if TYPE_CHECKING:
    from .core import ServerCore
    from .peer import Peer

Handler = Callable[["ServerCore", "Peer", Any], "Message | None"]


def _ping(core: ServerCore, peer: Peer, req: m.Request) -> Message:
    return m.Pong(req.request_id, server_time=core.clock(), server_epoch=core.epoch)


def _ack(core: ServerCore, peer: Peer, req: m.Request) -> Message:
    return m.Ack(req.request_id)


def _register(core: ServerCore, peer: Peer, req: m.RegisterMetadata) -> Message:
    core.register_metadata(peer.peer_id, peer.role, req.metadata)
    return m.Ack(req.request_id)


def _connect(core: ServerCore, peer: Peer, req: m.ConnectEdge) -> Message:
    core.connect(peer.peer_id, peer.role, req.from_topic, req.to_topic, req.persistent)
    return m.Ack(req.request_id)


def _disconnect(core: ServerCore, peer: Peer, req: m.DisconnectEdge) -> Message:
    core.disconnect(peer.peer_id, peer.role, req.from_topic, req.to_topic, req.persistent)
    return m.Ack(req.request_id)


def _clear(core: ServerCore, peer: Peer, req: m.Request) -> Message:
    core.clear_session(peer.peer_id)
    return m.Ack(req.request_id)


def _snapshot(core: ServerCore, peer: Peer, req: m.Request) -> Message:
    return m.SnapshotReply(req.request_id, core.snapshot())


def _subscribe(core: ServerCore, peer: Peer, req: m.Subscribe) -> Message:
    if req.stream not in core.streams:
        raise InvalidRequest(f"the {req.stream.value} stream is opened with its own request, not SUBSCRIBE",
                             {"stream": req.stream.value})
    current = core.current_seq(req.stream)
    sub = core.subscribe(req.stream, req.after_seq, peer.wake_writer)
    peer.subscriptions[sub.stream_id] = sub
    return m.Subscribed(req.request_id, stream_id=sub.stream_id, stream=req.stream, current_seq=current)


def _unsubscribe(core: ServerCore, peer: Peer, req: m.Unsubscribe) -> Message:
    sub = peer.subscriptions.pop(req.stream_id, None)
    if sub is None:
        raise InvalidRequest(f"no stream {req.stream_id} on this connection", {"stream_id": req.stream_id})
    core.unsubscribe(req.stream_id)
    peer.queue_control(m.StreamClosed(req.stream_id, sub.kind, "unsubscribed"))
    return m.Ack(req.request_id)


def _profiling_subscribe(core: ServerCore, peer: Peer, req: pf.ProfilingSubscribe) -> Message:
    sub = core.subscribe_profiling(req.control, peer.wake_writer)
    peer.subscriptions[sub.stream_id] = sub
    return m.Subscribed(req.request_id, stream_id=sub.stream_id, stream=m.StreamKind.PROFILING, current_seq=0)


def _shutdown(core: ServerCore, peer: Peer, req: m.Request) -> Message:
    if not peer.may_shutdown:
        raise PermissionDenied(
            "SHUTDOWN is honoured only from loopback peers",
            {"peer_address": peer.peer_address},
        )
    peer.request_server_shutdown()
    return m.Ack(req.request_id)


def _endpoint_owner(peer: Peer, what: str) -> None:
    """Only a process connection (a worker, a script's endpoints) may have data-plane endpoints: an
    observer or a session that could register a publisher could feed any topic, a unit's
    INPUT_SETTINGS included, past update_setting's validation."""
    if peer.role is not m.Role.PROCESS:
        raise PermissionDenied(f"a {peer.role.value} connection cannot register a {what}: only a process "
                               "connection has data-plane endpoints", {"role": peer.role.value})


def _register_publisher(core: ServerCore, peer: Peer, req: ep.RegisterPublisher) -> Message:
    _endpoint_owner(peer, "publisher")
    core.register_publisher(peer.peer_id, req.info)
    return m.Ack(req.request_id)


def _register_subscriber(core: ServerCore, peer: Peer, req: ep.RegisterSubscriber) -> Message:
    _endpoint_owner(peer, "subscriber")
    core.register_subscriber(peer.peer_id, req.info)
    return m.Ack(req.request_id)


def _unregister_endpoint(core: ServerCore, peer: Peer, req: ep.UnregisterEndpoint) -> Message:
    core.unregister_endpoint(peer.peer_id, req.endpoint_id)
    return m.Ack(req.request_id)


def _process_register(core: ServerCore, peer: Peer, req: pc.ProcessRegister) -> Message:
    core.register_process(peer.peer_id, req.pid, req.host, req.units)
    return m.Ack(req.request_id)


def _update_ownership(core: ServerCore, peer: Peer, req: pc.ProcessUpdateOwnership) -> Message:
    core.update_ownership(peer.peer_id, req.added_units, req.removed_units)
    return m.Ack(req.request_id)


def _process_request(core: ServerCore, peer: Peer, req: pc.ProcessRequest) -> Any:
    if not req.timeout > 0:
        raise InvalidRequest("timeout must be > 0", {"timeout": req.timeout})
    return core.process_request(peer.peer_id, req)  # a coroutine: answered when the owner answers


def _settings_update(core: ServerCore, peer: Peer, req: st.ProcessSettingsUpdate) -> Message:
    core.process_settings_update(peer.peer_id, req)
    return m.Ack(req.request_id)


def _settings_snapshot(core: ServerCore, peer: Peer, req: st.SettingsSnapshotRequest) -> Message:
    return st.SettingsSnapshotReply(req.request_id, core.settings.snapshot(), core.settings.seq)


def _settings_events(core: ServerCore, peer: Peer, req: st.SettingsEventsRequest) -> Message:
    events, gap = core.settings_events(req.after_seq)
    return st.SettingsEventsReply(req.request_id, tuple(events), core.settings.seq,
                                  gap[0] if gap else None, gap[1] if gap else None)


HANDLERS: dict[type, Handler] = {
    st.ProcessSettingsUpdate: _settings_update,
    st.SettingsSnapshotRequest: _settings_snapshot,
    st.SettingsEventsRequest: _settings_events,
    pc.ProcessRegister: _process_register,
    pc.ProcessUpdateOwnership: _update_ownership,
    pc.ProcessRequest: _process_request,
    ep.RegisterPublisher: _register_publisher,
    ep.RegisterSubscriber: _register_subscriber,
    ep.UnregisterEndpoint: _unregister_endpoint,
    m.PingRequest: _ping,
    m.SyncRequest: _ack,
    m.RegisterMetadata: _register,
    m.ConnectEdge: _connect,
    m.DisconnectEdge: _disconnect,
    m.ClearSession: _clear,
    m.SnapshotRequest: _snapshot,
    m.Subscribe: _subscribe,
    m.Unsubscribe: _unsubscribe,
    pf.ProfilingSubscribe: _profiling_subscribe,
    m.ShutdownRequest: _shutdown,
}


def dispatch(core: ServerCore, peer: Peer, msg: Message) -> Message | None:
    """Handle one incoming message; return the reply to send (None for none).

    ConsoleErrors propagate to the peer, which turns them into ErrorReply.
    """
    if isinstance(msg, pc.RoutedResponse):
        core.router.resolve(peer.peer_id, msg)
        return None
    if isinstance(msg, pf.ProcessProfilingTraceUpdate):  # a push from a worker: no reply
        core.profiling_update(peer.peer_id, peer.role, msg.batch)
        return None
    handler = HANDLERS.get(type(msg))
    if handler is None or not isinstance(msg, m.Request):
        raise InvalidRequest(f"{msg.KIND} is not a request this server handles", {"kind": msg.KIND})
    return handler(core, peer, msg)
