"""The pipeline runtime: units with typed settings, collections, worker processes, ``run()``."""

from __future__ import annotations

from ..pubsub.spans import profile_span
from .decorators import main, task, thread, timeit
from .runner import RunResult, run, run_async
from .settings import Settings, setting
from .state import State
from .unit import (
    Collection,
    Complete,
    InputStream,
    NormalTermination,
    OutputStream,
    Unit,
    publisher,
    subscriber,
)

__all__ = [
    "Collection",
    "Complete",
    "InputStream",
    "NormalTermination",
    "OutputStream",
    "RunResult",
    "Settings",
    "State",
    "Unit",
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
