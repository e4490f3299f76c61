"""The pipeline runtime: units with typed settings, collections, worker processes, ``run()``."""

from __future__ import annotations

from .runner import RunResult, run, run_async
from .settings import Settings, setting
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
    "Unit",
    "publisher",
    "run",
    "run_async",
    "setting",
    "subscriber",
]
