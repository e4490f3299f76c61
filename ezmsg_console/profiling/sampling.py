"""Adaptive timing sampler: which handled messages get their handler time and latency measured.

Counters (messages, bytes, drops, backpressure waits) are exact for every
message; *timing* costs two clock reads and a histogram value per message,
so above a per-endpoint budget of timed messages per second only a
deterministic 1-in-``k`` sample is timed. The hot path
(``pubsub/subscriber.py``) keeps a countdown of the messages left until the
next timed one: an untimed message costs one integer decrement and compare,
no clock read. When the countdown reaches 0 the message is timed and the
subscriber asks :meth:`TimingSampler.timed_one` for the next countdown, k.

Theory of operation: messages are numbered 0, 1, 2, ... in handling order
and, while k stays the same, message ``n`` is timed when ``n % k == 0``
(counted from the message where k was last picked). k is re-picked per
window, from the window's exact message rate: ``k = max(1, ceil(rate /
budget))``. A window ends at the first timed message at least
:data:`WINDOW_NS` after it began (the clock is read anyway then), or
earlier, once :data:`MIN_WINDOW_NS` have passed, if it already timed a
budget's worth of messages (a rate that jumps is caught within ~10 ms, not
after a second of timing everything). A subscriber whose rate collapses may
not reach its next timed message for a while; a snapshot (the console's
poll) re-picks k too (:meth:`TimingSampler.retune`), with no hot-path cost.

The histograms then hold the timed messages only: their percentiles are
estimates of the distribution, and their counts sum to the timed count, not
to the message count. A budget of 0 times every message (k is always 1).
"""

from __future__ import annotations

DEFAULT_TIMED_BUDGET = 2000
"""Timed messages per second per endpoint, above which only 1 in k is timed."""
WINDOW_NS = 1_000_000_000
"""How long a window normally lasts before k is re-picked."""
MIN_WINDOW_NS = 10_000_000
"""The shortest window (ended early because it timed a budget's worth of messages)."""


def sample_k(messages: int, elapsed_ns: int, budget: int) -> int:
    """The k that times about ``budget`` of ``messages`` per second over ``elapsed_ns``:
    ``max(1, ceil(rate / budget))``, in integer arithmetic; 1 for a budget of 0."""
    if budget <= 0 or elapsed_ns <= 0 or messages <= 0:
        return 1
    return max(1, -(-(messages * 1_000_000_000) // (elapsed_ns * budget)))


def parse_timed_budget(raw: str | None) -> int | None:
    """A budget from its text (an environment variable): None when unset or blank,
    ValueError when not a whole number >= 0."""
    if raw is None or not raw.strip():
        return None
    value = int(raw.strip(), 10)
    if value < 0:
        raise ValueError(f"negative budget {value}")
    return value


class TimingSampler:
    """The k of one endpoint and the window it was picked from.

    ``handled`` (passed in) is the endpoint's exact count of handled messages;
    the sampler keeps no per-message state of its own. ``timed`` counts the
    messages timed, ``k`` is the current 1-in-k (1: every message)."""

    __slots__ = ("budget", "k", "timed", "window_ns", "min_window_ns", "_start_ns", "_start_handled",
                 "_start_timed")

    def __init__(self, budget: int = DEFAULT_TIMED_BUDGET, *, window_ns: int = WINDOW_NS,
                 min_window_ns: int = MIN_WINDOW_NS) -> None:
        self.budget = max(0, budget)
        self.k = 1
        self.timed = 0
        self.window_ns = window_ns
        self.min_window_ns = min_window_ns
        self._start_ns: int | None = None  # None until the first timed message opens a window
        self._start_handled = 0
        self._start_timed = 0

    def timed_one(self, now_ns: int, handled: int) -> int:
        """Count one timed message (stamped ``now_ns``; ``handled`` messages so far,
        this one included); returns the countdown to the next timed message (k)."""
        self.timed += 1
        if self.budget:
            start = self._start_ns
            if start is None:
                self._start_ns, self._start_handled, self._start_timed = now_ns, handled, self.timed
            else:
                elapsed = now_ns - start
                if elapsed >= self.window_ns or (
                        elapsed >= self.min_window_ns and self.timed - self._start_timed >= self.budget):
                    self._repick(now_ns, elapsed, handled)
        return self.k

    def retune(self, now_ns: int, handled: int) -> bool:
        """Re-pick k if the window has lasted :data:`WINDOW_NS` (a snapshot calls this: a rate
        that fell shows without waiting for the next timed message); True if k changed."""
        start = self._start_ns
        if not self.budget or start is None or now_ns - start < self.window_ns:
            return False
        before = self.k
        self._repick(now_ns, now_ns - start, handled)
        return self.k != before

    def _repick(self, now_ns: int, elapsed: int, handled: int) -> None:
        self.k = sample_k(handled - self._start_handled, elapsed, self.budget)
        self._start_ns, self._start_handled, self._start_timed = now_ns, handled, self.timed
