"""Fixed log-bucket histogram of nanosecond values: O(1) record, bucketed in bulk.

A value ``v`` (ns, >= 0) is shifted to ``w = v + 8`` (so ``w`` has at least
four bits), and every power of two of ``w`` is split into four equal
sub-buckets: the index is ``4*b + s``, where ``b`` is the bit length of ``w``
and ``s`` the two bits below its top bit. The first bucket (index 16) holds
0 and 1 ns; indices 0..15 stay empty. Above ~100 ns the relative width of a
bucket is at most ~25 % (27 % at 100 ns), so a percentile read from bucket counts
(interpolating inside the bucket) is within ~12 % of the exact value, which
is what an operator needs to see that a handler takes 40 us rather than 4 ms.

The hot paths (``pubsub/subscriber.py``) record every value, but do not
bucket it: they append the raw value to :attr:`Histogram.pending` (a bound
``list.append``, ~15 ns, where the index arithmetic costs ~75 ns in
CPython), and :meth:`Histogram.flush` buckets what is pending in bulk with
numpy (~20 ns a value, most of it converting the Python ints). The owner
flushes every few thousand values, which bounds ``pending``, and every read
(:attr:`counts`, :meth:`snapshot`, ...) flushes first, so a reader always
sees every value recorded. Windows are differences of two count lists.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..protocol.profiling import HistogramSnapshot

SUB_BITS = 2
SUB = 1 << SUB_BITS
MAX_BITS = 63
"""Any int64 nanosecond value fits; every edge fits in an int64."""
NUM_BUCKETS = SUB * (MAX_BITS + 1)
FIRST = 16
"""The first bucket that can hold a value: [0, 10) ns."""
EXACT_FLOAT = 1 << 53
"""Below this a shifted value converts to float64 exactly (its exponent and top mantissa
bits are then its bit length and sub-bucket); larger values (104 days) are bucketed one by one."""


def bucket_of(value: int) -> int:
    """The bucket index of a nanosecond value (what the hot paths compute inline)."""
    w = max(0, value) + 8
    b = w.bit_length()
    if b > MAX_BITS:
        return NUM_BUCKETS - 1
    return (b << SUB_BITS) | ((w >> (b - 3)) & 3)


def lower_edge(idx: int) -> int:
    if idx < FIRST:
        return 0
    b, s = idx >> SUB_BITS, idx & 3
    return ((4 + s) << (b - 3)) - 8


def upper_edge(idx: int) -> int:
    """Exclusive upper edge of bucket ``idx``."""
    if idx < FIRST:
        return 0
    if idx == NUM_BUCKETS - 1:
        return 2**63 - 1
    b, s = idx >> SUB_BITS, idx & 3
    return ((5 + s) << (b - 3)) - 8


EDGES_NS: tuple[int, ...] = tuple(lower_edge(i) for i in range(NUM_BUCKETS)) + (upper_edge(NUM_BUCKETS - 1),)
"""Lower edge of every bucket, then the last bucket's upper edge (``NUM_BUCKETS + 1`` values)."""


class Histogram:
    """Counts of nanosecond values in :data:`NUM_BUCKETS` fixed log buckets.

    Only bucket counts are kept; the total is their sum and the sum of values
    is estimated from bucket midpoints. Hot paths append raw values to
    ``pending`` (never replaced, so a bound ``append`` stays valid) and call
    :meth:`flush` now and then to bound it; every read flushes first.
    """

    __slots__ = ("_counts", "pending")

    def __init__(self) -> None:
        self._counts = [0] * NUM_BUCKETS
        self.pending: list[int] = []

    @property
    def counts(self) -> list[int]:
        """The bucket counts, with every pending value bucketed."""
        if self.pending:
            self.flush()
        return self._counts

    def record(self, value: int) -> None:
        self._counts[bucket_of(value)] += 1

    def flush(self) -> None:
        """Bucket the pending values (vectorised) and empty ``pending``."""
        pending = self.pending
        n = len(pending)
        if not n:
            return
        counts = self._counts
        try:
            v = np.fromiter(pending, np.int64, n)
        except OverflowError:  # not a nanosecond duration; bucket_of clamps it
            for value in pending:
                counts[bucket_of(value)] += 1
            pending.clear()
            return
        pending.clear()
        big = v >= EXACT_FLOAT - 8
        if big.any():
            for value in v[big].tolist():
                counts[bucket_of(value)] += 1
            v = v[~big]
        if len(v) and v.min() < 0:
            v = np.maximum(v, 0)
        v += 8
        # A float64's bits >> 50 are (exponent field << 2) | the two bits below the top bit, and the
        # exponent field is bit length + 1022: so the bucket index is (bits >> 50) - (1022 << 2).
        idx = v.astype(np.float64).view(np.int64)
        idx >>= 50
        idx -= 1022 << SUB_BITS
        added = np.bincount(idx, minlength=NUM_BUCKETS)
        per_bucket = added.tolist()
        for i in np.flatnonzero(added).tolist():
            counts[i] += per_bucket[i]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def copy_counts(self) -> list[int]:
        return list(self.counts)

    def snapshot(self) -> HistogramSnapshot:
        return summarize(self.counts)

    def window(self, previous: list[int] | None) -> HistogramSnapshot:
        """The values recorded since ``previous`` (a :meth:`copy_counts`); empty if None."""
        if previous is None:
            return HistogramSnapshot()
        return summarize([now - then for now, then in zip(self.counts, previous)])


def percentile(counts: Sequence[int], total: int, q: float) -> float:
    """The ``q`` quantile (0..1), interpolated linearly inside its bucket."""
    if total <= 0:
        return 0.0
    rank = q * total
    seen = 0
    for idx, n in enumerate(counts):
        if n <= 0:
            continue
        if seen + n >= rank:
            low, high = EDGES_NS[idx], upper_edge(idx)
            if high <= low:
                return float(low)
            frac = (rank - seen) / n
            return low + frac * (high - low)
        seen += n
    return float(EDGES_NS[-1])


def summarize(counts: Sequence[int]) -> HistogramSnapshot:
    total = sum(counts)
    if total <= 0:
        return HistogramSnapshot()
    nonzero = [(i, n) for i, n in enumerate(counts) if n > 0]
    last = nonzero[-1][0]
    estimate = sum(n * (EDGES_NS[i] + upper_edge(i)) / 2 for i, n in nonzero)
    return HistogramSnapshot(
        count=total,
        sum_ns=int(estimate),
        p50_ns=percentile(counts, total, 0.50),
        p90_ns=percentile(counts, total, 0.90),
        p99_ns=percentile(counts, total, 0.99),
        max_ns=float(upper_edge(last)),
        bucket_indices=tuple(i for i, _ in nonzero),
        bucket_counts=tuple(n for _, n in nonzero),
    )
