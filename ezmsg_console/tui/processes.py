"""The Processes tab: every worker process, its health, and the units it runs.

The upper table lists the processes of the graph snapshot with the stats the
monitor polls (uptime, CPU, memory, ping round trip); a process whose stats or
profiling failed shows the error in its status column. The lower table lists
the units of the selected process. ``enter`` on a process moves into its units;
``enter`` on a unit opens it in the Settings tab; ``backspace`` goes back up.
The row functions are module-level and pure (tested without Textual).
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from ..protocol.graph import ComponentMetadata, GraphSnapshot, ProcessInfo, StreamDirection
from ..protocol.profiling import ProfilingError
from .format import fmt_bytes, fmt_count, fmt_ns
from .pane import Pane
from .profiling_rows import BAD, DIM, WARN, Row, Val, short_id
from .table import Cell, LiveTable, columns

CPU_WARN, CPU_BAD = 50.0, 90.0
PING_WARN_MS, PING_BAD_MS = 50.0, 250.0

PROCESS_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("process", "Process", 8), ("pid", "PID", 7), ("host", "Host", 10), ("units", "Units", 26),
    ("uptime", "Uptime", 7), ("cpu", "CPU%", 7), ("memory", "Memory", 9), ("ping", "Ping", 9),
    ("status", "Status", 14))
UNIT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("unit", "Unit", 24), ("type", "Type", 18), ("inputs", "Inputs", 24), ("outputs", "Outputs", 16),
    ("published", "Published", 10))


def _v(raw: Any, text: str, style: str = "") -> Val:
    return Val(raw, Text(text, style=style))


def fmt_uptime(seconds: float | None) -> str:
    """42s, 12m05s, 3h12m, 2d03h."""
    if seconds is None:
        return "-"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _graded(value: float, text: str, warn: float, bad: float) -> Val:
    if value >= bad:
        return _v(value, f"▲ {text}", BAD)
    if value >= warn:
        return _v(value, f"△ {text}", WARN)
    return _v(value, text)


def process_row(proc: ProcessInfo, stats: Mapping[str, Any] | None, profiling: Any, now: float) -> Row:
    """One process: identity from the snapshot, health from its stats (``None``: not polled yet)."""
    ident = (_v(proc.process_id, short_id(proc.process_id)), _v(proc.pid, str(proc.pid) if proc.pid else "-"),
             _v(proc.host, proc.host or "-"), _v(", ".join(sorted(proc.units)), ", ".join(sorted(proc.units)) or "-"))
    if stats is None or "error" in stats:
        blank = tuple(_v(None, "-", DIM) for _ in range(4))
        if stats is None:
            return (*ident, *blank, _v("waiting", "… waiting", DIM))
        return (*ident, *blank, _v(str(stats["error"]), f"✕ {stats['error']}", BAD))
    age = max(0.0, now - float(stats.get("timestamp") or now))
    ping = stats.get("ping_ms")
    if isinstance(profiling, ProfilingError):
        status = _v(profiling.error_code, f"✕ prof {profiling.error_code}", BAD)
    else:
        status = _v("ok", "● ok", "green")
    # A backend that cannot tell (an ezmsg process on another host) leaves a key out: "n/a", not 0.
    na = _v(None, "n/a", DIM)
    uptime = float(stats["uptime_s"]) + age if "uptime_s" in stats else None
    cpu = stats.get("cpu_percent")
    memory = stats.get("memory_rss_bytes")
    return (*ident, _v(uptime, fmt_uptime(uptime)) if uptime is not None else na,
            _graded(float(cpu), f"{float(cpu):.1f}%", CPU_WARN, CPU_BAD) if cpu is not None else na,
            _v(memory, fmt_bytes(memory)) if memory is not None else na,
            _graded(ping, fmt_ns(ping * 1e6), PING_WARN_MS, PING_BAD_MS) if ping is not None else _v(None, "-", DIM),
            status)


def process_rows(snapshot: GraphSnapshot | None, stats: Mapping[str, Mapping[str, Any]],
                 profiling: Mapping[str, Any], now: float | None = None) -> dict[str, Row]:
    """Every process of the snapshot, keyed by process id."""
    now = time.time() if now is None else now
    return {p.process_id: process_row(p, stats.get(p.process_id), profiling.get(p.process_id), now)
            for p in (snapshot.processes if snapshot else ())}


def components(snapshot: GraphSnapshot | None) -> dict[str, ComponentMetadata]:
    """Every declared component by address (from the sessions' metadata)."""
    found: dict[str, ComponentMetadata] = {}
    for session in snapshot.sessions if snapshot else ():
        for comp in session.metadata.components if session.metadata else ():
            found[comp.address] = comp
    return found


def unit_rows(proc: ProcessInfo, comps: Mapping[str, ComponentMetadata],
              stats: Mapping[str, Any] | None) -> dict[str, Row]:
    """The units of one process: type, streams, messages published (from the stats' topics)."""
    topics = (stats or {}).get("topics") or {}
    rows: dict[str, Row] = {}
    for unit in sorted(proc.units):
        comp = comps.get(unit)
        streams = comp.streams if comp else ()
        ins = [s.name for s in streams if s.direction is StreamDirection.INPUT]
        outs = [s for s in streams if s.direction is StreamDirection.OUTPUT]
        published = sum(int((topics.get(s.topic) or {}).get("messages", 0)) for s in outs)
        kind = (comp.python_type.rsplit(".", 1)[-1] if comp and comp.python_type else "-")
        rows[unit] = (_v(unit, unit), _v(kind, kind), _v(len(ins), ", ".join(ins) or "-"),
                      _v(len(outs), ", ".join(s.name for s in outs) or "-"),
                      _v(published, fmt_count(published) if outs else "-", "" if published else DIM))
    return rows


def _cells(row: Row) -> tuple[Cell, ...]:
    return tuple(Cell(v.raw, v.text) for v in row)


class ProcessesPane(Pane):
    TAB_ID = "processes"
    KINDS = frozenset({"processes", "topology", "clock", "connection", "profiling"})
    TITLE = "Processes"
    HELP = ("Every worker process with its uptime, CPU, memory (RSS) and ping round trip, polled every 2 s; "
            "▲/△ mark high CPU or a slow ping, ✕ a process that failed to answer. The lower table lists the "
            "units of the selected process: enter on a process moves into its units, enter on a unit opens "
            "it in the Settings tab, backspace goes back to the processes.")
    BINDINGS = [Binding("backspace", "back", "Back to processes")]
    DEFAULT_CSS = """
    ProcessesPane { layout: vertical; }
    ProcessesPane > LiveTable#proc-table { height: 1fr; }
    ProcessesPane > LiveTable#proc-units { height: 10; }
    ProcessesPane > #proc-detail { height: auto; max-height: 3; padding: 0 1; }
    """

    def __init__(self, monitor: Any, **kwargs: Any) -> None:
        super().__init__(monitor, **kwargs)
        self._units_of: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="proc-summary", classes="pane-title")
        yield LiveTable(columns(PROCESS_COLUMNS), sort_column=1, id="proc-table")
        yield Static(id="proc-units-title", classes="pane-title")
        yield LiveTable(columns(UNIT_COLUMNS), id="proc-units")
        yield Static(id="proc-detail")

    @property
    def processes(self) -> LiveTable:
        return self.query_one("#proc-table", LiveTable)

    @property
    def units(self) -> LiveTable:
        return self.query_one("#proc-units", LiveTable)


    def refresh_view(self, kinds: set[str]) -> None:
        if not (kinds & self.KINDS):
            return
        st = self.state
        rows = process_rows(st.snapshot, st.process_stats, st.profiling)
        self.processes.set_rows({k: _cells(v) for k, v in rows.items()})
        failing = sum(1 for r in rows.values() if r[-1].text.plain.startswith("✕"))
        summary = Text(f"Processes {len(rows)}", style="bold")
        if failing:
            summary.append(f"   ✕ {failing} failing", style=BAD)
        summary.append("   enter: units · enter on a unit: its settings", style=DIM)
        if st.stale:
            summary.append("   STALE", style="bold black on yellow")
        self.query_one("#proc-summary", Static).update(summary)
        self._draw_units()

    def _process(self, process_id: str | None) -> ProcessInfo | None:
        snap = self.state.snapshot
        for p in snap.processes if snap else ():
            if p.process_id == process_id:
                return p
        return None

    def _draw_units(self) -> None:
        key = self.processes.selected_key
        proc = self._process(key)
        self._units_of = key
        title = Text("Units", style="bold")
        detail = Text()
        if proc is None:
            self.units.set_rows({})
        else:
            stats = self.state.process_stats.get(proc.process_id)
            self.units.set_rows({k: _cells(v) for k, v in
                                 unit_rows(proc, components(self.state.snapshot), stats).items()})
            title.append(f" of {short_id(proc.process_id)}", style="bold")
            title.append(f"  pid {proc.pid} on {proc.host}  id {proc.process_id}", style=DIM)
            if stats and "error" in stats:
                detail.append(f"✕ stats: {stats['error']}", style=BAD)
            prof = self.state.profiling.get(proc.process_id)
            if isinstance(prof, ProfilingError):
                detail.append(f"  ✕ profiling {prof.error_code}: {prof.error}", style=BAD)
        self.query_one("#proc-units-title", Static).update(title)
        self.query_one("#proc-detail", Static).update(detail)

    # -- navigation ------------------------------------------------------------

    @on(LiveTable.Selected)
    def _selected(self, event: LiveTable.Selected) -> None:
        event.stop()
        if event.table is self.processes and event.key != self._units_of:
            self._draw_units()

    @on(LiveTable.Activated)
    def _activated(self, event: LiveTable.Activated) -> None:
        """enter: on a process, into its units; on a unit, to its settings."""
        event.stop()
        if event.table is self.units:
            self.console.show_tab("settings", event.key)
            return
        self._draw_units()
        if self.units.shown_keys:
            self.units.select(self.units.shown_keys[0])
            self.units.table.focus()
        else:
            self.notify("this process runs no units", severity="warning", timeout=3)

    def action_back(self) -> None:
        self.processes.table.focus()

    def show(self, target: str) -> None:
        """Select the process whose id, short id or pid is ``target``, or that runs unit ``target``."""
        self.redraw_all()
        snap = self.state.snapshot
        for p in snap.processes if snap else ():
            if target in (p.process_id, short_id(p.process_id), str(p.pid)) or target in p.units:
                self.processes.select(p.process_id)
                self._draw_units()
                if target in p.units:
                    self.units.select(target)
                    self.units.table.focus()
                else:
                    self.processes.table.focus()
                return
        self.notify(f"no process {target}", severity="warning", timeout=3)

    def focus_default(self) -> None:
        if not self.units.has_focus_within:
            self.processes.table.focus()

    def export_rows(self) -> tuple[str, list[dict[str, Any]]]:
        return self.TAB_ID, self.processes.visible_rows()
