"""Regenerate the README screenshots from the real app on the real demo pipeline.

    python -m ezmsg_console.tui.screenshots [--out screenshots] [--size 120x40]

Starts an embedded GraphServer with the demo pipeline (port 0), opens the
console at the given size with Textual's test driver, and saves one SVG per
view: each tab, the typed editor open, and the editor showing a refused
(out-of-range) value. With the ``[ezmsg]`` extra it then does the same for the
Settings and Profiling tabs on the ezmsg demo (a real ezmsg GraphServer and
pipeline). Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..client.monitor import ConnState, GraphMonitor
from ..protocol.errors import ConsoleError
from ..runtime.embedded import EmbeddedDemo
from .app import ConsoleApp
from .editor import EditorScreen
from .table import LiveTable

WARM_UP_S = 4.0
"""Let a few profiling windows pass so rates, sparklines and histograms have data."""


async def _until(pilot: Any, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        await pilot.pause(0.05)


def _shooter(app: ConsoleApp, out: Path, saved: list[Path]) -> Callable[[str], None]:
    """``shot(name)`` saves the app's screen as ``out/name.svg`` and records it in ``saved``."""
    def shot(name: str) -> None:
        path = out / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
        saved.append(path)
        print(f"  {path}", flush=True)
    return shot


async def _warm_up_and_trace(pilot: Any, monitor: GraphMonitor, histories: int) -> str | None:
    """Wait for live data, let a few windows pass, and trace DEMO/FILTER/INPUT (its endpoint id)."""
    await _until(pilot, lambda: monitor.state.conn_state is ConnState.CONNECTED
                 and len(monitor.state.rate_history) >= histories, "live data")
    await pilot.pause(WARM_UP_S)
    filter_input = next((s.endpoint_id for p in monitor.state.profiling.values()
                         for s in getattr(p, "subscribers", ()) if s.topic == "DEMO/FILTER/INPUT"), None)
    if filter_input is not None:
        await monitor.set_trace(filter_input, True, ttl_seconds=60)
    return filter_input


async def take(out: Path, size: tuple[int, int]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    demo = EmbeddedDemo("127.0.0.1:0")
    address = demo.start()
    monitor = GraphMonitor(address, profiling_interval=0.5)
    app = ConsoleApp(monitor, embedded=demo)
    saved: list[Path] = []
    shot = _shooter(app, out, saved)
    try:
        async with app.run_test(size=size) as pilot:
            filter_input = await _warm_up_and_trace(pilot, monitor, 6)  # the profiling tab shows samples

            await pilot.press("1")
            app.show_tab("settings", "DEMO/FILTER")
            await pilot.pause(0.5)
            pane = app.main.query_one("#pane-settings")
            fields = pane.query_one("#fields", LiveTable)
            fields.table.focus()
            fields.select("cutoff_hz")
            await pilot.pause(0.3)
            shot("settings")

            await pilot.press("enter")
            await _until(pilot, lambda: isinstance(app.screen, EditorScreen), "the editor")
            await pilot.press("end", "ctrl+u", *"42.5")
            await pilot.pause(0.3)
            shot("settings-editor")
            await pilot.press("end", "ctrl+u", *"5000")
            await pilot.pause(0.3)
            shot("settings-editor-refused")
            await pilot.press("escape")
            await pilot.pause(0.2)

            await pilot.press("2")
            await pilot.pause(0.5)
            shot("topology")

            await pilot.press("3")
            app.show_tab("profiling", filter_input or "DEMO/FILTER/INPUT")
            await _until(pilot, lambda: len(monitor.state.trace_samples) > 20, "trace samples", timeout=10)
            await pilot.pause(1.0)
            shot("profiling")

            await pilot.press("4")
            await _until(pilot, lambda: len(monitor.state.process_stats) >= 3, "process stats")
            await pilot.pause(0.5)
            shot("processes")

            await pilot.press("question_mark")
            await pilot.pause(0.3)
            shot("help")
            await pilot.press("escape")
            await app.shutdown()
    finally:
        await monitor.stop()
        demo.stop()
    return saved


async def take_ezmsg(out: Path, size: tuple[int, int]) -> list[Path]:
    """The Settings and Profiling tabs on the ezmsg demo (a real ezmsg GraphServer and pipeline)."""
    from ..ezmsg_backend.launcher import EzmsgDemo

    out.mkdir(parents=True, exist_ok=True)
    demo = EzmsgDemo()
    address = await asyncio.to_thread(demo.start)
    monitor = GraphMonitor(address, profiling_interval=0.5, backend="ezmsg", version=demo.version)
    app = ConsoleApp(monitor, embedded=demo)
    saved: list[Path] = []
    shot = _shooter(app, out, saved)
    try:
        async with app.run_test(size=size) as pilot:
            filter_input = await _warm_up_and_trace(pilot, monitor, 4)
            await pilot.press("1")
            app.show_tab("settings", "DEMO/GEN")
            await pilot.pause(0.5)
            fields = app.main.query_one("#pane-settings").query_one("#fields", LiveTable)
            fields.table.focus()
            fields.select("rate_hz")
            await pilot.pause(0.3)
            shot("ezmsg-settings")
            await pilot.press("3")
            app.show_tab("profiling", filter_input or "DEMO/FILTER/INPUT")
            await _until(pilot, lambda: len(monitor.state.trace_samples) > 10, "trace samples", timeout=15)
            await pilot.pause(1.5)
            shot("ezmsg-profiling")
            await app.shutdown()
    finally:
        await monitor.stop()
        await asyncio.to_thread(demo.stop)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="screenshots", help="folder for the SVG files (default: screenshots)")
    parser.add_argument("--size", default="120x40", help="terminal size COLSxROWS (default 120x40)")
    args = parser.parse_args(argv)
    try:
        cols, rows = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 120x40, got {args.size!r}")
    print(f"taking screenshots at {cols}x{rows} into {args.out}/", flush=True)
    from ..client.source import EZMSG_EXTRA_HINT, ezmsg_available

    try:
        asyncio.run(take(Path(args.out), (cols, rows)))
        if ezmsg_available():
            asyncio.run(take_ezmsg(Path(args.out), (cols, rows)))
        else:
            print(f"  (skipped the ezmsg screenshots: {EZMSG_EXTRA_HINT})", flush=True)
    except (RuntimeError, ConsoleError) as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
