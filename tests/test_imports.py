"""Every module of the package imports (the smoke run on the lowest declared versions starts here)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import ezmsg_console

MODULES = sorted(m.name for m in pkgutil.walk_packages(ezmsg_console.__path__, "ezmsg_console.")
                 if m.name != "ezmsg_console.__main__")  # runs the CLI when imported


def test_the_walk_finds_the_packages() -> None:
    assert {"ezmsg_console.cli", "ezmsg_console.protocol.codec", "ezmsg_console.tui.app"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "ezmsg":
            raise
        pytest.skip("needs the [ezmsg] extra")
