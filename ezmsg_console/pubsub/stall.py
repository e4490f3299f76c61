"""Dropping a subscriber link that stopped acknowledging while its publisher waits for it.

Backpressure means a publisher waits for its slowest subscriber. A subscriber
that stops acknowledging altogether (a hung process, a peer that reads and
never answers) would stall the source, and every other subscriber of it,
forever. :class:`LinkWatchdog` looks once a second (nothing on the data path:
a link counts the reads that brought acknowledgements, a publisher flags
while it waits) and closes a link that held slots without acknowledging any
for ``stall_s`` seconds *while its publisher was waiting for a slot*; its
slots are released and the publisher goes on. The subscriber sees its link
close and links again (a healthy one that was merely slow loses the messages
it held). ``EZMSG_CONSOLE_LINK_STALL_S`` sets the bound (``0``: never drop).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from .publisher import Publisher

log = logging.getLogger(__name__)

LINK_STALL_ENV = "EZMSG_CONSOLE_LINK_STALL_S"
DEFAULT_LINK_STALL_S = 60.0
"""Seconds a subscriber may hold a waiting publisher's slots without acknowledging any."""


def link_stall_from_env() -> float:
    raw = os.environ.get(LINK_STALL_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_LINK_STALL_S
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %g", LINK_STALL_ENV, raw, DEFAULT_LINK_STALL_S)
        return DEFAULT_LINK_STALL_S
    return max(0.0, value)


class LinkWatchdog:
    """Checks the links of ``publishers()`` every ``tick`` seconds (see the module documentation)."""

    def __init__(self, publishers: Callable[[], Iterable[Publisher]], stall_s: float) -> None:
        self.publishers = publishers
        self.stall_s = stall_s
        self.tick = min(1.0, stall_s / 4) if stall_s > 0 else 1.0
        self.dropped = 0

    async def run(self) -> None:
        if self.stall_s <= 0:
            return
        while True:
            await asyncio.sleep(self.tick)
            self.check()

    def check(self) -> None:
        for pub in list(self.publishers()):
            for link in list(pub.links):
                if not (pub.waiting and link.outstanding) or link.acks_seen != link.watch_mark:
                    link.watch_mark, link.stalled_for = link.acks_seen, 0.0
                    continue
                link.stalled_for += self.tick
                if link.stalled_for >= self.stall_s:
                    self.dropped += 1
                    pub.links_dropped += 1
                    log.warning("dropping subscriber %s of %s: it held %d slot(s) for %.0f s without "
                                "acknowledging any while the publisher waited (%s)", link.sub_id or "?",
                                pub.topic, len(link.outstanding), link.stalled_for, LINK_STALL_ENV)
                    link.abort()
