"""The GraphServer: asyncio shell around pure, synchronous stores."""

from __future__ import annotations

from .graph_server import GraphServer

__all__ = ["GraphServer"]
