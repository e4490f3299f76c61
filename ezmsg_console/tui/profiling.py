"""The Profiling tab: every publisher and subscriber, live, with a detail panel and tracing.

Two :class:`LiveTable` s (publishers above, subscribers below) are updated in
place from ``monitor.state.profiling`` on every poll. The detail panel follows
the selected row of whichever table was used last: rate (and, for subscribers,
latency) sparklines from the monitor's history, totals, and while the endpoint
is traced the TTL counting down and the newest streamed samples. The rules for
cells and thresholds live in :mod:`.profiling_rows` (pure).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from ..protocol.errors import ConsoleError
from ..protocol.profiling import ProcessProfilingSnapshot, ProfilingError
from . import profiling_rows as pr
from .format import age_since
from .pane import Pane, set_static
from .table import Cell, LiveTable, columns

TRACE_TTL_S = 60.0


def _cells(row: pr.Row) -> tuple[Cell, ...]:
    return tuple(Cell(v.raw, v.text) for v in row)


class _Lines(Group):
    """The detail panel's lines, comparable so an unchanged panel is not redrawn."""

    def __init__(self, lines: list[Text]) -> None:
        super().__init__(*lines)
        self.lines = lines

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Lines) and other.lines == self.lines

    __hash__ = None  # type: ignore[assignment]


def _build(_key: str, record: pr.Record) -> tuple[Cell, ...]:
    return _cells(pr.record_cells(record))


DETAIL_MAX, DETAIL_MIN = 13, 4
TABLE_MIN = 6
"""Lines each table keeps before the detail panel shrinks (a header, a few rows, the filter line)."""


