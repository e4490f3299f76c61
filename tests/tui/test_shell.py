"""The console's shell: header, tabs by number, help, pause."""

from __future__ import annotations

import gc
import time
from typing import Any, Iterator

import pytest

from textual.widgets import TabbedContent

from ezmsg_console.tui.header import ConsoleHeader
from ezmsg_console.tui.help import HelpScreen

from ..demo import running_demo
from ..conftest import TIMEOUT
from .conftest import wait_until


async def test_header_shows_the_connection_and_counts(console: Any) -> None:
    async with console() as (app, pilot):
        text = app.query_one(ConsoleHeader).render()
        plain = str(text)
        assert "connected" in plain and "procs 3" in plain and "units 4" in plain and "edges 3" in plain
        for key, tab in (("2", "topology"), ("3", "profiling"), ("4", "processes"), ("1", "settings")):
            await pilot.press(key)
            assert app.query_one(TabbedContent).active == tab


async def test_the_long_lived_heap_is_frozen_while_running_and_released_after(console: Any) -> None:
    """After the first data is drawn the collector stops scanning what lives as long as the console
    (full collections were 70-80 ms pauses on a big graph); shutting down gives it back."""
    async with console() as (app, pilot):
        await wait_until(pilot, lambda: app.gc_frozen, "the heap frozen after the first data")
        assert gc.get_freeze_count() > 1000
        await app.shutdown()
        assert not app.gc_frozen and gc.get_freeze_count() == 0
        app._drawn(time.monotonic())  # a redraw that lands while (or after) stopping: no new freeze
        assert not app.gc_frozen and gc.get_freeze_count() == 0


async def test_help_lists_the_keys_of_the_current_tab(console: Any) -> None:
    async with console() as (app, pilot):
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help screen")
        keys = {(section, key) for section, key, _desc in app.screen.entries}
        assert {("Tables", "/"), ("Tables", "I"), ("Tables", "c"), ("Everywhere", "p"), ("Everywhere", "?"),
                ("Everywhere", "ctrl+p")} <= keys
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_pause_stops_redraws_while_data_keeps_arriving(console: Any) -> None:
    async with console() as (app, pilot):
        await pilot.press("p")
        assert "PAUSED" in str(app.query_one(ConsoleHeader).render())
        frozen = app.redraws
        before = app.monitor.state.profiling_time
        await wait_until(pilot, lambda: app.monitor.state.profiling_time > before + 0.4, "profiling data while paused")
        assert app.redraws == frozen
        await pilot.press("p")
        await wait_until(pilot, lambda: app.redraws > frozen, "a redraw after resuming")


async def test_server_loss_shows_reconnecting_and_the_console_recovers() -> None:
    """A GraphServer of its own (no demo): killed, then started again on the same address."""
    from ezmsg_console.client.monitor import ConnState, GraphMonitor
    from ezmsg_console.server import GraphServer
    from ezmsg_console.tui.app import ConsoleApp


    first = GraphServer("127.0.0.1:0")
    address = first.start_in_thread(TIMEOUT)
    second = None
    monitor = GraphMonitor(address, profiling_interval=0.5, timeout=TIMEOUT)
    app = ConsoleApp(monitor)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            header = app.header
            await wait_until(pilot, lambda: "connected" in str(header.render()), "connected")
            old_epoch = monitor.state.server_epoch
            first.stop_thread()
            await wait_until(pilot, lambda: "reconnecting" in str(header.render()), "reconnecting in the header")
            assert "STALE" in str(header.render())  # the last data is kept, marked stale
            second = GraphServer(str(address))
            second.start_in_thread(TIMEOUT)
            await wait_until(pilot, lambda: monitor.state.conn_state is ConnState.CONNECTED
                             and "● connected" in str(header.render()), "recovered")
            assert monitor.state.server_epoch != old_epoch
            assert "STALE" not in str(header.render())
            await app.shutdown()
    finally:
        first.stop_thread()
        if second is not None:
            second.stop_thread()


@pytest.fixture
def own_demo() -> Iterator[Any]:
    """A demo only this test uses (the console under test stops it)."""
    with running_demo() as demo:
        yield demo


