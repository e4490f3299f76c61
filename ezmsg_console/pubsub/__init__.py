"""Publishers, subscribers and their channels (same process, shared memory, TCP)."""

from __future__ import annotations

from .host import EndpointHost
from .publisher import Publisher
from .subscriber import Delivery, Subscriber

__all__ = ["Delivery", "EndpointHost", "Publisher", "Subscriber"]
