"""Subscriber: receives a topic from every publisher the GraphServer routes to it.

The GraphServer pushes the set of publishers that feed this subscriber; the
subscriber keeps one link per publisher (direct hand-off in the same process,
Unix socket plus shared memory on the same host, TCP otherwise) and re-wires
live when the set changes. Messages are copied out of shared memory as they
arrive, so no receiver can see another's data change underneath it.

A normal subscriber acknowledges a message when its handler is done with it,
so a slow handler holds the publisher back (backpressure). A *leaky*
subscriber acknowledges on arrival and keeps at most ``max_queue`` messages,
dropping the oldest and counting the drops.

Counters are exact for every message. Handler time and latency are measured
for the *timed* messages only: every message while the subscriber handles
fewer than its budget per second, a deterministic 1 in k above it (see
:mod:`..profiling.sampling`); an untimed message reads no clock.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import sys
import time
import types
import weakref
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..protocol.errors import ConsoleError, DecodeError
from ..protocol.graph import PublisherInfo, SubscriberInfo
from ..protocol.profiling import TRACE_CHANNELS
from ..profiling.histogram import Histogram
from ..profiling.sampling import TimingSampler
from . import payload
from .channel import KIND_SHM, SubscriberLink
from .spans import SpanSet, SpanTraceHook

if TYPE_CHECKING:
    from .host import EndpointHost
    from .publisher import Publisher

log = logging.getLogger(__name__)

LINK_TIMEOUT = 5.0
BIG_MESSAGE = 64 * 1024
FLUSH_EVERY = 4096
"""Timed messages between two bucketings of the histograms (see :meth:`Subscriber.flush_histograms`)."""
TraceHook = Callable[[tuple[Any, ...]], None]
"""Called as trace((handler_end_ns, handler_start_ns, arrival_ns, publish_ns, msg_id, channel_code)) when a
handled message is done (one flat tuple, so the hook can be a bound ``list.extend``)."""
_monotonic_ns = time.monotonic_ns
_CHANNEL_CODE = types.MappingProxyType({name: code for code, name in enumerate(TRACE_CHANNELS)})
"""A delivery's channel kind -> its code in a trace row (the batch's channel index)."""


class Delivery:
    """One received message; call :meth:`done` when finished with it.

    A zero-copy message's arrays are read-only views of the publisher's
    shared-memory slot, all derived from one ``anchor`` array. ``done()``
    gives the slot back at once if nothing still refers to them; if the
    handler kept one (directly or through a view of it), the slot is only
    given back when the last such reference dies, so kept data can never be
    overwritten underneath its holder.
    """

    __slots__ = ("msg", "_source", "slot", "msg_id", "publish_ns", "channel", "_acked", "_anchor", "_owner", "big",
                 "arrival_ns", "start_ns", "timed")
    timed: bool  # set with start_ns by recv_delivery() (not in __init__: the hot path assigns it only then)

    def __init__(self, msg: Any, source: Any, slot: int, msg_id: int, publish_ns: int, channel: str,
                 anchor: Any = None, owner: Subscriber | None = None) -> None:
        self.msg = msg
        self._source = source
        self.slot = slot
        self.msg_id = msg_id
        self.publish_ns = publish_ns
        self.channel = channel
        self._acked = False
        self._anchor = anchor
        self._owner = owner
        self.big = False  # a large shared-memory message: acknowledged without coalescing
        self.arrival_ns = 0  # stamped only while tracing
        self.start_ns = 0  # handler start, stamped by recv_delivery() for a timed or traced message
        # ``timed`` (handler time goes into the histogram) is set with start_ns, read only when it is set

    def done(self, *, kept: bool = False) -> None:
        """Finished with the message: the publisher may reuse its slot (idempotent).

        ``kept=True`` says the caller keeps the message on purpose (no warning).
        The time since :meth:`Subscriber.recv_delivery` handed it out is the
        handler time.
        """
        start = self.start_ns
        if start:
            self.start_ns = 0
            end = _monotonic_ns()
            owner: Subscriber = self._owner  # type: ignore[assignment]  # start_ns is only ever set by the owner's recv_delivery()
            if self.timed:
                owner.handler_add(end - start)  # bucketed in bulk, later (histogram.Histogram.flush)
            trace = owner.trace
            if trace is not None:
                trace((end, start, self.arrival_ns, self.publish_ns, self.msg_id, _CHANNEL_CODE[self.channel]))
        if self._acked:
            return
        self._acked = True
        self.msg = None
        anchor, self._anchor = self._anchor, None
        if anchor is not None and sys.getrefcount(anchor) > 2:  # our local and the call's argument
            weakref.finalize(anchor, self._ack)
            if self._owner is not None and not kept:
                self._owner.kept_views += 1
                if self._owner.kept_views == 1:
                    log.warning("a handler on %s kept a zero-copy message after returning; its shared-memory "
                                "slot stays leased until the message is released (copy what you keep, or use "
                                "InputStream(zero_copy=False))", self._owner.topic)
            return
        self._ack()

    def release(self) -> None:
        """Give the slot back now, without checking for kept views (for copies
        taken on arrival, and when stopping)."""
        if not self._acked:
            self._acked = True
            self._anchor = None
            self._ack()

    def _ack(self) -> None:
        source = self._source
        if isinstance(source, SubscriberLink):
            source.ack(self.slot, self.msg_id, self.big)
        else:
            source.release_local(self.slot)


async def open_unix_link(loop: asyncio.AbstractEventLoop, factory: Callable[[], SubscriberLink],
                         address: str) -> tuple[asyncio.BaseTransport, SubscriberLink]:
    """Connect to a publisher's Unix data socket, also at an abstract address (leading NUL).

    The socket is connected here and handed to the loop: uvloop's
    ``create_unix_connection(path=...)`` passes the path to libuv as a C string,
    so an abstract address reads as an empty path there and fails with EINVAL.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        return await loop.create_unix_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise


