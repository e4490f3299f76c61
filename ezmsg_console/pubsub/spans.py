"""User profiling spans: time a part of a handler's work on a message.

Inside a unit's subscriber handler (or code it calls)::

    with ez.profile_span("filter"):
        y = scipy.signal.sosfilt(self.sos, msg.data, axis=0)

A span is measured only for a message whose handler time is measured (a *timed*
message, see :mod:`ezmsg_console.profiling.sampling`: every message up to the
subscriber's budget, then 1 in k), or one being traced. Its duration goes into a
histogram per label on the subscriber (``SubscriberProfile.user_spans``) and,
while the subscriber is traced with the ``user_span_ns`` metric, into a trace
sample whose topic is ``"<topic>:<label>"`` and whose seq is the message's. For
any other message, and outside a handler (a ``@task``, a script), a span costs a
context lookup and records nothing; profiling off, it never reads the clock.

The handler's subscriber is found through a context variable that the unit's
consumer task sets once, when it starts (:func:`bind_subscriber`); tasks a handler
creates inherit it, threads do not.
"""

from __future__ import annotations

import contextvars
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

from ..profiling.histogram import Histogram
from ..protocol.profiling import MAX_SPAN_LABELS, TRACE_CHANNELS

if TYPE_CHECKING:
    from .subscriber import Delivery, Subscriber

_monotonic_ns = time.monotonic_ns
_CHANNEL_CODE = {name: code for code, name in enumerate(TRACE_CHANNELS)}
FLUSH_AT = 4096
"""Pending span durations of one label that trigger a bucketing (bounds what is held)."""
SpanTraceHook = Callable[[str, tuple[int, int, int, int]], None]
"""Called as hook(label, (end_ns, span_ns, msg_id, channel_code)) for a traced message's span."""
_SUBSCRIBER: contextvars.ContextVar[Subscriber | None] = contextvars.ContextVar(
    "ezmsg_console_span_subscriber", default=None)
"""The subscriber whose handler runs in this context (a per-task value, not shared state)."""


class SpanSet:
    """One subscriber's span histograms, by label (at most :data:`MAX_SPAN_LABELS`)."""

    __slots__ = ("histograms", "untracked")

    def __init__(self) -> None:
        self.histograms: dict[str, Histogram] = {}
        self.untracked = 0  # runs of spans with a label past the cap (counted, not timed)

    def add(self, label: str, span_ns: int) -> None:
        hist = self.histograms.get(label)
        if hist is None:
            if len(self.histograms) >= MAX_SPAN_LABELS:
                self.untracked += 1
                return
            hist = self.histograms[label] = Histogram()
        pending = hist.pending
        pending.append(span_ns)
        if len(pending) >= FLUSH_AT:
            hist.flush()

    def flush(self) -> None:
        for hist in self.histograms.values():
            hist.flush()


def bind_subscriber(sub: Subscriber | None) -> None:
    """Make spans in the current task (and tasks it creates) record on ``sub``."""
    _SUBSCRIBER.set(sub)


class _Span:
    """One measured run of a span (made only when the message is timed or traced)."""

    __slots__ = ("_sub", "_delivery", "_label", "_start")

    def __init__(self, sub: Subscriber, delivery: Delivery, label: str) -> None:
        self._sub = sub
        self._delivery = delivery
        self._label = label
        self._start = 0

    def __enter__(self) -> _Span:
        self._start = _monotonic_ns()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        end = _monotonic_ns()
        start, self._start = self._start, 0
        if not start:
            return
        sub, delivery = self._sub, self._delivery
        if delivery.timed:
            sub.spans.add(self._label, end - start)
        hook = sub.span_trace
        if hook is not None:
            hook(self._label, (end, end - start, delivery.msg_id, _CHANNEL_CODE[delivery.channel]))

    async def __aenter__(self) -> _Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)


class _Unrecorded:
    """The span of a message that is neither timed nor traced: does nothing."""

    __slots__ = ()

    def __enter__(self) -> _Unrecorded:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    async def __aenter__(self) -> _Unrecorded:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None


_UNRECORDED = _Unrecorded()


def profile_span(label: str) -> _Span | _Unrecorded:
    """A context manager (``with`` or ``async with``) timing its block as span ``label``
    of the message the current handler is working on; see the module documentation.
    ``label`` names the span in the console and in exports (a short, fixed string: a
    subscriber records at most 32 labels)."""
    if not isinstance(label, str):
        raise TypeError(f"profile_span label must be a str, got {type(label).__name__}")
    sub = _SUBSCRIBER.get()
    if sub is not None:
        delivery = sub.current
        if delivery is not None and delivery.start_ns:
            return _Span(sub, delivery, label)
    return _UNRECORDED
