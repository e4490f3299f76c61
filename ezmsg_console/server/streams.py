"""Push fan-out: retained history plus one bounded queue per subscriber.

Theory of operation
-------------------
Each :class:`EventStream` (topology now; settings and profiling later) keeps
the last ``history_limit`` events. A subscriber asks for everything after
``after_seq``: retained events are replayed into its queue, preceded by a gap
marker if ``after_seq`` is older than what is retained. Live events are then
appended as they are published.

Publishing never waits. Each subscriber's queue is a :class:`GapQueue`
(1024 events / 4 MiB by default): a reader that falls behind loses events,
but is told exactly which ones by a gap marker, and can resynchronise from a
snapshot. Memory per subscriber is bounded; the publisher is never blocked.

The queue is drained by the peer's writer task, which is woken through the
``notify`` callback the peer passes in.
"""

from __future__ import annotations

import collections
from typing import Callable

from ..protocol.codec import packb
from ..protocol.gapqueue import GapQueue
from ..protocol.graph import Event
from ..protocol.messages import StreamKind
from ..protocol.wire import to_wire


class Subscription:
    """One subscriber's view of a stream: its id, queue and wake-up callback."""

    __slots__ = ("stream_id", "kind", "queue", "notify")

    def __init__(self, stream_id: str, kind: StreamKind, queue: GapQueue, notify: Callable[[], None]) -> None:
        self.stream_id = stream_id
        self.kind = kind
        self.queue = queue
        self.notify = notify


class EventStream:
    """History and live fan-out for one kind of event."""

    def __init__(self, kind: StreamKind, history_limit: int = 10000,
                 queue_events: int = 1024, queue_bytes: int = 4 * 1024 * 1024) -> None:
        self.kind = kind
        self.history: collections.deque[tuple[Event, int]] = collections.deque(maxlen=history_limit)
        self.last_seq = 0
        self.queue_events = queue_events
        self.queue_bytes = queue_bytes
        self._subs: dict[str, Subscription] = {}

    def __len__(self) -> int:
        return len(self._subs)

    def publish(self, event: Event) -> None:
        """Append to history and offer to every subscriber; never blocks."""
        seq = event.seq
        size = len(packb(to_wire(event)))
        self.history.append((event, size))
        self.last_seq = seq
        for sub in self._subs.values():
            sub.queue.put(seq, event, size)
            sub.notify()

    def subscribe(self, stream_id: str, after_seq: int, notify: Callable[[], None]) -> Subscription:
        """Open a subscription replaying retained events with seq > ``after_seq``."""
        sub = Subscription(stream_id, self.kind, GapQueue(self.queue_events, self.queue_bytes), notify)
        replay = [(ev, size) for ev, size in self.history if ev.seq > after_seq]
        # Keep room for live events: replay at most half a queue, and mark
        # the older remainder (or anything no longer retained) as one gap.
        room = max(1, self.queue_events // 2)
        skipped = replay[:-room] if len(replay) > room else []
        replay = replay[len(skipped):]
        first_kept = replay[0][0].seq if replay else self.last_seq + 1
        if after_seq + 1 < first_kept and after_seq < self.last_seq:
            sub.queue.put_gap(after_seq + 1, first_kept - 1, "history")
        for event, size in replay:
            sub.queue.put(event.seq, event, size)
        self._subs[stream_id] = sub
        if len(sub.queue):
            notify()
        return sub

    def unsubscribe(self, stream_id: str) -> Subscription | None:
        return self._subs.pop(stream_id, None)
