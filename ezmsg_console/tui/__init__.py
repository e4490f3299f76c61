"""The Textual console (imported only by the ``ezmsg-console`` command and tests).

Importing this package does not import Textual: the pure row and format
modules can be used (and tested) without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConsoleApp"]


def __getattr__(name: str) -> Any:
    if name == "ConsoleApp":
        from .app import ConsoleApp

        return ConsoleApp
    raise AttributeError(name)
