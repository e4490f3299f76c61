"""The event loop worker processes run on: asyncio's own, or uvloop when asked for.

uvloop (``pip install 'ezmsg-console[fast]'``) is optional. Measured on the
project's 2-core VM (``benchmarks/pubsub.py``, 2026-11-28) it gave 5-9 % more
messages/s and ~8 % lower p50 latency at 64 B and 1 MiB, but 19 % fewer at
64 KiB over TCP, and it copies nothing a transport is given (a buffer must not
change after ``write``) and is unreliable in a process that forks. So it is
opt-in. ``EZMSG_CONSOLE_LOOP`` chooses:

* ``asyncio`` (default): asyncio's own loop;
* ``uvloop``: uvloop, and an error if it is not installed;
* ``auto``: uvloop if it can be imported, else asyncio's own loop.

The choice is made per process; worker processes inherit the variable from the
runner, so setting it where ``run()`` is called applies to every worker.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Coroutine, TypeVar

from ..protocol.errors import ConfigurationError

LOOP_ENV = "EZMSG_CONSOLE_LOOP"
CHOICES = ("asyncio", "uvloop", "auto")

T = TypeVar("T")


def loop_choice(environ: Any = None) -> str:
    """The value of ``EZMSG_CONSOLE_LOOP`` (``asyncio`` when unset or empty)."""
    value = (environ if environ is not None else os.environ).get(LOOP_ENV, "").strip().lower() or "asyncio"
    if value not in CHOICES:
        raise ConfigurationError(f"{LOOP_ENV}={value!r}: expected one of {', '.join(CHOICES)}")
    return value


def _uvloop() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def new_event_loop(environ: Any = None) -> asyncio.AbstractEventLoop:
    """A new event loop as ``EZMSG_CONSOLE_LOOP`` chooses (see the module docstring)."""
    choice = loop_choice(environ)
    if choice != "asyncio":
        uvloop = _uvloop()
        if uvloop is not None:
            return uvloop.new_event_loop()
        if choice == "uvloop":
            raise ConfigurationError(f"{LOOP_ENV}=uvloop but uvloop is not installed "
                                     "(pip install 'ezmsg-console[fast]')")
    return asyncio.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio``: what ``loop`` (default: the running loop) is."""
    loop = loop if loop is not None else asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.split(".")[0] == "uvloop" else "asyncio"


def run_loop(coro: Coroutine[Any, Any, T], environ: Any = None) -> T:
    """``asyncio.run(coro)`` on the loop :func:`new_event_loop` chooses."""
    try:
        loop = new_event_loop(environ)
    except BaseException:
        coro.close()  # never started: no "was never awaited" warning
        raise
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            return runner.run(coro)
    # Python 3.10: asyncio.run() has no loop factory; lend it a policy that hands out our loop.
    policy = asyncio.get_event_loop_policy()

    class _Policy(type(policy)):  # type: ignore[misc]
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return loop

    asyncio.set_event_loop_policy(_Policy())
    try:
        return asyncio.run(coro)
    finally:
        asyncio.set_event_loop_policy(policy)
