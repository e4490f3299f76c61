"""Fixed log-bucket histogram of nanosecond values: O(1) record, no allocation.

Buckets: values 0..7 each have their own bucket (index = value). From 8 up,
every power of two is split into four equal sub-buckets: a value with bit
length ``b`` (b >= 4) goes to index ``4*b + s``, where ``s`` is the two bits
below its top bit. The relative width of a bucket is at most 25 %, so a
percentile read from bucket counts (interpolating inside the bucket) is
within ~12 % of the exact value, which is what an operator needs to see
that a handler takes 40 us rather than 4 ms.

Recording is ``counts[index] += 1`` plus a running sum: cheap enough to stay
on for every message. Windows are differences of two count lists.
"""

from __future__ import annotations

from typing import Sequence

from ..protocol.profiling import HistogramSnapshot

SUB_BITS = 2
SUB = 1 << SUB_BITS
MAX_BITS = 62
"""Values of 2**62 ns (146 years) and more share the last bucket; every edge fits in an int64."""
NUM_BUCKETS = SUB * (MAX_BITS + 1)


def bucket_of(value: int) -> int:
    """The bucket index of a non-negative nanosecond value (negatives count as 0)."""
    if value < 8:
        return value if value > 0 else 0
    b = value.bit_length()
    if b > MAX_BITS:
        return NUM_BUCKETS - 1
    return (b << SUB_BITS) | ((value >> (b - 3)) & 3)


def _edges() -> tuple[int, ...]:
    """Lower edge of every bucket, plus one final upper edge (``NUM_BUCKETS + 1`` values).
    Unused indices (8..15) are empty buckets of zero width at 8."""
    lows: list[int] = []
    for idx in range(NUM_BUCKETS):
        if idx < 8:
            lows.append(idx)
        elif idx < 16:
            lows.append(8)
        else:
            b, s = idx >> SUB_BITS, idx & 3
            lows.append((4 + s) << (b - 3))
    lows.append(1 << MAX_BITS)
    return tuple(lows)


EDGES_NS: tuple[int, ...] = _edges()


def upper_edge(idx: int) -> int:
    """Exclusive upper edge of bucket ``idx``."""
    if idx < 8:
        return idx + 1
    if idx < 16:
        return 8
    b, s = idx >> SUB_BITS, idx & 3
    return (5 + s) << (b - 3)


class Histogram:
    """Counts of nanosecond values in :data:`NUM_BUCKETS` fixed log buckets.

    Only bucket counts are kept (hot paths may increment ``counts`` directly,
    with the same index arithmetic as :func:`bucket_of`); the total is their
    sum and the sum of values is estimated from bucket midpoints.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * NUM_BUCKETS

    def record(self, value: int) -> None:
        if value >= 8:
            b = value.bit_length()
            self.counts[(b << 2) | ((value >> (b - 3)) & 3) if b <= MAX_BITS else NUM_BUCKETS - 1] += 1
        else:
            self.counts[value if value > 0 else 0] += 1

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
            if idx < 8:
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