async def test_quit_stops_the_embedded_demo_and_its_tracing(own_demo: Any) -> None:
    """``q`` on a console that started the demo: tracing off, workers gone, no shared memory left."""
    import psutil

    from ezmsg_console.client.monitor import GraphMonitor
    from ezmsg_console.pubsub import shm
    from ezmsg_console.tui.app import ConsoleApp

    demo = own_demo
    if True:
        run_tag = demo.runner.run_tag
        workers = [psutil.Process(w.proc.pid) for w in demo.runner.workers]
        assert len(workers) == 3
        monitor = GraphMonitor(demo.address, profiling_interval=0.5)
        app = ConsoleApp(monitor, embedded=demo)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: bool(monitor.state.profiling), "profiling data")
            endpoint = next(s.endpoint_id for p in monitor.state.profiling.values()
                            for s in getattr(p, "subscribers", ()) if s.topic == "DEMO/FILTER/INPUT")
            await monitor.set_trace(endpoint, True, ttl_seconds=60)
            tracer_was_on = bool(monitor.state.traced)
            await pilot.press("q")
            # The quit worker clears ``embedded`` before the demo has stopped and only then calls
            # ``exit(0)``: wait for the exit itself, or leaving ``run_test`` cancels the worker.
            await wait_until(pilot, lambda: app.return_value is not None, "the console stopping the demo",
                             timeout=3 * TIMEOUT)
        assert tracer_was_on and not monitor.state.traced
        assert app.return_value == 0 and app.embedded is None
        gone, alive = psutil.wait_procs(workers, timeout=TIMEOUT)
        assert not alive, f"workers still running: {alive}"
        assert shm.ours(run_tag + "_") == []


async def test_demo_on_a_server_where_demo_is_taken_shows_the_collision(demo: Any) -> None:
    """'ezmsg-console --demo' on a server that already runs the demo: the second pipeline's
    address collision is shown in the console, not lost in a log."""
    from ezmsg_console.runtime.embedded import EmbeddedDemo

    from .conftest import open_console

    second = EmbeddedDemo(demo.address)
    second.start_pipeline_only()
    try:
        async with open_console(demo.address, embedded=second) as (app, pilot):
            await wait_until(pilot, lambda: any("demo pipeline could not run" in str(n.message)
                                                for n in app._notifications), "the collision shown")
            note = next(str(n.message) for n in app._notifications if "demo pipeline could not run" in str(n.message))
            assert "DEMO" in note and ("taken" in note or "collision" in note.lower() or "registered" in note), note
            await wait_until(pilot, lambda: "DEMO NOT RUNNING" in str(app.header.render()), "the header badge")
            app.embedded = None  # the module's demo is not this console's to stop
    finally:
        second.stop()


async def test_the_connect_prompt_refuses_a_bad_address(console: Any) -> None:
    from textual.widgets import Input

    from ezmsg_console.tui.prompt import PromptScreen

    async with console() as (app, pilot):
        address = app.monitor.address
        app.action_connect()
        await wait_until(pilot, lambda: isinstance(app.screen, PromptScreen) and bool(app.screen.query(Input)),
                         "the Connect prompt")
        prompt = app.screen
        prompt.query_one(Input).value = ""
        await pilot.press(*"nowhere", "enter")
        assert app.screen is prompt and prompt.reason is not None and "expected host:port" in prompt.reason
        assert app.monitor.address == address  # nothing changed
        prompt.query_one(Input).value = ""
        await pilot.press(*"127.0.0.1:99999", "enter")
        assert app.screen is prompt and "port must be a number from 0 to 65535" in (prompt.reason or "")
        await pilot.press("escape")
        assert not isinstance(app.screen, PromptScreen) and app.monitor.address == address


async def test_read_only_hides_the_edit_and_trace_keys_from_the_footer(console: Any) -> None:
    def shown(app: Any) -> set[str]:
        return {key for key, active in app.screen.active_bindings.items() if active.binding.show}

    async with console() as (app, pilot):
        await pilot.press("1")
        assert {"e", "u"} <= shown(app)
        await pilot.press("3")
        assert "t" in shown(app)
    async with console(read_only=True) as (app, pilot):
        await pilot.press("1")
        assert not {"e", "u"} & shown(app)
        await pilot.press("3")
        assert "t" not in shown(app)
        await pilot.press("t")  # the key still says why
        await wait_until(pilot, lambda: any("read-only" in str(n.message) for n in app._notifications),
                         "the read-only refusal")
