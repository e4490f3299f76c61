"""The console's header line: where, connected or not, what is there, how old, and the badges."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from ..client.monitor import ConnState
from .format import age_since, fmt_age

if TYPE_CHECKING:
    from ..client.monitor import GraphMonitor, MonitorState


def header_text(state: MonitorState, *, embedded: bool | str, paused: bool, read_only: bool,
                profiling_interval: float) -> Text:
    """The header as styled text (pure: tested without Textual). ``embedded``: what this
    console started itself ("embedded demo", "ezmsg demo"), or False."""
    text = Text()
    text.append(" ezmsg-console ", style="bold reverse")
    text.append(f" {state.server_label} @ {state.address}" if state.server_label else f" {state.address}")
    if embedded:
        text.append(f" ({embedded if isinstance(embedded, str) else 'embedded demo'})", style="italic")
    text.append("  ")
    if state.conn_state is ConnState.CONNECTED:
        text.append("● connected", style="bold green")
    elif state.conn_state is ConnState.RECONNECTING:
        text.append(f"◌ reconnecting {fmt_age(state.down_for())}", style="bold yellow")
        if state.last_error:
            text.append(f" ({state.last_error[:40]})", style="yellow")
    else:
        text.append(f"✕ down {fmt_age(state.down_for())}" if state.attempts else "… connecting",
                    style="bold red" if state.attempts else "yellow")
    if state.server_epoch:
        text.append(f"  epoch {state.server_epoch[:8]}", style="dim")
    snap = state.snapshot
    if snap is not None:
        units = sum(len(p.units) for p in snap.processes)
        text.append(f"  procs {len(snap.processes)} · units {units} · topics {len(snap.graph)} · "
                    f"edges {len(snap.edge_owners)}")
    text.append(f"  data {age_since(state.data_time)}", style="dim")
    text.append(f"  prof {profiling_interval:g}s", style="dim")
    if state.stale and state.snapshot is not None:
        text.append("  STALE", style="bold black on yellow")
    if paused:
        text.append("  PAUSED", style="bold black on cyan")
    if read_only:
        text.append("  READ-ONLY", style="bold white on dark_red")
    return text


class ConsoleHeader(Static):
    DEFAULT_CSS = "ConsoleHeader { height: 1; background: $panel; }"

    def __init__(self, monitor: GraphMonitor, *, embedded: bool | str, read_only: bool) -> None:
        super().__init__()
        self.monitor = monitor
        self.embedded = embedded
        self.read_only = read_only
        self.paused = False
        self._shown: Text | None = None

    def on_mount(self) -> None:
        self.refresh_header()

    def refresh_header(self) -> None:
        text = header_text(self.monitor.state, embedded=self.embedded, paused=self.paused,
                           read_only=self.read_only, profiling_interval=self.monitor.profiling_interval)
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)  # one line, always: no layout pass