class ProfilingPane(Pane):
    TAB_ID = "profiling"
    KINDS = frozenset({"profiling", "trace", "clock", "connection"})
    TITLE = "Profiling"
    HELP = ("Publishers (top) and subscribers (bottom) of every process, refreshed every poll. Rates and "
            "percentiles cover the last poll window; dimmed values are totals. ▲ buffers near full or "
            "backpressure waits, ✕ drops or a process that did not answer, ▼ rate fell below half its recent "
            "median. tab switches table; the panel below follows the selected row; t traces it for 60 s.")
    BINDINGS = [
        Binding("t", "toggle_trace", "Trace on/off"),
        Binding("t", "read_only_trace", "Trace on/off", show=False),  # read-only: not in the footer, says why
        Binding("tab", "other_table", "Other table", show=False),
    ]
    DEFAULT_CSS = """
    ProfilingPane { layout: vertical; }
    ProfilingPane > .pane-title { height: 1; }
    ProfilingPane > LiveTable { height: 1fr; }
    ProfilingPane > #prof-detail { height: 13; border-top: solid $panel; padding: 0 1; }
    """

    def __init__(self, monitor: Any, **kwargs: Any) -> None:
        super().__init__(monitor, **kwargs)
        self._current: str | None = None  # the row key the detail panel shows
        self.detail_plain = ""

    def compose(self) -> ComposeResult:
        yield Static(id="prof-summary", classes="pane-title")
        yield LiveTable(columns(pr.PUB_COLUMNS), sort_column=1, id="prof-pubs")
        yield Static(Text("Subscribers", style="bold"), id="prof-subs-title", classes="pane-title")
        yield LiveTable(columns(pr.SUB_COLUMNS), sort_column=1, id="prof-subs")
        yield Static(id="prof-detail")

    def on_resize(self) -> None:
        """On a short terminal the detail panel gives way, so both tables keep a few rows each
        (13 lines when there is room; at 80x24 about 6)."""
        detail = self.query_one("#prof-detail", Static)
        height = max(DETAIL_MIN, min(DETAIL_MAX, self.size.height - 2 - 2 * TABLE_MIN))
        if detail.styles.height is None or detail.styles.height.value != height:
            detail.styles.height = height

    @property
    def publishers(self) -> LiveTable:
        return self.query_one("#prof-pubs", LiveTable)

    @property
    def subscribers(self) -> LiveTable:
        return self.query_one("#prof-subs", LiveTable)


    # -- drawing -----------------------------------------------------------

    def refresh_view(self, kinds: set[str]) -> None:
        if not (kinds & self.KINDS):
            return
        st = self.state
        snap = st.snapshot
        pids = {p.process_id: p.pid for p in snap.processes} if snap else {}
        pubs, subs = pr.profiling_records(st.profiling, st.rate_history, st.traced, pids)
        # Thousands of endpoints: only the rows on screen are formatted.
        self.publishers.set_rows(pubs, _build, pr.record_sort_value)
        self.subscribers.set_rows(subs, _build, pr.record_sort_value)
        self._draw_summary(sum(not k.startswith("!") for k in pubs), sum(not k.startswith("!") for k in subs))
        self._draw_detail()

    def _draw_summary(self, npubs: int, nsubs: int) -> None:
        st = self.state
        failed = sum(isinstance(v, ProfilingError) for v in st.profiling.values())
        windows = [v.window_seconds for v in st.profiling.values() if isinstance(v, ProcessProfilingSnapshot)]
        text = Text()
        text.append(f"Publishers {npubs}", style="bold")
        text.append(f"   {len(st.profiling)} processes", style="dim")
        if failed:
            text.append(f"  ✕ {failed} not answering", style=pr.BAD)
        if windows:
            text.append(f"   window {max(windows):.1f} s", style="dim")
        text.append(f"   polled {age_since(st.profiling_time)} ago", style="dim")
        if st.traced:
            text.append(f"   ◉ {len(st.traced)} traced", style="bold magenta")
        if st.stale:
            text.append("   STALE", style="bold black on yellow")
        set_static(self.query_one("#prof-summary", Static), text)
        set_static(self.query_one("#prof-subs-title", Static), Text(f"Subscribers {nsubs}", style="bold"))

    def _draw_detail(self) -> None:
        st = self.state
        key = self._current
        found = pr.find_endpoint(st.profiling, key) if key else None
        if found is None:
            lines = [Text("Select a row to see its rate and latency history; t traces it.", style="dim")]
        elif isinstance(found[0], ProfilingError):
            lines = pr.error_detail(found[0])
        else:
            snap, ep = found
            assert isinstance(snap, ProcessProfilingSnapshot) and ep is not None
            lines = pr.endpoint_detail(snap, ep, list(st.rate_history.get(ep.endpoint_id, ())),
                                       list(st.latency_history.get(ep.endpoint_id, ())))
            traced = st.traced.get(ep.endpoint_id)
            held, samples = pr.trace_lines(st.trace_samples, ep.endpoint_id, time.monotonic_ns())
            ttl = traced.expires_mono - time.monotonic() if traced else 0.0
            lines.append(pr.trace_status(traced is not None, ttl, held, self.console.read_only))
            if traced is not None or held:
                lines.extend(samples)
        self.detail_plain = "\n".join(line.plain for line in lines)
        set_static(self.query_one("#prof-detail", Static), _Lines(lines))

    # -- selection -----------------------------------------------------------

    @on(LiveTable.Selected)
    def _selected(self, event: LiveTable.Selected) -> None:
        if event.key is not None and (event.table.has_focus_within or self._current is None):
            self._current = event.key
            self._draw_detail()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Focusing a table makes its selected row the detail panel's."""
        for table in (self.publishers, self.subscribers):
            if event.widget is table.table and table.selected_key is not None:
                self._current = table.selected_key
                self._draw_detail()

    def action_other_table(self) -> None:
        target = self.subscribers if self.publishers.has_focus_within else self.publishers
        target.table.focus()

    @property
    def selected_key(self) -> str | None:
        """The row the detail panel shows (an endpoint id, or ``!<process id>`` for an error row)."""
        return self._current

    def show(self, target: str) -> None:
        """Select the row whose topic or endpoint id is ``target`` (else the first row of a unit)."""
        self.redraw_all()
        for exact in (True, False):
            for table in (self.publishers, self.subscribers):
                for key in table.shown_keys:
                    cells = table.row(key)
                    topic = str(cells[1].raw) if cells else ""
                    hit = target in (key, topic) if exact else topic.startswith(target.rstrip("/") + "/")
                    if hit:
                        table.select(key)
                        table.table.focus()
                        self._current = key
                        self._draw_detail()
                        return
        self.notify(f"no profiled endpoint {target}", severity="warning", timeout=3)

    def focus_default(self) -> None:
        if not (self.publishers.has_focus_within or self.subscribers.has_focus_within):
            self.publishers.table.focus()

    # -- tracing ---------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Read-only: tracing leaves the footer (its key then only says why not)."""
        if action == "toggle_trace":
            return not self.console.read_only
        if action == "read_only_trace":
            return self.console.read_only
        return True

    def action_read_only_trace(self) -> None:
        self.action_toggle_trace()

    def action_toggle_trace(self) -> None:
        """Toggle tracing of the selected row (60 s TTL); refused in read-only mode."""
        key = self._current
        if self.console.read_only:
            self.notify("read-only: tracing is refused", severity="warning", timeout=3)
            return
        found = pr.find_endpoint(self.state.profiling, key) if key else None
        if found is None or found[1] is None:
            self.notify("select a publisher or subscriber row to trace", severity="warning", timeout=3)
            return
        endpoint_id = found[1].endpoint_id
        self.run_worker(self._set_trace(endpoint_id, endpoint_id not in self.state.traced), group="trace")

    async def _set_trace(self, endpoint_id: str, on: bool) -> None:
        topic = endpoint_id.rsplit(":", 1)[0]
        try:
            await self.monitor.set_trace(endpoint_id, on, ttl_seconds=TRACE_TTL_S)
        except ConsoleError as exc:
            self.notify(f"trace {topic}: {exc}", severity="error", timeout=5)
            return
        except Exception as exc:  # noqa: BLE001 - a failed request must not take the console down
            self.notify(f"trace {topic}: unexpected {type(exc).__name__}: {exc}", severity="error", timeout=5)
            return
        self.notify(f"tracing {topic} for {TRACE_TTL_S:.0f} s" if on else f"stopped tracing {topic}", timeout=3)
        self._draw_detail()

    # -- export ------------------------------------------------------------------

    def export_rows(self) -> tuple[str, list[dict[str, Any]]]:
        rows = [{"kind": "publisher", **r} for r in self.publishers.visible_rows()]
        rows += [{"kind": "subscriber", **r} for r in self.subscribers.visible_rows()]
        return self.TAB_ID, rows

