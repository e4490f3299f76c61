"""A one-line prompt (used by the command palette's Connect), with an optional check of what is typed."""

from __future__ import annotations

from typing import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 70; height: auto; border: round $accent; background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str, value: str = "", check: Callable[[str], str | None] | None = None) -> None:
        """``check(text)``: why ``text`` cannot be accepted (shown under the field; Enter then does
        nothing), or None if it can."""
        super().__init__()
        self.title_text = title
        self.value = value
        self.check = check
        self.reason: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(value=self.value)
            yield Label("", id="prompt-reason")

    def _why(self, text: str) -> str | None:
        return self.check(text.strip()) if self.check is not None and text.strip() else None

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.reason = self._why(event.value)
        self.query_one("#prompt-reason", Label).update(f"✕ {self.reason}" if self.reason else "")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.reason = self._why(event.value)
        if self.reason is not None:
            self.query_one("#prompt-reason", Label).update(f"✕ {self.reason} (fix it, or Esc)")
            return
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
