"""The base of the console's tabs: a widget that redraws itself from the monitor's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widget import Widget
from textual.widgets import Static

if TYPE_CHECKING:
    from ..client.monitor import GraphMonitor, MonitorState
    from .app import ConsoleApp


def set_static(static: Static, content: Any, *, layout: bool = False) -> None:
    """Update ``static`` only if ``content`` differs from what it shows. Without ``layout``
    the screen is not laid out again: use it for widgets of fixed height, which redraw
    many times a second."""
    if getattr(static, "_ezc_content", None) == content:
        return
    static._ezc_content = content  # type: ignore[attr-defined]
    static.update(content, layout=layout)


class Pane(Widget):
    """One tab. Subclasses set ``TAB_ID``/``TITLE``, their own ``BINDINGS``, and implement
    :meth:`refresh_view` (called with the kinds of data that changed, never while paused)."""

    TAB_ID = ""
    TITLE = ""
    HELP = ""
    """A sentence or two for the help screen, above the list of keys."""
    KINDS: frozenset[str] = frozenset()
    """The kinds of data this tab draws (its ``refresh_view`` ignores the others)."""

    DEFAULT_CSS = "Pane { height: 1fr; }"

    def __init__(self, monitor: GraphMonitor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.monitor = monitor

    @property
    def state(self) -> MonitorState:
        return self.monitor.state

    @property
    def console(self) -> ConsoleApp:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.redraw_all()

    def redraw_all(self) -> None:
        """Redraw everything this tab shows."""
        self.refresh_view(set(self.KINDS))

    def refresh_view(self, kinds: set[str]) -> None:
        """Redraw from ``self.state``; ``kinds`` says what changed (all kinds after a resume)."""

    def export_rows(self) -> tuple[str, list[dict[str, Any]]]:
        """(name, rows) of what this tab shows, for export (``e``)."""
        return self.TAB_ID, []

    def show(self, target: str) -> None:
        """Select ``target`` (a component address, topic or endpoint id) if this tab has it."""

    def focus_default(self) -> None:
        """Focus this tab's main table (its first LiveTable's grid)."""
        from .grid import RowGrid

        tables = self.query(RowGrid)
        if tables:
            tables.first().focus()
