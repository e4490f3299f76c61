"""A real embedded GraphServer with the demo pipeline, and the real console app driven by Textual's pilot.

The demo runs once per test module (three worker processes, in background
threads of this process); each test gets a fresh ConsoleApp and GraphMonitor
connected to it. Tests must read the current state (earlier tests may have
edited settings), never assume defaults.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, AsyncIterator, Callable, Iterator

import pytest

from ezmsg_console.client.monitor import ConnState, GraphMonitor
from ezmsg_console.runtime.embedded import EmbeddedDemo
from ezmsg_console.tui.app import ConsoleApp

from ..conftest import TIMEOUT
from ..demo import running_demo

SIZE = (120, 40)
DEMO_UNITS = {"DEMO/SOURCE", "DEMO/FILTER", "DEMO/FEATURES", "DEMO/SINK"}


@pytest.fixture(scope="module")
def demo() -> Iterator[EmbeddedDemo]:
    """The demo pipeline on an embedded GraphServer (port 0), for the whole module."""
    with running_demo() as embedded:
        yield embedded


async def wait_until(pilot: Any, predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Let the app run until ``predicate()`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await pilot.pause(0.05)


@contextlib.asynccontextmanager
async def open_console(address: Any, *, read_only: bool = False, profiling_interval: float = 0.5,
                       embedded: Any = None, export_dir: Any = ".", backend: str | None = "native"
                       ) -> AsyncIterator[tuple[ConsoleApp, Any]]:
    """A real ConsoleApp on ``address`` at 120x40, connected and drawn once; shut down on exit."""
    monitor = GraphMonitor(address, profiling_interval=profiling_interval, timeout=TIMEOUT, backend=backend)
    app = ConsoleApp(monitor, embedded=embedded, read_only=read_only, export_dir=export_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: monitor.state.conn_state is ConnState.CONNECTED
                         and monitor.state.snapshot is not None and bool(monitor.state.settings)
                         and bool(monitor.state.profiling), "first data")
        drawn = app.redraws
        await wait_until(pilot, lambda: app.redraws > drawn, "a redraw with that data")
        try:
            yield app, pilot
        finally:
            await app.shutdown()


@pytest.fixture
def console(demo: EmbeddedDemo) -> Callable[..., Any]:
    """``async with console(read_only=False) as (app, pilot):`` on the module's demo."""
    def factory(**kwargs: Any) -> Any:
        return open_console(demo.address, **kwargs)
    return factory