class _RemoteSource:
    def __init__(self, link: SubscriberLink, channel: str) -> None:
        self.link = link
        self.channel = channel

    def close(self) -> None:
        self.link.close()
        self.link.release_ring()


class Subscriber:
    """Receives messages on ``topic``; use :meth:`recv` or :meth:`recv_delivery`."""

    def __init__(self, info: SubscriberInfo, host: EndpointHost, msg_type: Any = Any,
                 zero_copy: bool = False) -> None:
        self.info = info
        self.topic = info.topic
        self.sub_id = info.sub_id
        self.leaky = info.leaky
        self.max_queue = info.max_queue if info.max_queue > 0 else (1 if info.leaky else 0)
        self._host = host
        self._types = payload.types_for(msg_type)
        self._queue: collections.deque[Delivery] = collections.deque()
        self._arrived = asyncio.Event()
        self._sources: dict[str, Publisher | _RemoteSource] = {}
        self._routes_lock = asyncio.Lock()
        self._routes_changed = asyncio.Event()
        self.zero_copy = zero_copy and not info.leaky  # leaky messages are acknowledged on arrival
        self.received = 0
        self.bytes_received = 0  # payload bytes of SHM/TCP messages (a local hand-off counts 0)
        self.dropped = 0  # leaky drops and messages that could not be decoded
        self.undecodable = 0  # of which: could not be decoded (logged once per subscriber)
        self.last_channel = "UNKNOWN"
        self.kept_views = 0
        self.closed = False
        self.histograms = host.histograms
        self.handler_ns = Histogram()
        self.latency_ns = Histogram()
        self.handler_add = self.handler_ns.pending.append
        self.latency_add = self.latency_ns.pending.append
        self._until_flush = FLUSH_EVERY
        self.timing = TimingSampler(host.timed_budget)
        """Which messages are timed; ``timing.timed`` counts them, ``timing.k`` is the current 1-in-k."""
        self._timed_one = self.timing.timed_one
        self._sampled = self.timing.budget > 0
        self._untimed_left = 1  # countdown: the message that brings it to 0 is timed (so the first one is)
        self.trace_arrival = False  # stamp Delivery.arrival_ns (set by the tracer for the lease metric)
        self.trace: TraceHook | None = None
        self.spans = SpanSet()  # profile_span() durations of timed messages, by label
        self.span_trace: SpanTraceHook | None = None  # set by the tracer for the user_span_ns metric
        self.current: Delivery | None = None
        """The last message handed out that was timed or traced (profile_span() measures only while
        its ``start_ns`` is set, i.e. until its done())."""

    # -- receiving -------------------------------------------------------

    def _push(self, delivery: Delivery, nbytes: int, arrival_ns: int = 0) -> None:
        self.received += 1
        self.bytes_received += nbytes
        self.last_channel = delivery.channel
        if self.trace_arrival:
            delivery.arrival_ns = arrival_ns or _monotonic_ns()
        if self.leaky:
            delivery.release()  # a copy was taken on arrival
            if len(self._queue) >= self.max_queue:
                self._queue.popleft()
                self.dropped += 1
        self._queue.append(delivery)
        self._arrived.set()

    def _on_link_message(self, link: SubscriberLink, kind: int, slot: int, msg_id: int, publish_ns: int,
                         body: memoryview | bytes) -> None:
        anchor = None
        try:
            if self.zero_copy and kind == KIND_SHM:
                anchor = np.frombuffer(body.toreadonly(), dtype=np.uint8)  # type: ignore[union-attr]  # shm: a view
                msg = payload.decode(memoryview(anchor), copy=False, types=self._types)  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python 3.12+ only
            else:
                msg = payload.decode(body, copy=True, types=self._types)
        except Exception as exc:  # noqa: BLE001 - one bad payload is a counted drop, never the end of the run
            self._undecodable(exc, len(body))
            link.ack(slot, msg_id)
            return
        channel = "SHM" if kind == KIND_SHM else "TCP"
        delivery = Delivery(msg, link, slot, msg_id, publish_ns, channel, anchor, self)
        delivery.big = len(body) >= BIG_MESSAGE
        self._push(delivery, len(body))

    def _undecodable(self, exc: BaseException, nbytes: int) -> None:
        """Count a message that cannot be decoded as received and dropped; say why once."""
        self.received += 1
        self.bytes_received += nbytes
        self.dropped += 1
        self.undecodable += 1
        if self.undecodable == 1:
            log.warning("dropping a message on %s that cannot be decoded (%s); further ones are counted as "
                        "drops without a warning", self.topic,
                        exc if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}")

    def _on_remote_host_message(self, link: SubscriberLink, kind: int, slot: int, msg_id: int, publish_ns: int,
                                body: memoryview | bytes) -> None:
        # Another host's monotonic clock: no latency can be computed from it.
        self._on_link_message(link, kind, slot, msg_id, 0, body)

    def deliver_local(self, msg: Any, publisher: Publisher, slot: int, msg_id: int, publish_ns: int) -> None:
        # Handed over inside the publisher's broadcast, right after it took publish_ns: that
        # stamp is the arrival too (no clock read for the lease metric).
        self._push(Delivery(msg, publisher, slot, msg_id, publish_ns, "LOCAL", None, self), 0, publish_ns)

    async def recv_delivery(self) -> Delivery:
        """The next message with its lease; call ``done()`` on it when finished.

        For a timed message (see :attr:`timing`), the time from here to
        ``done()`` is recorded as handler time, and the time since it was
        published (same host) as latency. An untimed message costs a countdown.
        """
        queue = self._queue
        while not queue:
            if self.closed:
                raise ConsoleError(f"subscriber on {self.topic} is closed")
            self._arrived.clear()
            await self._arrived.wait()
        delivery = queue.popleft()
        if self.histograms:
            left = self._untimed_left - 1
            if left:  # not timed: no clock read unless tracing wants the handler span
                self._untimed_left = left
                if self.trace is not None:
                    delivery.start_ns = _monotonic_ns()
                    delivery.timed = False
                    self.current = delivery
                return delivery
            now = _monotonic_ns()  # one read serves the latency, the handler span and the trace
            delivery.start_ns = now
            delivery.timed = True
            self.current = delivery
            published = delivery.publish_ns
            if published:
                self.latency_add(now - published)  # bucketed in bulk, later (histogram.Histogram.flush)
            if self._sampled:
                self._untimed_left = self._timed_one(now, self.received - self.dropped - len(queue))
            else:  # budget 0: every message is timed, no window to keep
                self._untimed_left = 1
                self.timing.timed += 1
            left = self._until_flush - 1
            if left:
                self._until_flush = left
            else:
                self.flush_histograms()
        elif self.trace is not None:
            delivery.start_ns = _monotonic_ns()
            delivery.timed = False
            self.current = delivery
        return delivery

    @property
    def handled(self) -> int:
        """Messages handed out by :meth:`recv_delivery` (received, minus dropped and queued)."""
        return self.received - self.dropped - len(self._queue)

    def retune_timing(self) -> None:
        """Re-pick k if its window has run out (a snapshot calls this, so a subscriber whose
        rate fell is timed more often again without waiting for its next timed message)."""
        timing = self.timing
        if timing.retune(_monotonic_ns(), self.handled):
            self._untimed_left = min(self._untimed_left, timing.k)

    def flush_histograms(self) -> None:
        """Bucket the values recorded since the last flush (reading a histogram does it too).
        :meth:`recv_delivery` calls it every :data:`FLUSH_EVERY` timed messages, which bounds the
        raw values held: each message adds at most one to each histogram (its ``done()`` may come later)."""
        self._until_flush = FLUSH_EVERY
        self.handler_ns.flush()
        self.latency_ns.flush()
        self.spans.flush()

    async def recv(self) -> Any:
        """The next message. Its slot is given back at once, or, for a
        zero-copy message, when the caller drops its last reference to it.
        (No handler time is recorded: there is no handler span to measure.)"""
        delivery = await self.recv_delivery()
        delivery.start_ns = 0
        msg = delivery.msg
        delivery.done(kept=True)
        return msg

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- routes ----------------------------------------------------------

    @property
    def publisher_ids(self) -> list[str]:
        return sorted(self._sources)

    async def wait_for_publishers(self, count: int, timeout: float = LINK_TIMEOUT) -> None:
        """Wait until at least ``count`` publishers are linked (TimeoutError otherwise)."""
        async def linked() -> None:
            while len(self._sources) < count:
                self._routes_changed.clear()
                await self._routes_changed.wait()
        await asyncio.wait_for(linked(), timeout)

    async def update_routes(self, publishers: tuple[PublisherInfo, ...], allow_removal: bool = True) -> None:
        """Make the links match ``publishers`` (the GraphServer's complete set);
        with ``allow_removal=False`` only add the missing ones."""
        async with self._routes_lock:
            if self.closed:
                return
            wanted = {p.pub_id: p for p in publishers}
            for pub_id in [p for p in self._sources if p not in wanted and allow_removal]:
                self._drop_source(pub_id)
            for pub_id, info in wanted.items():
                if pub_id not in self._sources:
                    try:
                        await self._connect(info)
                    except (OSError, ConsoleError, asyncio.TimeoutError, TimeoutError) as exc:
                        log.warning("subscriber on %s could not reach publisher %s on %s: %s",
                                    self.topic, pub_id, info.topic, exc)
            self._routes_changed.set()

    def _drop_source(self, pub_id: str) -> None:
        source = self._sources.pop(pub_id)
        if isinstance(source, _RemoteSource):
            source.close()
        else:
            source.remove_local(self)

    async def _connect(self, info: PublisherInfo) -> None:
        host = self._host
        local = host.local_publisher(info.pub_id)
        if local is not None and not info.force_tcp:
            local.add_local(self)
            self._sources[info.pub_id] = local
            return
        loop = asyncio.get_running_loop()
        same_clock = info.host_id == host.host_id
        same_host = same_clock and not info.force_tcp and bool(info.unix_address)
        hello = {"pub_id": info.pub_id, "sub_id": self.sub_id, "shm": same_host}
        on_message = self._on_link_message if same_clock else self._on_remote_host_message

        def prove(nonce: str) -> str | None:
            return host.link_proof(nonce, info.pub_id, self.sub_id)

        def factory() -> SubscriberLink:
            return SubscriberLink(hello, on_message, prove)

        if same_host:
            _transport, link = await asyncio.wait_for(
                open_unix_link(loop, factory, info.unix_address), LINK_TIMEOUT)
        else:
            _transport, link = await asyncio.wait_for(
                loop.create_connection(factory, info.tcp_host, info.tcp_port), LINK_TIMEOUT)
        reply = await asyncio.wait_for(link.ready, LINK_TIMEOUT)
        if not reply.get("ok"):
            link.close()
            raise ConsoleError(f"publisher refused the link: {reply.get('error')}")
        source = _RemoteSource(link, "SHM" if link.segment is not None else "TCP")
        self._sources[info.pub_id] = source
        link.closed.add_done_callback(lambda _f: self._link_closed(info.pub_id, source))

    def _link_closed(self, pub_id: str, source: _RemoteSource) -> None:
        if self._sources.get(pub_id) is source:
            del self._sources[pub_id]
            self._routes_changed.set()
            source.link.release_ring()

    def publisher_gone(self, publisher: Publisher) -> None:
        """A same-process publisher closed."""
        if self._sources.get(publisher.pub_id) is publisher:
            del self._sources[publisher.pub_id]

    async def close(self) -> None:
        if self.closed:
            return
        async with self._routes_lock:
            self.closed = True
            for pub_id in list(self._sources):
                self._drop_source(pub_id)
        while self._queue:
            self._queue.popleft().done()
        self._arrived.set()
