"""GraphContext and the framed client connection."""

from __future__ import annotations

from .connection import ClientConnection
from .context import GraphContext
from .streams import EventSubscription

__all__ = ["ClientConnection", "EventSubscription", "GraphContext"]
