"""Upstream push streams (async generators) as this project's subscriptions.

Upstream's ``subscribe_*_events`` are async generators that connect on their
first iteration and end when the GraphServer goes away. :class:`UpstreamStream`
runs one in a task, translates each item, and buffers it in a
:class:`~ezmsg_console.protocol.gapqueue.GapQueue`, so the application reads
with ``next(timeout)`` exactly as from a native subscription: an event, a
StreamGap where the buffer overflowed, None once the stream ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable

from ..client.streams import SubscriptionBase
from ..protocol import messages as m
from ..protocol.errors import ConnectionClosed, RequestTimeout
from ..protocol.gapqueue import GapMarker, GapQueue

log = logging.getLogger(__name__)


class UpstreamStream(SubscriptionBase):
    def __init__(self, open_iterator: Callable[[], AsyncIterator[Any]], translate: Callable[[Any], Any],
                 kind: m.StreamKind, *, max_queue: int = 1024, on_end: Callable[[], None] | None = None) -> None:
        self._open = open_iterator
        self._translate = translate
        self.kind = kind
        self.stream_id = f"ezmsg-{kind.value.lower()}"
        self._queue = GapQueue(max_items=max_queue)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._on_end = on_end or (lambda: None)
        self._seq = 0

    async def start(self) -> UpstreamStream:
        if self._task is None:
            self._task = asyncio.ensure_future(self._pump())
        return self

    async def _pump(self) -> None:
        iterator = self._open()
        try:
            async for raw in iterator:
                try:
                    item = self._translate(raw)
                except (ValueError, TypeError, AttributeError, KeyError) as exc:
                    log.warning("an ezmsg %s item could not be read: %s", self.kind.value.lower(), exc)
                    continue
                seq = int(getattr(item, "seq", 0) or 0) or self._seq + 1
                self._seq = seq
                self._queue.put(seq, item)
                self._ready.set()
        except asyncio.CancelledError:
            raise
        except (OSError, EOFError, RuntimeError, asyncio.IncompleteReadError) as exc:
            self._error = exc
        finally:
            self._ended = True
            self._ready.set()
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except (OSError, RuntimeError, asyncio.CancelledError):
                    pass
            if not self._closed:
                self._on_end()

    async def next(self, timeout: float | None = 5.0) -> Any:
        """The next event or gap; None once the stream has ended (the server went away) or was closed."""
        if self._closed:
            return None
        await self.start()
        while not len(self._queue):
            if self._ended:
                if self._error is not None:
                    raise ConnectionClosed(f"the ezmsg {self.kind.value.lower()} stream ended: {self._error}")
                return None
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                raise RequestTimeout(f"no stream event within {timeout:.1f} s", {"timeout": timeout}) from None
        item = self._queue.pop()
        if isinstance(item, GapMarker):
            return m.StreamGap(self.stream_id, self.kind, item.from_seq, item.to_seq, item.reason)
        return item

    async def close(self, timeout: float = 2.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await asyncio.wait_for(self._task, timeout)
            except (asyncio.CancelledError, asyncio.TimeoutError, TimeoutError, Exception):  # noqa: BLE001
                pass
