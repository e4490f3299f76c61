"""The closed list of wire message kinds, kind tag -> class.

Explicit on purpose: decoding can only ever build one of these classes.
Add a new message kind here when you define it.
"""

from __future__ import annotations

import types
from typing import Mapping

from . import endpoints, graph, messages, process, profiling, settings
from .wire import Message

_TYPES: tuple[type[Message], ...] = (
    messages.ServerHello,
    messages.Hello,
    messages.Welcome,
    messages.PingRequest,
    messages.SyncRequest,
    messages.RegisterMetadata,
    messages.ConnectEdge,
    messages.DisconnectEdge,
    messages.ClearSession,
    messages.SnapshotRequest,
    messages.Subscribe,
    messages.Unsubscribe,
    messages.ShutdownRequest,
    messages.Ack,
    messages.Pong,
    messages.SnapshotReply,
    messages.Subscribed,
    messages.ErrorReply,
    messages.StreamEvent,
    messages.StreamGap,
    messages.StreamClosed,
    graph.TopologyEvent,
    endpoints.RegisterPublisher,
    endpoints.RegisterSubscriber,
    endpoints.UnregisterEndpoint,
    endpoints.RoutesUpdate,
    process.ProcessRegister,
    process.ProcessUpdateOwnership,
    process.ProcessRequest,
    process.ProcessControlResponse,
    process.RoutedRequest,
    process.RoutedResponse,
    settings.SettingsChangedEvent,
    settings.ProcessSettingsUpdate,
    settings.SettingsSnapshotRequest,
    settings.SettingsSnapshotReply,
    settings.SettingsEventsRequest,
    settings.SettingsEventsReply,
    profiling.ProcessProfilingTraceUpdate,
    profiling.ProfilingSubscribe,
    profiling.ProfilingTraceEvent,
)

KINDS: Mapping[str, type[Message]] = types.MappingProxyType({cls.KIND: cls for cls in _TYPES})
