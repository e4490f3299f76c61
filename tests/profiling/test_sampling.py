"""The adaptive timing sampler: k from the rate, deterministic 1-in-k, exact counts, what a snapshot reports.

A real :class:`Subscriber` is driven by hand (``deliver_local`` + ``recv_delivery``
+ ``done``) on a fake clock that also counts its reads, so the choice of k and
of the timed messages is exact, and an untimed message is seen to read no clock.
"""

from __future__ import annotations

from typing import Any

import pytest

from ezmsg_console.protocol.errors import ConfigurationError
from ezmsg_console.protocol.graph import SubscriberInfo
from ezmsg_console.profiling.sampling import DEFAULT_TIMED_BUDGET, TimingSampler, parse_timed_budget, sample_k
from ezmsg_console.profiling.snapshot import SnapshotBuilder
from ezmsg_console.pubsub import host as host_module
from ezmsg_console.pubsub import subscriber as subscriber_module
from ezmsg_console.pubsub.subscriber import Delivery, Subscriber

STEP_NS = 10_000
"""The fake clock's time between two messages: 100,000 messages/s."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now


class Host:
    histograms = True

    def __init__(self, budget: int) -> None:
        self.timed_budget = budget


class Source:
    """Stands in for the publisher a local delivery gives its slot back to."""

    def release_local(self, slot: int) -> None:
        pass


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(subscriber_module, "_monotonic_ns", fake)
    return fake


def make_sub(budget: int, **info: Any) -> Subscriber:
    return Subscriber(SubscriberInfo(sub_id="s", topic="t", **info), Host(budget))  # type: ignore[arg-type]


def handle(sub: Subscriber, clock: Clock, msg_id: int, step_ns: int = STEP_NS) -> Delivery:
    """One message through the subscriber: arrives, handed out, done."""
    clock.now += step_ns
    sub.deliver_local(None, Source(), 0, msg_id, clock.now - 500)  # type: ignore[arg-type]
    return take(sub)


def take(sub: Subscriber) -> Delivery:
    """The next queued message, handed out and done."""
    coro = sub.recv_delivery()
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    delivery: Delivery = stop.value.value
    timed = bool(delivery.start_ns) and delivery.timed
    delivery.done()
    delivery.timed = timed  # what recv_delivery decided, kept for the test
    return delivery


def run(sub: Subscriber, clock: Clock, first: int, n: int, step_ns: int = STEP_NS) -> list[int]:
    """Handle messages ``first .. first + n - 1``; returns the ids of the timed ones."""
    return [d.msg_id for d in (handle(sub, clock, i, step_ns) for i in range(first, first + n)) if d.timed]


# --------------------------------------------------------------------------- k from the rate


@pytest.mark.parametrize(("messages", "elapsed_ns", "budget", "k"), [
    (100_000, 1_000_000_000, 2000, 50),   # 100k/s over a budget of 2k/s
    (2000, 1_000_000_000, 2000, 1),       # exactly the budget: every message
    (2001, 1_000_000_000, 2000, 2),       # just over: 1 in 2
    (1000, 10_000_000, 1000, 100),        # 100k/s measured over 10 ms
    (500, 1_000_000_000, 2000, 1),        # under the budget
    (10**6, 1_000_000_000, 0, 1),         # budget 0: time everything
    (0, 1_000_000_000, 2000, 1),          # no messages
    (10, 0, 2000, 1),                     # no time
])
def test_k_is_the_rate_over_the_budget_rounded_up(messages: int, elapsed_ns: int, budget: int, k: int) -> None:
    assert sample_k(messages, elapsed_ns, budget) == k


def test_a_window_ends_after_a_second_or_once_it_timed_a_budgets_worth() -> None:
    slow = TimingSampler(100)
    now = 0
    for handled in range(1, 200):  # 50 messages/s for ~4 s: under the budget
        now += 20_000_000
        assert slow.timed_one(now, handled) == 1
    assert slow.timed == 199 and slow.k == 1

    fast = TimingSampler(100)
    now = 0
    for handled in range(1, 101):  # 10,000 messages/s, all timed until the window ends early
        now += 100_000
        assert fast.timed_one(now, handled) == 1
    assert fast.timed_one(now + 100_000, 101) == 100  # 100 timed in 10 ms: k = 10,000/s / 100/s
    assert fast.timed == 101


# --------------------------------------------------------------------------- the subscriber's selection


def test_above_the_budget_every_kth_message_is_timed_and_counts_stay_exact(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = make_sub(1000)
    n = 4950
    timed = run(sub, clock, 0, n)
    # Every message until the first window ends (1000 timed messages in 10 ms: 100,000/s), then 1 in 100.
    assert timed == list(range(1001)) + list(range(1100, n, 100))
    assert sub.timing.k == 100 and sub.timing.timed == len(timed)
    assert sub.received == sub.handled == n  # counters: every message
    assert sub.handler_ns.total == sub.latency_ns.total == len(timed)  # histograms: the timed ones only
    assert clock.reads == 2 * len(timed)  # an untimed message reads no clock

    again, twin = Clock(), make_sub(1000)
    monkeypatch.setattr(subscriber_module, "_monotonic_ns", again)
    assert run(twin, again, 0, n) == timed  # deterministic: no randomness


def test_budget_zero_times_every_message(clock: Clock) -> None:
    sub = make_sub(0)
    assert run(sub, clock, 0, 3000) == list(range(3000))
    assert sub.timing.k == 1 and sub.timing.timed == 3000 == sub.handler_ns.total


def test_tracing_reuses_the_timed_messages_clock_reads(clock: Clock) -> None:
    sub = make_sub(1000)
    rows: list[Any] = []
    sub.trace = rows.extend  # what the tracer installs with sample_mod=1
    n = 2500
    timed = run(sub, clock, 0, n)
    assert len(timed) < n and sub.timing.k == 100
    assert len(rows) == 6 * n  # every message traced (handler end, start, arrival, publish, id, channel)
    assert clock.reads == 2 * n  # two reads a message, whether it is also timed or not
    assert sub.handler_ns.total == len(timed)


def test_a_snapshot_reports_timed_messages_and_k_and_repicks_k_when_the_rate_falls(clock: Clock) -> None:
    sub = make_sub(1000)
    builder = SnapshotBuilder(clock=lambda: clock.now)

    def snapshot() -> Any:
        snap = builder.build("A", process_id="p", pid=1, host="h", publishers=[], subscribers=[sub],
                             histograms=True, trace=None, trace_ttl_remaining_s=0.0)
        return snap.subscribers[0]

    assert snapshot().timed_messages_total == 0
    timed = run(sub, clock, 0, 4950)
    row = snapshot()
    assert row.messages_received_total == row.messages_received_window == 4950
    assert row.timed_messages_total == row.timed_messages_window == len(timed) < 4950
    assert row.timing_sample_k == 100
    assert row.handler_ns.count == row.latency_ns.count == len(timed) == sum(row.handler_ns.bucket_counts)
    assert row.handler_ns_window.count == row.timed_messages_window

    # The rate falls to 10 messages/s: the countdown alone would time the next message in 5 s.
    clock.now += 5_000_000_000
    row = snapshot()
    assert row.timing_sample_k == 1 and row.timed_messages_window == 0
    assert run(sub, clock, 4950, 3, step_ns=100_000_000) == [4950, 4951, 4952]
    assert snapshot().timed_messages_window == 3


def test_handled_excludes_drops_and_the_queue(clock: Clock) -> None:
    sub = make_sub(1000, leaky=True, max_queue=2)
    for i in range(5):
        sub.deliver_local(None, Source(), 0, i, 1)  # type: ignore[arg-type]
    assert (sub.received, sub.dropped, sub.pending, sub.handled) == (5, 3, 2, 0)
    assert [take(sub).msg_id, take(sub).msg_id] == [3, 4]
    assert sub.handled == 2 and sub.timing.timed == 2


# --------------------------------------------------------------------------- the setting


def test_the_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = host_module.TIMED_BUDGET_ENV
    assert env == "EZMSG_CONSOLE_PROFILING_TIMED_BUDGET"
    monkeypatch.delenv(env, raising=False)
    assert host_module.timed_budget_from_env() == DEFAULT_TIMED_BUDGET == 2000
    monkeypatch.setenv(env, " 0 ")
    assert host_module.timed_budget_from_env() == 0
    monkeypatch.setenv(env, "500")
    assert host_module.timed_budget_from_env() == 500
    for bad in ("-1", "many", "1.5"):
        monkeypatch.setenv(env, bad)
        with pytest.raises(ConfigurationError, match=env):
            host_module.timed_budget_from_env()
    assert parse_timed_budget(None) is None and parse_timed_budget("") is None
