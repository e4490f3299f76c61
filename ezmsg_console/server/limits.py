"""The GraphServer's limits on peers: connections, unfinished frames, failed handshakes."""

from __future__ import annotations

import collections
import time
from typing import Callable

from ..protocol.framing import FRAME_TIMEOUT_S, MAX_CONNECTIONS

__all__ = ["AUTH_FAILURES", "AUTH_WINDOW_S", "FRAME_TIMEOUT_S", "LISTEN_BACKLOG", "MAX_CONNECTIONS", "AuthFailures"]

LISTEN_BACKLOG = 1024
"""Connections the kernel queues before they are accepted (a burst of workers starting together)."""
AUTH_FAILURES = 5
AUTH_WINDOW_S = 30.0
"""Failed handshakes from one address within the window after which it is refused outright until
the oldest failure leaves the window (online token guessing: 5 tries per 30 s, not thousands)."""


class AuthFailures:
    """Recent failed handshakes per peer host (bounded: the least recent hosts are forgotten)."""

    def __init__(self, limit: int = AUTH_FAILURES, window_s: float = AUTH_WINDOW_S, max_hosts: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_hosts = max_hosts
        self.clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _recent(self, host: str) -> collections.deque[float] | None:
        times = self._failures.get(host)
        if times is None:
            return None
        cutoff = self.clock() - self.window_s
        while times and times[0] < cutoff:
            times.popleft()
        if not times:
            del self._failures[host]
            return None
        return times

    def retry_after(self, host: str) -> float:
        """Seconds until ``host`` may try again (0.0: it may now)."""
        times = self._recent(host)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_s - self.clock())

    def failed(self, host: str) -> None:
        times = self._recent(host)
        if times is None:
            times = self._failures[host] = collections.deque(maxlen=self.limit)
        times.append(self.clock())
        self._failures.move_to_end(host)
        while len(self._failures) > self.max_hosts:
            self._failures.popitem(last=False)
