"""Publisher: one topic's sender, with a ring of ``num_buffers`` slots.

Every message to at least one subscriber takes a slot until every subscriber
it went to has acknowledged it, so at most ``num_buffers`` messages are in
flight: a slow subscriber makes :meth:`Publisher.broadcast` wait
(backpressure) instead of growing memory. Payloads for same-host subscribers
are written once into the slot's shared memory; TCP subscribers get the bytes
inline. Same-process subscribers get the object itself (numpy arrays as
read-only views).

The ring grows to fit: a message larger than a slot makes a new ring with
slots of its size plus an eighth (rounded up to 64 KiB), announced on every
shared-memory link before the message (``KIND_RING``); no slot is copied and
nobody waits: messages still leased stay in the old ring, whose memory is
kept until the publisher closes (at most the size of the last ring again:
each ring is at least 9/8 of the one before). A ring never grows beyond
``MAX_RING_BYTES`` (``$EZMSG_CONSOLE_MAX_RING_BYTES``, default 1 GiB): a
message too big for that goes inline over the socket instead.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..protocol.codec import packb
from ..protocol.graph import PublisherInfo
from . import payload
from .channel import KIND_INLINE, KIND_RING, KIND_SHM, MSG, PublisherLink
from .shm import Segment, new_name

if TYPE_CHECKING:
    from .subscriber import Subscriber

log = logging.getLogger(__name__)

MAX_RING_ENV = "EZMSG_CONSOLE_MAX_RING_BYTES"
DEFAULT_MAX_RING_BYTES = 1 << 30
SLOT_ROUND = 64 * 1024


def max_ring_bytes() -> int:
    """The most shared memory one publisher's ring may take (``$EZMSG_CONSOLE_MAX_RING_BYTES``)."""
    try:
        return max(0, int(os.environ.get(MAX_RING_ENV, "") or DEFAULT_MAX_RING_BYTES))
    except ValueError:
        return DEFAULT_MAX_RING_BYTES


YIELD_BYTES = 16 * 1024 * 1024
"""After sending this many payload bytes, broadcast yields once to the event loop."""

PublishHook = Callable[[tuple[int, int, int]], None]
"""Called as hook((publish_ns, msg_id, backpressure_wait_ns)) after each send (one flat tuple, so the hook
can be a bound ``list.extend``); ``publish_ns`` is the send stamp the message carries
(``time.monotonic_ns()``), so a hook needs no clock of its own."""


def local_view(msg: Any) -> Any:
    """What a same-process subscriber receives: arrays as read-only views."""
    if isinstance(msg, np.ndarray):
        view = msg.view()
        view.flags.writeable = False
        return view
    return msg


