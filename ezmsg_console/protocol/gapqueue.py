"""A bounded FIFO of sequenced items that records loss as an explicit gap.

Theory of operation
-------------------
Push streams must never block their producer and never lose events silently.
:class:`GapQueue` holds at most ``max_items`` items (and about ``max_bytes``).
When an item does not fit it is dropped and a :class:`GapMarker` is put at the
tail instead; further drops widen that same marker. As soon as the reader has
made room, new items queue behind the marker, so the reader sees: everything
before the loss, one marker naming exactly the lost sequence numbers, then the
live items again. The server uses it per subscriber; the client uses it
between its socket reader and a slow application.

Pure data structure: no I/O and no event loop.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any


@dataclasses.dataclass(slots=True)
class GapMarker:
    """Sequence numbers ``from_seq..to_seq`` (inclusive) were lost."""

    from_seq: int
    to_seq: int
    reason: str


class GapQueue:
    __slots__ = ("max_items", "max_bytes", "_items", "_bytes", "dropped")

    def __init__(self, max_items: int = 1024, max_bytes: int = 4 * 1024 * 1024) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("a GapQueue needs room for at least one item")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def _open_gap(self) -> GapMarker | None:
        if self._items and isinstance(self._items[-1][0], GapMarker):
            return self._items[-1][0]
        return None

    def put(self, seq: int, item: Any, size: int = 0) -> bool:
        """Queue ``item`` (sequence number ``seq``); on no room record a gap.

        Returns whether the item itself was queued.
        """
        if len(self._items) < self.max_items and self._bytes + size <= self.max_bytes:
            self._items.append((item, size))
            self._bytes += size
            return True
        self.dropped += 1
        self.put_gap(seq, seq, "overflow")
        return False

    def put_gap(self, from_seq: int, to_seq: int, reason: str) -> None:
        """Record lost ``from_seq..to_seq``, merging with an open gap at the tail."""
        gap = self._open_gap()
        if gap is not None:
            gap.from_seq = min(gap.from_seq, from_seq)
            gap.to_seq = max(gap.to_seq, to_seq)
            if reason not in gap.reason.split("+"):
                gap.reason = f"{gap.reason}+{reason}"
            return
        self._items.append((GapMarker(from_seq, to_seq, reason), 0))

    def pop(self) -> Any:
        """The oldest item or GapMarker; IndexError when empty."""
        item, size = self._items.popleft()
        self._bytes -= size
        return item

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
