"""ezmsg-console: operator console and control plane for live ezmsg-style pipelines.

The control plane is a :class:`GraphServer` (asyncio TCP, msgpack frames);
:class:`GraphContext` is its client API. Every error raised on purpose is a
:class:`ConsoleError` (see :mod:`ezmsg_console.protocol.errors`).
"""

from __future__ import annotations

from .client import GraphContext
from .protocol.errors import (
    AddressCollision,
    AuthError,
    ConfigurationError,
    ConnectionClosed,
    ConsoleError,
    CycleError,
    ProtocolError,
    RequestTimeout,
    ServerError,
    ServerUnreachable,
)
from .protocol.graph import ComponentMetadata, ComponentType, GraphMetadata, StreamDirection, StreamMetadata
from .server import GraphServer

__version__ = "0.1.0"

__all__ = [
    "AddressCollision",
    "AuthError",
    "ComponentMetadata",
    "ComponentType",
    "ConfigurationError",
    "ConnectionClosed",
    "ConsoleError",
    "CycleError",
    "GraphContext",
    "GraphMetadata",
    "GraphServer",
    "ProtocolError",
    "RequestTimeout",
    "ServerError",
    "ServerUnreachable",
    "StreamDirection",
    "StreamMetadata",
    "__version__",
]
