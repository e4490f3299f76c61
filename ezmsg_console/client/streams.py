"""Client side of push streams: a bounded receiver and the async iterator users see.

The connection's reader never waits for the application: each stream's pushes
go into a :class:`GapQueue`. If the application reads too slowly, it gets a
:class:`StreamGap` naming the lost sequence numbers instead of unbounded
memory growth; gaps the server reports arrive the same way. After a gap, the
caller resynchronises from a snapshot (``GraphContext.snapshot()``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generator

from ..protocol import messages as m
from ..protocol.errors import ConnectionClosed, ConsoleError, RequestTimeout
from ..protocol.gapqueue import GapMarker, GapQueue
from ..protocol.graph import Event

if TYPE_CHECKING:
    from .connection import ClientConnection

StreamItem = Event | m.StreamGap
"""What a subscription yields: an event (e.g. TopologyEvent) or a gap marker."""


class StreamReceiver:
    """Bounded, gap-marking buffer between the socket reader and the application."""

    def __init__(self, max_queue: int = 1024) -> None:
        self.queue = GapQueue(max_items=max_queue)
        self.stream_id = ""
        self.kind = m.StreamKind.TOPOLOGY
        self.current_seq = 0
        self._ready = asyncio.Event()
        self._ended: ConsoleError | None = None
        self._closed_by_server = False

    def attach(self, stream_id: str, kind: m.StreamKind, current_seq: int) -> None:
        self.stream_id, self.kind, self.current_seq = stream_id, kind, current_seq

    def push(self, msg: m.Push) -> None:
        if isinstance(msg, m.StreamEvent):
            self.queue.put(msg.seq, msg.event)
        elif isinstance(msg, m.StreamGap):
            self.queue.put_gap(msg.from_seq, msg.to_seq, msg.reason)
        elif isinstance(msg, m.StreamClosed):
            self._closed_by_server = True
        self._ready.set()

    def end(self, error: ConsoleError) -> None:
        self._ended = error
        self._ready.set()

    async def get(self, timeout: float | None) -> StreamItem | None:
        """The next item; None when the stream ended normally; raises the
        connection's error when it ended abnormally."""
        while not len(self.queue):
            if self._closed_by_server:
                return None
            if self._ended is not None:
                raise self._ended
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                raise RequestTimeout(f"no stream event within {timeout:.1f} s", {"timeout": timeout}) from None
        item = self.queue.pop()
        if isinstance(item, GapMarker):
            return m.StreamGap(self.stream_id, self.kind, item.from_seq, item.to_seq, item.reason)
        return item  # type: ignore[no-any-return]


class SubscriptionBase:
    """What every subscription offers on top of ``start``/``next``/``close``: ``await sub``
    subscribes, ``async with`` unsubscribes at the end, ``async for`` reads until the end."""

    async def start(self) -> Any:
        raise NotImplementedError

    async def next(self, timeout: float | None = 5.0) -> Any:
        raise NotImplementedError

    async def close(self, timeout: float = 2.0) -> None:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, Any]:
        return self.start().__await__()

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        item = await self.next(timeout=None)
        if item is None:
            raise StopAsyncIteration
        return item


class EventSubscription(SubscriptionBase):
    """A push stream: ``await`` it to subscribe now, or just ``async for`` over it.

    Yields events in sequence order, or a :class:`StreamGap` where events were
    lost. ``await sub.next(timeout=...)`` reads one item with a deadline.
    ``await sub.close()`` (or leaving ``async with``) unsubscribes.
    """

    def __init__(self, open_stream: Callable[[StreamReceiver], Awaitable[ClientConnection]],
                 max_queue: int = 1024) -> None:
        self._open_stream = open_stream
        self._receiver = StreamReceiver(max_queue)
        self._conn: ClientConnection | None = None
        self._closed = False

    @property
    def stream_id(self) -> str:
        return self._receiver.stream_id

    @property
    def current_seq(self) -> int:
        """The newest sequence number at subscribe time."""
        return self._receiver.current_seq

    async def start(self) -> EventSubscription:
        if self._conn is None:
            self._conn = await self._open_stream(self._receiver)
        return self

    async def next(self, timeout: float | None = 5.0) -> StreamItem | None:
        """The next event or gap; None once the stream has been closed."""
        if self._closed:
            return None
        await self.start()
        return await self._receiver.get(timeout)

    async def close(self, timeout: float = 2.0) -> None:
        """Unsubscribe (best effort if the connection is already gone)."""
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if conn is None or conn.closed or not self._receiver.stream_id:
            return
        stream_id = self._receiver.stream_id
        try:
            await conn.request(lambda rid: m.Unsubscribe(rid, stream_id), m.Ack, timeout)
        except (ConnectionClosed, RequestTimeout):
            pass
        finally:
            conn.forget_stream(stream_id)
