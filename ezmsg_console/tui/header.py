"""The console's header line: where, connected or not, what is there, how old, and the badges."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from ..client.monitor import ConnState
from .format import age_since, fmt_age

if TYPE_CHECKING:
    from ..client.monitor import GraphMonitor, MonitorState


Part = tuple[str, str]  # (text, style)


def _connection(state: MonitorState, detail: bool) -> Part:
    if state.conn_state is ConnState.CONNECTED:
        return "● connected", "bold green"
    if state.conn_state is ConnState.RECONNECTING:
        why = f" ({state.last_error[:40]})" if detail and state.last_error else ""
        return f"◌ reconnecting {fmt_age(state.down_for())}{why}", "bold yellow"
    if state.attempts:
        why = f" ({state.last_error[:48]})" if detail and state.last_error else ""
        return f"✕ down {fmt_age(state.down_for())}{why}", "bold red"
    return "… connecting", "yellow"


def _badges(state: MonitorState, paused: bool, read_only: bool, alert: str) -> list[Part]:
    badges = [(alert, "bold white on red")] if alert else []
    if state.stale and state.snapshot is not None:
        badges.append(("STALE", "bold black on yellow"))
    if paused:
        badges.append(("PAUSED", "bold black on cyan"))
    if read_only:
        badges.append(("READ-ONLY", "bold white on dark_red"))
    return badges


def header_text(state: MonitorState, *, embedded: bool | str, paused: bool, read_only: bool,
                profiling_interval: float, width: int | None = None, alert: str = "") -> Text:
    """The header as styled text (pure: tested without Textual). ``embedded``: what this
    console started itself ("embedded demo", "ezmsg demo"), or False; ``alert``: a badge for
    something the operator must see (the demo this console started is not running).

    It fits ``width`` cells (None: no limit) by priority: the connection state, the badges
    (STALE, PAUSED, READ-ONLY) and the data age always show; the address is shortened, and the
    counts, epoch, refresh interval and "embedded" note are abbreviated or left out first."""
    snap = state.snapshot
    data = f"data {age_since(state.data_time)}"
    where_full = f"{state.server_label} @ {state.address}" if state.server_label else state.address
    counts_full = counts_short = ""
    if snap is not None:
        units = sum(len(p.units) for p in snap.processes)
        counts_full = (f"procs {len(snap.processes)} · units {units} · topics {len(snap.graph)} · "
                       f"edges {len(snap.edge_owners)}")
        counts_short = f"p{len(snap.processes)} u{units} t{len(snap.graph)} e{len(snap.edge_owners)}"
    note = f"({embedded if isinstance(embedded, str) else 'embedded demo'})" if embedded else ""
    epoch = f"epoch {state.server_epoch[:8]}" if state.server_epoch else ""
    badges = _badges(state, paused, read_only, alert)

    def variant(title: str, where: str, detail: bool, counts: str, extras: bool) -> list[Part]:
        parts: list[Part] = [(title, "bold reverse"), (where, "")]
        if extras and note:
            parts.append((note, "italic"))
        parts.append(_connection(state, detail))
        parts.extend(badges)  # before anything that may be left out
        parts.append((data, "dim"))
        if counts:
            parts.append((counts, ""))
        if extras:
            if epoch:
                parts.append((epoch, "dim"))
            parts.append((f"prof {profiling_interval:g}s", "dim"))
        return [p for p in parts if p[0]]

    short_where = state.address
    variants = [
        variant(" ezmsg-console ", where_full, True, counts_full, True),
        variant(" ezmsg-console ", where_full, True, counts_full, False),
        variant(" ezmsg-console ", short_where, False, counts_short, False),
        variant(" ezc ", short_where, False, counts_short, False),
        variant(" ezc ", short_where, False, "", False),
        variant(" ezc ", "", False, "", False),
    ]
    chosen = variants[0]
    if width is not None:
        chosen = next((v for v in variants if _width(v) <= width), variants[-1])
        if not any(part in (state.address, where_full) for part, _style in chosen):  # as much of it as fits
            room = width - _width(chosen) - 2
            if room >= 12:
                chosen = [chosen[0], (_elide(state.address, room), ""), *chosen[1:]]
    text = Text()
    for i, (part, style) in enumerate(chosen):
        if i > 1 or (i == 1 and part):
            text.append(" " if i == 1 else "  ")
        text.append(part, style=style)
    return text


def _elide(address: str, room: int) -> str:
    """``address`` in ``room`` cells, keeping its start and its port: ``acquisiti…org:25970``."""
    if len(address) <= room:
        return address
    keep_end = min(len(address) - address.rfind(":") + 4, room // 2) if ":" in address else room // 3
    return address[:room - keep_end - 1] + "…" + address[-keep_end:]


def _width(parts: list[Part]) -> int:
    return Text("  ".join(p for p, _s in parts)).cell_len


class ConsoleHeader(Static):
    DEFAULT_CSS = "ConsoleHeader { height: 1; background: $panel; }"

    def __init__(self, monitor: GraphMonitor, *, embedded: bool | str, read_only: bool) -> None:
        super().__init__()
        self.monitor = monitor
        self.embedded = embedded
        self.read_only = read_only
        self.paused = False
        self.alert = ""
        self._shown: Text | None = None

    def on_mount(self) -> None:
        self.refresh_header()

    def on_resize(self) -> None:
        self.refresh_header()

    def refresh_header(self) -> None:
        width = self.size.width or None  # 0 before the first layout: no limit yet
        text = header_text(self.monitor.state, embedded=self.embedded, paused=self.paused,
                           read_only=self.read_only, profiling_interval=self.monitor.profiling_interval,
                           width=width, alert=self.alert)
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)  # one line, always: no layout pass
