"""Per-observer trace selections and their union (pure, with a fake clock)."""

from __future__ import annotations

from ezmsg_console.profiling.selections import TraceSelections, merge
from ezmsg_console.protocol.profiling import ProfilingTraceControl as C


def test_the_union_is_field_by_field_and_all_wins() -> None:
    a = C(enabled=True, sample_mod=4, subscriber_endpoint_ids=("x",), publisher_endpoint_ids=("",),
          metrics=("handler_ns",))
    b = C(enabled=True, sample_mod=2, subscriber_endpoint_ids=("y", "x"), publisher_endpoint_ids=("",),
          metrics=("lease_time_ns",))
    m = merge([a, b], 5.0)
    assert m.enabled and m.sample_mod == 2 and m.ttl_seconds == 5.0
    assert m.subscriber_endpoint_ids == ("x", "y") and m.publisher_endpoint_ids == ("",)
    assert set(m.metrics or ()) == {"handler_ns", "lease_time_ns"}
    assert merge([a, C(enabled=True)], 1.0).subscriber_endpoint_ids is None  # one "all" makes all
    assert not merge([], 1.0).enabled


def test_each_observer_keeps_its_own_ttl_and_stop() -> None:
    now = [0.0]
    sel = TraceSelections(clock=lambda: now[0])
    sel.set("A", C(enabled=True, subscriber_endpoint_ids=("x",), ttl_seconds=10))
    sel.set("B", C(enabled=True, subscriber_endpoint_ids=("y",), ttl_seconds=60))
    assert sel.merged().subscriber_endpoint_ids == ("x", "y") and sel.merged().ttl_seconds == 60
    sel.set("A", C(enabled=False))  # A's stop
    assert sel.merged().subscriber_endpoint_ids == ("y",) and sel.own("A") == (None, 0.0)
    sel.set("A", C(enabled=True, subscriber_endpoint_ids=("x",), ttl_seconds=10))
    now[0] = 11.0
    assert sel.expire() and len(sel) == 1 and sel.own("B")[1] == 49.0
    now[0] = 61.0
    assert sel.expire() and not sel.merged().enabled
