"""Reconnecting to a GraphServer that went away: backoff and the retry loop.

Delays start at 100 ms and double up to 2 s, each with +-20 % jitter (so a
crowd of workers does not reconnect in lock step), and retries never give up:
the pipeline keeps running meanwhile and rejoins when the server is back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Awaitable, Callable, TypeVar

from ..protocol.errors import ConsoleError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Backoff:
    def __init__(self, initial: float = 0.1, maximum: float = 2.0, jitter: float = 0.2,
                 rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next_delay(self) -> float:
        """The delay before the next attempt (then doubles, up to the maximum)."""
        base = self._next
        self._next = min(self.maximum, self._next * 2)
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter))


async def retry_until_connected(connect: Callable[[], Awaitable[T]], stop: asyncio.Event,
                                what: str, backoff: Backoff | None = None) -> T | None:
    """Call ``connect()`` until it succeeds (returns its result) or ``stop`` is set (None)."""
    backoff = backoff or Backoff()
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            return await connect()
        except (ConsoleError, OSError) as exc:
            delay = backoff.next_delay()
            if attempt == 1 or attempt % 10 == 0:
                log.warning("%s: GraphServer unreachable (%s); retrying (attempt %d, next in %.2f s)",
                            what, exc, attempt, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except (TimeoutError, asyncio.TimeoutError):
            pass
    return None