class Publisher:
    """Sends messages on ``topic`` to every subscriber the GraphServer routes to it."""

    def __init__(self, info: PublisherInfo, *, run_tag: str) -> None:
        self.info = info
        self.topic = info.topic
        self.pub_id = info.pub_id
        self.num_buffers = info.num_buffers
        self.buf_size = info.buf_size
        self._run_tag = run_tag
        self._segment: Segment | None = None
        self._retired: list[Segment] = []  # rings replaced by a bigger one (messages may still be in them)
        self.max_ring_bytes = max_ring_bytes()
        self.rings_grown = 0
        self._leases = [0] * self.num_buffers
        self._free: collections.deque[int] = collections.deque(range(self.num_buffers))
        self._slot_freed = asyncio.Event()
        self.links: list[PublisherLink] = []
        self.local: list[Subscriber] = []
        self.msg_id = 0
        self.bytes_sent = 0  # encoded size, once per message that left the process
        self.backpressure_waits = 0
        self.waiting = False  # waiting for a free slot (the stall watchdog looks)
        self.links_dropped = 0  # links the stall watchdog closed (pubsub.stall)
        self.backpressure_wait_ns = 0
        self._since_yield = 0
        self.closed = False
        self.hook: PublishHook | None = None

    # -- links -----------------------------------------------------------

    def attach(self, link: PublisherLink, hello: dict[str, Any]) -> dict[str, Any]:
        """Accept a subscriber's link; returns the reply (ring geometry)."""
        if self.closed:
            return {"ok": False, "error": f"publisher {self.pub_id} is closed"}
        link.sub_id = str(hello.get("sub_id", ""))
        link.use_shm = bool(hello.get("shm")) and not self.info.force_tcp
        link.on_ack = self._on_ack
        link.on_lost = self._on_lost
        if link.use_shm and self._segment is None:
            self._segment = Segment(new_name(self._run_tag), self.num_buffers * self.buf_size, create=True)
        self.links.append(link)
        return {
            "ok": True,
            "shm_name": self._segment.name if link.use_shm and self._segment is not None else None,
            "num_buffers": self.num_buffers,
            "buf_size": self.buf_size,
        }

    def _on_ack(self, link: PublisherLink, slot: int) -> None:
        self._release(slot)

    def _on_lost(self, link: PublisherLink) -> None:
        if link in self.links:
            self.links.remove(link)
        for slot in list(link.outstanding):
            self._release(slot)
        link.outstanding.clear()

    def add_local(self, sub: Subscriber) -> None:
        if sub not in self.local:
            self.local.append(sub)

    def remove_local(self, sub: Subscriber) -> None:
        if sub in self.local:
            self.local.remove(sub)

    # -- slots -----------------------------------------------------------

    def _release(self, slot: int) -> None:
        self._leases[slot] -= 1
        if self._leases[slot] == 0:
            self._free.append(slot)
            self._slot_freed.set()

    @property
    def in_flight(self) -> int:
        """Slots currently leased by at least one subscriber."""
        return self.num_buffers - len(self._free)

    async def _wait_for_slot(self) -> int:
        self.waiting = True  # for the stall watchdog (pubsub.stall)
        try:
            while not self._free:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                if self.closed:
                    raise asyncio.CancelledError("publisher closed")
        finally:
            self.waiting = False
        return self._free.pop()

    # -- sending ---------------------------------------------------------

    async def broadcast(self, msg: Any) -> None:
        """Send ``msg`` to every current subscriber; waits while the ring is full."""
        links, local = self.links, self.local
        msg_id = self.msg_id
        self.msg_id = msg_id + 1
        if not links and not local:
            if self.hook is not None:
                self.hook((time.monotonic_ns(), msg_id, 0))
            return
        waited = 0
        if self._free:
            slot = self._free.pop()  # the most recently freed slot: still in the CPU's cache
        else:
            start = time.perf_counter_ns()
            slot = await self._wait_for_slot()
            waited = time.perf_counter_ns() - start
            self.backpressure_waits += 1
            self.backpressure_wait_ns += waited
            links, local = self.links, self.local  # may have changed while waiting
        self._leases[slot] = len(links) + len(local)
        if self._leases[slot] == 0:  # every subscriber left while we waited
            self._leases[slot] = 1
            self._release(slot)
            return
        now = time.monotonic_ns()
        nbytes = 0
        if links:
            enc = payload.encode(msg)
            nbytes = enc.nbytes
            if nbytes > self.buf_size and self._segment is not None:
                self._grow(nbytes, links)
            fits = nbytes <= self.buf_size and self._segment is not None
            written = False
            inline: bytes | None = None
            for link in links:
                link.outstanding.add(slot)
                if link.use_shm and fits:
                    if not written:
                        base = slot * self.buf_size
                        payload.write_into(enc, self._segment.buf[base:base + nbytes])  # type: ignore[union-attr]
                        written = True
                    link.send(MSG.pack(KIND_SHM, slot, msg_id, now, nbytes))
                else:
                    if not link.writable.is_set():  # flow control: the socket is backed up
                        await link.writable.wait()
                    if inline is None:
                        inline = payload.to_bytes(enc)
                    link.send(MSG.pack(KIND_INLINE, slot, msg_id, now, nbytes), inline)
        self.bytes_sent += nbytes
        if local:
            view = local_view(msg)
            for sub in local:
                sub.deliver_local(view, self, slot, msg_id, now)
        if self.hook is not None:
            self.hook((now, msg_id, waited))
        self._since_yield += nbytes
        if self._since_yield >= YIELD_BYTES:
            # Let acknowledgements in every few MiB: the slots they free are reused
            # while still in cache, instead of the copies cycling through the whole ring.
            self._since_yield = 0
            await asyncio.sleep(0)

    def _grow(self, nbytes: int, links: list[PublisherLink]) -> None:
        """A ring whose slots hold ``nbytes`` (and an eighth more), announced on every shared-memory
        link; nothing happens if that ring would exceed :attr:`max_ring_bytes` (the message goes inline)."""
        size = -(-(nbytes + nbytes // 8) // SLOT_ROUND) * SLOT_ROUND
        if size * self.num_buffers > self.max_ring_bytes:
            return
        assert self._segment is not None
        try:
            segment = Segment(new_name(self._run_tag), self.num_buffers * size, create=True)
        except OSError as exc:  # no shared memory to spare: this message (and the next big ones) go inline
            if self.max_ring_bytes:
                log.warning("%s: cannot grow the shared-memory ring to %d bytes (%s); big messages go inline",
                            self.topic, self.num_buffers * size, exc)
            self.max_ring_bytes = 0
            return
        self._retired.append(self._segment)
        self._segment, self.buf_size = segment, size
        self.rings_grown += 1
        announcement = packb({"shm_name": segment.name, "buf_size": size})
        for link in links:
            if link.use_shm:
                link.send(MSG.pack(KIND_RING, 0, 0, 0, len(announcement)), announcement)

    def release_local(self, slot: int) -> None:
        """A same-process subscriber is done with the message in ``slot``."""
        self._release(slot)

    async def drain(self, timeout: float) -> bool:
        """Wait until every message sent has been acknowledged (or ``timeout``)."""
        async def empty() -> None:
            while self.in_flight and not self.closed:
                self._slot_freed.clear()
                await self._slot_freed.wait()
        try:
            await asyncio.wait_for(empty(), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            return False
        return True

    async def close(self) -> None:
        """Close every link and unlink the shared memory."""
        if self.closed:
            return
        self.closed = True
        self._slot_freed.set()
        for link in list(self.links):
            link.close()
        self.links.clear()
        for sub in list(self.local):
            sub.publisher_gone(self)
        self.local.clear()
        for segment in self._retired:
            segment.close()
        self._retired.clear()
        if self._segment is not None:
            self._segment.close()
            self._segment = None
