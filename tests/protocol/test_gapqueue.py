"""GapQueue: bounded FIFO that records loss as explicit gap markers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ezmsg_console.protocol.gapqueue import GapMarker, GapQueue

from ..conftest import fuzz_examples


def drain(q: GapQueue) -> list[object]:
    out = []
    while len(q):
        out.append(q.pop())
    return out


def test_keeps_order() -> None:
    q = GapQueue(max_items=10)
    for seq in range(1, 6):
        assert q.put(seq, f"item{seq}") is True
    assert len(q) == 5
    assert drain(q) == [f"item{i}" for i in range(1, 6)]
    assert q.dropped == 0


def test_pop_empty_raises_index_error() -> None:
    q = GapQueue()
    with pytest.raises(IndexError):
        q.pop()


def test_overflow_marker_names_dropped_seqs() -> None:
    q = GapQueue(max_items=3)
    for seq in (1, 2, 3):
        assert q.put(seq, seq)
    assert q.put(4, 4) is False
    assert q.dropped == 1
    assert drain(q) == [1, 2, 3, GapMarker(4, 4, "overflow")]


def test_drops_after_marker_widen_it() -> None:
    q = GapQueue(max_items=2)
    q.put(1, "a")
    q.put(2, "b")
    for seq in range(3, 8):
        assert q.put(seq, seq) is False
    assert q.dropped == 5
    assert len(q) == 3  # two items and one marker
    assert drain(q) == ["a", "b", GapMarker(3, 7, "overflow")]


def test_new_items_queue_behind_marker_once_room() -> None:
    q = GapQueue(max_items=2)
    q.put(1, "a")
    q.put(2, "b")
    q.put(3, "c")  # dropped
    q.put(4, "d")  # dropped
    assert q.pop() == "a"
    q.pop()  # "b"
    assert q.put(5, "e") is True
    assert q.put(6, "f") is False  # items: marker, e -> full
    assert drain(q) == [GapMarker(3, 4, "overflow"), "e", GapMarker(6, 6, "overflow")]


def test_marker_not_widened_once_items_follow_it() -> None:
    q = GapQueue(max_items=2)
    q.put(1, "a")
    q.put(2, "b")
    q.put(3, "x")  # gap 3
    assert q.pop() == "a"
    assert q.put(4, "x") is False  # the marker takes a slot: still full, gap widens to 3..4
    assert q.pop() == "b"
    assert q.put(5, "e") is True  # queued behind the gap
    assert q.put(6, "y") is False  # new gap, not merged into 3..4
    assert drain(q) == [GapMarker(3, 4, "overflow"), "e", GapMarker(6, 6, "overflow")]


def test_byte_limit_works_like_item_limit() -> None:
    q = GapQueue(max_items=100, max_bytes=10)
    assert q.put(1, "a", size=4)
    assert q.put(2, "b", size=6)  # exactly 10 bytes: fits
    assert q.put(3, "c", size=1) is False
    assert q.put(4, "d", size=0)  # zero-size item still fits
    assert q.put(5, "e", size=5) is False
    assert q.pop() == "a"  # frees 4 bytes
    assert q.put(6, "f", size=4) is True
    assert drain(q) == ["b", GapMarker(3, 3, "overflow"), "d", GapMarker(5, 5, "overflow"), "f"]
    assert q.dropped == 2
    # bytes are fully released: a full-size item fits again
    assert q.put(7, "g", size=10) is True


def test_item_larger_than_byte_limit_is_always_a_gap() -> None:
    q = GapQueue(max_items=10, max_bytes=10)
    assert q.put(1, "huge", size=11) is False
    assert drain(q) == [GapMarker(1, 1, "overflow")]


def test_put_gap_merges_with_open_gap_at_tail() -> None:
    q = GapQueue(max_items=1)
    q.put(5, "a")
    q.put(6, "b")  # overflow gap 6..6
    q.put_gap(1, 4, "history")
    assert drain(q) == ["a", GapMarker(1, 6, "overflow+history")]


def test_put_gap_reason_not_repeated() -> None:
    q = GapQueue()
    q.put_gap(3, 4, "history")
    q.put_gap(5, 9, "history")
    q.put_gap(10, 10, "overflow")
    q.put_gap(11, 11, "history")
    assert drain(q) == [GapMarker(3, 11, "history+overflow")]


def test_put_gap_on_empty_or_after_item_starts_new_marker() -> None:
    q = GapQueue()
    q.put_gap(1, 2, "history")
    q.put(3, "c")
    q.put_gap(4, 4, "overflow")
    assert drain(q) == [GapMarker(1, 2, "history"), "c", GapMarker(4, 4, "overflow")]


def test_clear() -> None:
    q = GapQueue(max_items=2, max_bytes=10)
    q.put(1, "a", size=10)
    q.put(2, "b", size=1)
    q.clear()
    assert len(q) == 0
    assert q.put(3, "c", size=10) is True


@pytest.mark.parametrize("kwargs", [{"max_items": 0}, {"max_bytes": 0}, {"max_items": -1}])
def test_bad_limits(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        GapQueue(**kwargs)


# -- property: nothing lost, nothing duplicated, order kept --------------------

ops_strategy = st.lists(st.sampled_from(["put", "put", "pop"]), max_size=200)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(
    ops=ops_strategy,
    max_items=st.integers(1, 6),
    max_bytes=st.integers(1, 40),
    sizes=st.lists(st.integers(0, 12), min_size=1, max_size=20),
)
def test_popped_stream_accounts_for_every_seq(
    ops: list[str], max_items: int, max_bytes: int, sizes: list[int]
) -> None:
    q = GapQueue(max_items=max_items, max_bytes=max_bytes)
    seq = 0
    popped: list[object] = []
    queued = 0
    for op in ops:
        if op == "put":
            seq += 1
            if q.put(seq, ("item", seq), size=sizes[seq % len(sizes)]):
                queued += 1
        elif len(q):
            popped.append(q.pop())
    popped.extend(drain(q))

    expanded: list[int] = []
    markers = 0
    for x in popped:
        if isinstance(x, GapMarker):
            assert x.from_seq <= x.to_seq
            assert x.reason == "overflow"
            expanded.extend(range(x.from_seq, x.to_seq + 1))
            markers += 1
        else:
            assert isinstance(x, tuple) and x[0] == "item"
            expanded.append(x[1])
    assert expanded == list(range(1, seq + 1))
    assert q.dropped == seq - queued
    assert markers <= q.dropped
    assert (markers == 0) == (q.dropped == 0)


@settings(max_examples=fuzz_examples(100), deadline=None)
@given(ops=ops_strategy, max_items=st.integers(1, 6))
def test_queue_never_holds_two_adjacent_markers(ops: list[str], max_items: int) -> None:
    q = GapQueue(max_items=max_items)
    seq = 0
    for op in ops:
        if op == "put":
            seq += 1
            q.put(seq, seq)
        elif len(q):
            q.pop()
        items = list(q._items)  # white-box: the invariant lives in the deque
        assert len(items) <= max_items + 1  # at most one marker beyond the limit
        for (a, _), (b, _) in zip(items, items[1:]):
            assert not (isinstance(a, GapMarker) and isinstance(b, GapMarker))
