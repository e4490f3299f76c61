"""Handler decorators beyond ``@subscriber``/``@publisher``, with the meaning ezmsg 3.9 gives them.

* ``@task``: an ``async def`` method run as a task for the unit's lifetime (it may also be a
  ``@publisher``); it ends the unit's part like any handler (return, or ``raise Complete``).
* ``@main``: a blocking (plain ``def``) method run once in the worker while the unit runs. Our
  workers keep their event loop in the main thread, so it runs in a thread of its own; the unit's
  other handlers keep running meanwhile. Returning completes it; raising is the unit's error.
* ``@thread``: a plain ``def`` method run in its own thread for the unit's lifetime, as ezmsg's.
* ``@timeit``: logs how long each call of a handler took (INFO, logger ``ezmsg_console.timeit``).

A ``@main`` or ``@thread`` function cannot be interrupted: when the run stops, the worker does not
wait for it (the thread is a daemon and ends with the process).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Any, Callable, TypeVar

from ..protocol.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

timeit_log = logging.getLogger("ezmsg_console.timeit")


def task(fn: F) -> F:
    """Run ``fn`` (``async def``) as a task for the unit's lifetime."""
    if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
        raise ConfigurationError(f"@task {fn.__name__} must be an async function")
    fn.__ezc_task__ = True  # type: ignore[attr-defined]
    return fn


def _threaded(kind: str) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise ConfigurationError(f"@{kind} {fn.__name__} must be a plain (blocking) function, not async")
        fn.__ezc_thread__ = kind  # type: ignore[attr-defined]
        return fn
    return mark


main = _threaded("main")
main.__doc__ = "Run ``fn`` (a blocking ``def``) once in the worker, in a thread, while the unit runs."
thread = _threaded("thread")
thread.__doc__ = "Run ``fn`` (a blocking ``def``) in its own thread for the unit's lifetime."


def _report(fn: Callable[..., Any], unit: Any, started: float) -> None:
    elapsed_ms = 1e3 * (time.perf_counter() - started)
    timeit_log.info("%s.%s: %.3f ms", getattr(unit, "address", "") or type(unit).__name__, fn.__name__, elapsed_ms)


def timeit(fn: F) -> F:
    """Log the duration of every call of ``fn`` (for an async generator: until it is exhausted)."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def gen_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                async for item in fn(self, *args, **kwargs):
                    yield item
            finally:
                _report(fn, self, started)
        return gen_wrapper  # type: ignore[return-value]
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def coro_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(self, *args, **kwargs)
            finally:
                _report(fn, self, started)
        return coro_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            _report(fn, self, started)
    return wrapper  # type: ignore[return-value]
