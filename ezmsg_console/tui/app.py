"""The ezmsg-console Textual app: header, four tabs, footer, help, command palette.

The app owns a :class:`GraphMonitor` (and, when it started one, an embedded
GraphServer with the demo pipeline). The monitor calls back on every change;
the app coalesces those into at most ``1 / MAX_FPS`` redraws and hands each
tab the set of kinds that changed. ``p`` pauses redraws (the monitor keeps
collecting; resuming redraws everything).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from ..client.monitor import ConnState, GraphMonitor
from ..protocol.address import parse_address
from ..protocol.errors import ConsoleError
from .header import ConsoleHeader
from .help import HelpScreen
from .pane import Pane
from .processes import ProcessesPane
from .profiling import ProfilingPane
from .prompt import PromptScreen
from .settings import SettingsPane
from .topology import TopologyPane

MAX_FPS = 10.0
UI_CPU_BUDGET = 0.2
"""Redraws are spaced so that drawing takes at most this share of one core: a console
watching thousands of endpoints must not take the CPU the pipeline needs."""
MIN_FRAME_GAP_S = 2.0
REFRESH_STEPS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
ALL_KINDS = frozenset({"connection", "topology", "settings", "profiling", "processes", "trace", "error"})


class ConsoleApp(App[int]):
    """``ezmsg-console``: a live operator console for one GraphServer."""

    TITLE = "ezmsg-console"
    CSS_PATH = "console.tcss"
    BINDINGS = [
        Binding("1", "tab('settings')", "Settings"),
        Binding("2", "tab('topology')", "Topology"),
        Binding("3", "tab('profiling')", "Profiling"),
        Binding("4", "tab('processes')", "Processes"),
        Binding("p", "pause", "Pause"),
        Binding("r", "refresh_now", "Refresh", show=False),
        Binding("plus", "rate(-1)", "Faster", key_display="+", show=False),
        Binding("minus", "rate(1)", "Slower", key_display="-", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False),
        Binding("ctrl+e", "export", "Export view", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, monitor: GraphMonitor, *, embedded: Any = None, read_only: bool = False,
                 export_dir: str | os.PathLike[str] = ".") -> None:
        super().__init__()
        self.monitor = monitor
        self.embedded = embedded
        self.read_only = read_only
        self.export_dir = Path(export_dir)
        self.paused = False
        self._pending: set[str] = set()
        self._last_draw = 0.0
        self._draw_scheduled = False
        self.redraws = 0
        self._behind: dict[str, set[str]] = {}  # tab -> kinds it has not drawn yet (it was hidden)
        self._frame_gap = 1.0 / MAX_FPS
        self.frame_cost = 0.0  # smoothed seconds per redraw, screen render included
        self._warned: set[str] = set()
        self.gc_frozen = False
        self._shutting_down = False  # set once shutdown() starts: no freeze after it
        monitor.read_only = read_only
        monitor.on_change = self._on_monitor_change

    # -- layout ----------------------------------------------------------

    def compose(self) -> ComposeResult:
        label = getattr(self.embedded, "LABEL", "embedded demo") if self.embedded is not None else ""
        yield ConsoleHeader(self.monitor, embedded=label, read_only=self.read_only)
        with TabbedContent(initial="settings"):
            for pane_cls in (SettingsPane, TopologyPane, ProfilingPane, ProcessesPane):
                with TabPane(f"{pane_cls.TITLE} [{self._tab_number(pane_cls.TAB_ID)}]", id=pane_cls.TAB_ID):
                    yield pane_cls(self.monitor, id=f"pane-{pane_cls.TAB_ID}")
        yield Footer()

    @staticmethod
    def _tab_number(tab_id: str) -> int:
        return ["settings", "topology", "profiling", "processes"].index(tab_id) + 1

    def on_mount(self) -> None:
        self.monitor.start()
        self.set_interval(1.0, self._tick)
        self.call_after_refresh(self.active_pane.focus_default)

    @property
    def main(self) -> Screen[Any]:
        """The screen with the tabs (queries must not search a modal on top of it)."""
        return self.screen_stack[0]

    @property
    def header(self) -> ConsoleHeader:
        return self.main.query_one(ConsoleHeader)

    @property
    def panes(self) -> list[Pane]:
        return list(self.main.query(Pane))

    @property
    def active_pane(self) -> Pane:
        active = self.main.query_one(TabbedContent).active
        return self.main.query_one(f"#pane-{active}", Pane)

    # -- live updates ------------------------------------------------------

    def _on_monitor_change(self, kind: str) -> None:
        self._pending.add(kind)
        if self.paused or self._draw_scheduled:
            return
        delay = max(0.005, self._last_draw + self._frame_gap - time.monotonic())
        self._draw_scheduled = True
        self.set_timer(delay, self._draw)

    def _draw(self) -> None:
        self._draw_scheduled = False
        if self.paused or not self._pending or not self.is_running:  # shutting down: widgets are gone
            return
        kinds, self._pending = self._pending, set()
        started = self._last_draw = time.monotonic()
        self.redraws += 1
        self.call_after_refresh(self._drawn, started)
        active = self.active_pane
        for pane in self.panes:
            if pane is not active:  # hidden tabs catch up when they are shown
                self._behind[pane.TAB_ID] = self._behind.get(pane.TAB_ID, set()) | kinds
                continue
            kinds = kinds | self._behind.pop(pane.TAB_ID, set())
            try:
                pane.refresh_view(kinds)
            except Exception as exc:  # noqa: BLE001 - one tab's bug must not take the console down
                self.log.error(f"{pane.TAB_ID}: {exc!r}")
                self.notify(f"{pane.TITLE}: could not draw: {exc}", severity="error", timeout=5)
        self.header.refresh_header()

    def _drawn(self, started: float) -> None:
        """After the screen showed a redraw: adapt the gap between redraws to what they cost."""
        cost = time.monotonic() - started
        self.frame_cost = cost if not self.frame_cost else 0.8 * self.frame_cost + 0.2 * cost
        self._frame_gap = min(MIN_FRAME_GAP_S, max(1.0 / MAX_FPS, self.frame_cost / UI_CPU_BUDGET))
        st = self.monitor.state
        if not self.gc_frozen and not self._shutting_down and st.snapshot is not None and st.profiling:
            # Everything alive now (Textual's widget tree, the first graph) lives as long as the
            # console: out of the collector's sight, a full collection no longer scans it, which
            # took one 70-80 ms pause on a 2,000-endpoint console down to under 20 ms.
            gc.freeze()
            self.gc_frozen = True

    def _tick(self) -> None:
        """Once a second: ages, countdowns and the connection state change with time alone."""
        if not self.is_running:
            return
        self.header.refresh_header()
        for warning in self.monitor.state.warnings:
            if warning not in self._warned:  # said once per server, not every second
                self._warned.add(warning)
                self.notify(warning, title="Warning", severity="warning", timeout=15)
        st = self.monitor.state
        if st.conn_state is not ConnState.CONNECTED and st.last_error:
            said = f"cannot connect to {st.address}: {st.last_error}"
            if said not in self._warned:  # once per address and reason: the header keeps it short
                self._warned.add(said)
                self.notify(said, title="Connection", severity="error", timeout=10)
        failure = getattr(self.embedded, "failure", None)
        if failure and failure not in self._warned:  # e.g. --demo on a server where DEMO is taken
            self._warned.add(failure)
            self.header.alert = "DEMO NOT RUNNING"
            self.notify(f"the demo pipeline could not run: {failure}", title="Demo", severity="error", timeout=30)
        if not self.paused:
            self._on_monitor_change("clock")

    # -- actions -----------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.main.query_one(TabbedContent).active = tab
        self.active_pane.focus_default()

    def show_tab(self, tab: str, target: str | None = None) -> None:
        """Switch to ``tab`` and select ``target`` there (used by ``enter`` on other tabs)."""
        self.action_tab(tab)
        if target is not None:
            self.main.query_one(f"#pane-{tab}", Pane).show(target)

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.header.paused = self.paused
        self.header.refresh_header()
        for warning in self.monitor.state.warnings:
            if warning not in self._warned:  # said once per server, not every second
                self._warned.add(warning)
                self.notify(warning, title="Warning", severity="warning", timeout=15)
        if not self.paused:
            self._pending |= ALL_KINDS
            self._on_monitor_change("clock")

    def action_refresh_now(self) -> None:
        self.monitor.refresh()
        self._pending |= ALL_KINDS
        self._on_monitor_change("clock")

    def action_rate(self, step: int) -> None:
        current = self.monitor.profiling_interval
        index = min(range(len(REFRESH_STEPS)), key=lambda i: abs(REFRESH_STEPS[i] - current))
        self.monitor.profiling_interval = REFRESH_STEPS[max(0, min(len(REFRESH_STEPS) - 1, index + step))]
        self.monitor.refresh()
        self.notify(f"profiling refresh every {self.monitor.profiling_interval:g} s", timeout=2)
        self.header.refresh_header()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.active_pane, self))

    def action_export(self) -> None:
        name, rows = self.active_pane.export_rows()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.export_dir / f"ezmsg-console-{name}-{stamp}.json"
        try:
            path.write_text(json.dumps({"view": name, "captured": time.time(), "address": self.monitor.state.address,
                                        "rows": rows}, indent=2, sort_keys=True, default=str) + "\n")
        except OSError as exc:
            self.notify(f"export failed: {exc}", severity="error")
            return
        self.notify(f"exported {len(rows)} rows to {path}", timeout=4)

    def action_connect(self) -> None:
        def done(address: str | None) -> None:
            if address:
                self.monitor.set_address(address)
                self.notify(f"connecting to {address}")
        self.push_screen(PromptScreen("Connect to GraphServer (host:port)", self.monitor.state.address,
                                      check=_address_problem), done)

    def action_read_only(self) -> None:
        self.read_only = True
        self.monitor.read_only = True
        self.header.read_only = True
        self.screen.refresh_bindings()  # the edit and trace keys leave the footer
        self._pending |= ALL_KINDS
        self._on_monitor_change("clock")
        self.notify("read-only: edits and tracing are now refused")

    @work(exclusive=True, group="quit")
    async def action_quit(self) -> None:  # type: ignore[override]  # a worker: Textual takes either
        self.notify("stopping…", timeout=10)
        await self.shutdown()
        self.exit(0)

    async def shutdown(self) -> None:
        """Turn our tracing off, disconnect, and stop the embedded pipeline and server."""
        self._shutting_down = True  # a redraw while stopping must not freeze the heap again
        if self.gc_frozen:  # what was frozen is collectable again once the console is gone
            gc.unfreeze()
            self.gc_frozen = False
        try:
            await asyncio.wait_for(self.monitor.stop(), 10)
        except (ConsoleError, OSError, asyncio.TimeoutError, TimeoutError):
            pass
        if self.embedded is not None:
            embedded, self.embedded = self.embedded, None
            await asyncio.to_thread(embedded.stop)

    # -- command palette ------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Connect", "Connect to another GraphServer address", self.action_connect)
        yield SystemCommand("Export view", "Write the current tab's rows as JSON", self.action_export)
        yield SystemCommand("Pause / resume", "Stop or restart redrawing (data keeps coming)", self.action_pause)
        yield SystemCommand("Refresh now", "Poll profiling and process stats now", self.action_refresh_now)
        if not self.read_only:
            yield SystemCommand("Read-only mode", "Refuse every edit and trace change from now on",
                                self.action_read_only)
            profiling = self.main.query_one("#pane-profiling", ProfilingPane)
            yield SystemCommand("Trace on/off", "Toggle tracing of the selected profiling row",
                                profiling.action_toggle_trace)
        yield SystemCommand("Help", "Every key of the current tab", self.action_help)

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, _event: TabbedContent.TabActivated) -> None:
        self._pending |= ALL_KINDS
        self._on_monitor_change("clock")


def _address_problem(text: str) -> str | None:
    """Why ``text`` is not a GraphServer address (None if it is one)."""
    try:
        parse_address(text)
    except ConsoleError as exc:
        return exc.message
    return None
