"""Data-plane endpoints as the control plane sees them.

Publishers and subscribers register with the GraphServer through their
process's connection. The server works out, for every subscriber, which
publishers feed it (every publisher whose topic reaches the subscriber's topic
through the edges, transitively) and pushes :class:`RoutesUpdate` to the
subscriber's connection whenever that set changes. Payloads never pass
through the server: the subscriber connects to each publisher directly.
"""

from __future__ import annotations

import dataclasses

from .graph import PublisherInfo, SubscriberInfo
from .messages import Request
from .wire import Message


@dataclasses.dataclass(frozen=True, slots=True)
class RegisterPublisher(Request):
    KIND = "REGISTER_PUBLISHER"
    info: PublisherInfo


@dataclasses.dataclass(frozen=True, slots=True)
class RegisterSubscriber(Request):
    KIND = "REGISTER_SUBSCRIBER"
    info: SubscriberInfo


@dataclasses.dataclass(frozen=True, slots=True)
class UnregisterEndpoint(Request):
    KIND = "UNREGISTER_ENDPOINT"
    endpoint_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class RoutesUpdate(Message):
    """Server -> the subscriber's connection: the complete set of publishers
    that now feed ``sub_id`` (it replaces the previous set)."""

    KIND = "ROUTES_UPDATE"
    sub_id: str
    publishers: tuple[PublisherInfo, ...]
