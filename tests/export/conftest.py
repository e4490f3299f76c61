"""A real demo pipeline for the headless command tests, and a helper running the command.

The demo runs once per module (an embedded GraphServer on port 0 and three
worker processes); commands run as real subprocesses against it. Tests read
the current state (others may have changed settings) instead of assuming
defaults.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Iterator

import pytest

from ezmsg_console.runtime.embedded import EmbeddedDemo

from ..conftest import TIMEOUT
from ..demo import running_demo

DEMO_UNITS = ("DEMO/FEATURES", "DEMO/FILTER", "DEMO/SINK", "DEMO/SOURCE")
DEMO_EDGES = (("DEMO/FEATURES/OUTPUT", "DEMO/SINK/INPUT"), ("DEMO/FILTER/OUTPUT", "DEMO/FEATURES/INPUT"),
              ("DEMO/SOURCE/OUTPUT", "DEMO/FILTER/INPUT"))


def run_cli(*args: str, timeout: float = 3 * TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python -m ezmsg_console ARGS`` with captured text output (environment already cleaned)."""
    return subprocess.run([sys.executable, "-m", "ezmsg_console", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def demo() -> Iterator[EmbeddedDemo]:
    """The demo pipeline on an embedded GraphServer (port 0), for the whole module."""
    with running_demo() as embedded:
        yield embedded
