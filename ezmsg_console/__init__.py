"""ezmsg-console: operator console and control plane for live ezmsg-style pipelines.

The control plane is a :class:`GraphServer` (asyncio TCP, msgpack frames);
:class:`GraphContext` is its client API. Every error raised on purpose is a
:class:`ConsoleError` (see :mod:`ezmsg_console.protocol.errors`).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GraphContext": "ezmsg_console.client",
    "GraphServer": "ezmsg_console.server",
    "AddressCollision": "ezmsg_console.protocol.errors",
    "AuthError": "ezmsg_console.protocol.errors",
    "ConfigurationError": "ezmsg_console.protocol.errors",
    "ConnectionClosed": "ezmsg_console.protocol.errors",
    "ConsoleError": "ezmsg_console.protocol.errors",
    "CycleError": "ezmsg_console.protocol.errors",
    "ProtocolError": "ezmsg_console.protocol.errors",
    "RequestTimeout": "ezmsg_console.protocol.errors",
    "ServerError": "ezmsg_console.protocol.errors",
    "ServerUnreachable": "ezmsg_console.protocol.errors",
    "ComponentMetadata": "ezmsg_console.protocol.graph",
    "ComponentType": "ezmsg_console.protocol.graph",
    "GraphMetadata": "ezmsg_console.protocol.graph",
    "StreamDirection": "ezmsg_console.protocol.graph",
    "StreamMetadata": "ezmsg_console.protocol.graph",
}


def __getattr__(name: str) -> Any:
    """Load public names on first use, so importing a subpackage (e.g. the
    sans-IO protocol) does not drag in the server, the client or asyncio."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ezmsg_console' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__version__ = "0.1.0"
"""The package's one version (pyproject.toml reads it from here; ``ezmsg-console --version`` prints it)."""

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
