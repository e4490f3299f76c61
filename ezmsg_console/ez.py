"""The runtime under the names ezmsg 3.9 users write: ``import ezmsg_console.ez as ez``.

A pipeline written for ``import ezmsg.core as ez`` runs on ezmsg-console's runtime with only
that import changed: ``ez.Unit``, ``ez.Collection``, ``ez.Settings``, ``ez.State``,
``ez.InputStream``/``ez.OutputStream``, ``@ez.subscriber``/``@ez.publisher``/``@ez.task``/
``@ez.main``/``@ez.thread``/``@ez.timeit``, ``ez.Complete``/``ez.NormalTermination``,
``ez.NetworkDefinition``, ``ez.logger`` and ``ez.run(...)`` (keyword roots, or
``components=``/``connections=``/``graph_address=``/``force_single_process=``). One addition of
ours: ``with ez.profile_span("label"):`` times part of a handler (``user_span_ns``).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from .runtime import (
    Collection,
    Complete,
    InputStream,
    NormalTermination,
    OutputStream,
    RunResult,
    Settings,
    State,
    Unit,
    main,
    profile_span,
    publisher,
    run,
    run_async,
    setting,
    subscriber,
    task,
    thread,
    timeit,
)

NetworkDefinition = Iterable[tuple[Any, Any]]
"""What ``Collection.network()`` returns: ``(from, to)`` pairs of streams or topic strings."""

logger = logging.getLogger("ezmsg_console.units")
"""A logger for units (ezmsg's ``ez.logger``)."""

__all__ = [
    "Collection",
    "Complete",
    "InputStream",
    "NetworkDefinition",
    "NormalTermination",
    "OutputStream",
    "RunResult",
    "Settings",
    "State",
    "Unit",
    "logger",
    "main",
    "profile_span",
    "publisher",
    "run",
    "run_async",
    "setting",
    "subscriber",
    "task",
    "thread",
    "timeit",
]
