"""Trace selections per observer: each console's own, merged into what the process records.

Two consoles tracing the same worker each keep their own selection (which
endpoints, metrics, sample_mod, TTL); the worker records the union of the
live ones, and one console switching its trace off, or letting its TTL run
out, ends only its own selection. The union is taken field by field: a
filter that is "all" (None or empty) in any selection is "all" in the union,
else the union of the names; metrics likewise; ``sample_mod`` is the finest
(the smallest) asked for; the TTL lasts until the last selection expires.
(Selections that mix topic and endpoint filters are therefore unioned into a
superset, never a subset: every console still sees everything it asked for.)
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from ..protocol.profiling import ProfilingTraceControl

_FILTERS = ("publisher_topics", "subscriber_topics", "publisher_endpoint_ids", "subscriber_endpoint_ids",
            "metrics")
MAX_OBSERVERS = 64
"""Selections kept at once (the oldest is dropped beyond this)."""


def _union(values: Iterable[tuple[str, ...] | None]) -> tuple[str, ...] | None:
    seen: dict[str, None] = {}
    for value in values:
        if not value:
            return None  # "all" on that side
        seen.update(dict.fromkeys(value))
    return tuple(seen)


def merge(controls: list[ProfilingTraceControl], ttl_seconds: float) -> ProfilingTraceControl:
    """One control that records at least what every one of ``controls`` asks for."""
    if not controls:
        return ProfilingTraceControl(enabled=False)
    fields = {name: _union(getattr(c, name) for c in controls) for name in _FILTERS}
    return ProfilingTraceControl(enabled=True, sample_mod=min(c.sample_mod for c in controls),
                                 ttl_seconds=ttl_seconds, **fields)


class TraceSelections:
    """Each observer's live trace control with its expiry (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._by_observer: dict[str, tuple[ProfilingTraceControl, float]] = {}

    def __len__(self) -> int:
        return len(self._by_observer)

    def set(self, observer: str, control: ProfilingTraceControl) -> None:
        """``observer``'s selection is now ``control`` (a disabled one removes it)."""
        self._by_observer.pop(observer, None)
        if control.enabled:
            self._by_observer[observer] = (control, self.clock() + control.ttl_seconds)
            while len(self._by_observer) > MAX_OBSERVERS:
                self._by_observer.pop(next(iter(self._by_observer)))

    def expire(self) -> bool:
        """Drop the selections whose TTL passed; True if any was dropped."""
        now = self.clock()
        gone = [k for k, (_c, until) in self._by_observer.items() if until <= now]
        for key in gone:
            del self._by_observer[key]
        return bool(gone)

    def own(self, observer: str) -> tuple[ProfilingTraceControl | None, float]:
        """``observer``'s live control and its seconds left (None, 0.0 if it has none)."""
        entry = self._by_observer.get(observer)
        if entry is None or entry[1] <= self.clock():
            return None, 0.0
        return entry[0], entry[1] - self.clock()

    def merged(self) -> ProfilingTraceControl:
        """What the process records: the union of the live selections (disabled if none)."""
        now = self.clock()
        live = [(c, until) for c, until in self._by_observer.values() if until > now]
        return merge([c for c, _u in live], max((u for _c, u in live), default=now) - now)
