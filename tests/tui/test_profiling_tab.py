"""The Profiling tab on the live demo: rows, sparklines, tracing, read-only, sort/filter keep the row."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from ezmsg_console.client.context import GraphContext
from ezmsg_console.protocol.profiling import ProfilingError
from ezmsg_console.tui.format import SPARK
from ezmsg_console.tui.profiling import ProfilingPane
from ezmsg_console.tui.table import LiveTable

from ..conftest import TIMEOUT
from .conftest import wait_until

PUB_TOPICS = {"DEMO/SOURCE/OUTPUT", "DEMO/FILTER/OUTPUT", "DEMO/FEATURES/OUTPUT"}
SUB_TOPICS = {"DEMO/FILTER/INPUT", "DEMO/FEATURES/INPUT", "DEMO/SINK/INPUT"}


@contextlib.asynccontextmanager
async def opened(console: Any, **kwargs: Any) -> AsyncIterator[tuple[Any, Any]]:
    """``console(...)``."""
    async with console(**kwargs) as (app, pilot):
        yield app, pilot


def _rates(table: LiveTable) -> dict[str, Any]:
    """topic -> msgs/s (raw) of the displayed rows."""
    return {r["topic"]: r["rate"] for r in table.visible_rows()}


def _live(table: LiveTable, topics: set[str]) -> bool:
    rates = _rates(table)
    return all((rates.get(t) or 0) > 0 for t in topics)


async def _open(app: Any, pilot: Any) -> ProfilingPane:
    await pilot.press("3")
    pane = app.query_one(ProfilingPane)
    await wait_until(pilot, lambda: _live(pane.publishers, PUB_TOPICS) and _live(pane.subscribers, SUB_TOPICS),
                     "every demo endpoint with a non-zero rate")
    return pane


def _key(table: LiveTable, topic: str) -> str:
    return next(k for k in table.shown_keys if table.row(k)[1].raw == topic)  # type: ignore[index]


async def test_both_tables_list_every_endpoint_live_and_the_detail_has_sparklines(console: Any) -> None:
    async with opened(console) as (app, pilot):
        pane = await _open(app, pilot)
        assert {r["topic"] for r in pane.publishers.visible_rows()} >= PUB_TOPICS | {"DEMO/FILTER/INPUT_SETTINGS"}
        assert {r["topic"] for r in pane.subscribers.visible_rows()} >= SUB_TOPICS
        # the keyboard: down in the subscribers table selects the next row and the panel follows
        pane.subscribers.table.focus()
        await pilot.press("g", "j")
        await wait_until(pilot, lambda: pane.selected_key == pane.subscribers.shown_keys[1], "the panel following")
        pane.show("DEMO/SINK/INPUT")
        sink = _key(pane.subscribers, "DEMO/SINK/INPUT")
        assert pane.selected_key == sink == pane.subscribers.selected_key
        assert pane.detail_plain.startswith("DEMO/SINK/INPUT  subscriber")

        def sparks() -> bool:
            lines = {line.split()[0]: line for line in pane.detail_plain.splitlines() if line.strip()}
            return all(sum(ch in SPARK for ch in lines.get(k, "")) >= 2 for k in ("rate", "lat"))
        await wait_until(pilot, sparks, "rate and latency sparklines of the selected row")
        name, rows = pane.export_rows()
        assert name == "profiling" and {r["kind"] for r in rows} == {"publisher", "subscriber"}
        assert len(rows) == len(pane.publishers.shown_keys) + len(pane.subscribers.shown_keys)
        # a process that did not answer is a row with its error code (drawn before the next poll replaces it)
        app.monitor.state.profiling["feedface0000"] = ProfilingError("feedface0000", "TIMEOUT", "no answer in 1 s")
        pane.refresh_view({"profiling"})
        assert pane.subscribers.row("!feedface0000")[1].plain() == "✕ TIMEOUT"  # type: ignore[index]
        assert pane.publishers.row("!feedface0000") is not None


async def test_t_traces_the_selected_subscriber_then_stops(console: Any, demo: Any) -> None:
    async with opened(console) as (app, pilot):
        pane = await _open(app, pilot)
        pane.show("DEMO/FILTER/INPUT")
        endpoint = _key(pane.subscribers, "DEMO/FILTER/INPUT")
        assert pane.selected_key == endpoint
        await pilot.press("t")
        traced = app.monitor.state.traced
        await wait_until(pilot, lambda: endpoint in traced and not [
            w for w in app.workers if w.group == "trace" and w.is_running], "tracing on, request answered")
        await wait_until(pilot, lambda: "handler_ns" in pane.detail_plain and " seq " in pane.detail_plain,
                         "trace samples in the panel")
        # The filter's profile_span("iir"): a histogram line, and trace samples named by the label.
        await wait_until(pilot, lambda: "span iir" in pane.detail_plain, "the span's trace samples in the panel")
        assert any(line.startswith("span    iir") and " p99 " in line and " runs " in line
                   for line in pane.detail_plain.splitlines()), pane.detail_plain
        assert "◉ on," in pane.detail_plain and "s left" in pane.detail_plain
        await wait_until(pilot, lambda: pane.subscribers.row(endpoint)[0].plain() == "◉",  # type: ignore[index]
                         "the traced mark in the table")
        await pilot.press("t")
        await wait_until(pilot, lambda: endpoint not in traced and not [
            w for w in app.workers if w.group == "trace" and w.is_running], "tracing off, request answered")
        async with GraphContext(demo.address, timeout=TIMEOUT, name="tui-tests") as ctx:
            assert (await ctx.process_profiling_snapshot("DEMO/FILTER")).trace is None
        await wait_until(pilot, lambda: "trace   off" in pane.detail_plain, "the panel showing tracing off")


async def test_read_only_refuses_tracing(console: Any) -> None:
    async with opened(console, read_only=True) as (app, pilot):
        pane = await _open(app, pilot)
        pane.show("DEMO/FILTER/INPUT")
        await pilot.press("t")
        await pilot.pause()
        assert not app.monitor.state.traced
        assert any("read-only" in n.message for n in app._notifications)
        assert "read-only" in pane.detail_plain


async def test_sort_and_filter_keep_the_selected_row(console: Any) -> None:
    async with opened(console) as (app, pilot):
        pane = await _open(app, pilot)
        subs = pane.subscribers
        pane.show("DEMO/FILTER/INPUT")
        key = subs.selected_key
        assert key == _key(subs, "DEMO/FILTER/INPUT")
        for _ in range(3):
            await pilot.press("greater_than_sign")
            assert subs.selected_key == key
        await pilot.press("I")
        assert subs.sort_index == 4 and subs.reverse and subs.selected_key == key
        drawn = app.redraws
        await wait_until(pilot, lambda: app.redraws > drawn + 1, "live updates after sorting")
        assert subs.selected_key == key
        await pilot.press("slash", *"filter/in")
        assert subs.filter_text == "filter/in"
        assert subs.selected_key == key and all("DEMO/FILTER/IN" in subs.row(k)[1].raw for k in subs.shown_keys)
        assert pane.selected_key == key
        await pilot.press("escape")
        assert subs.filter_text == "" and subs.selected_key == key


async def test_at_80x24_both_tables_keep_rows_and_the_detail_panel_shrinks(console: Any) -> None:
    async with opened(console) as (app, pilot):
        pane = await _open(app, pilot)
        detail = pane.query_one("#prof-detail")
        assert detail.outer_size.height == 13  # 120x40: room for the whole panel
        await pilot.resize_terminal(80, 24)
        await wait_until(pilot, lambda: detail.outer_size.height < 13, "the detail panel giving way")
        for table in (pane.publishers, pane.subscribers):
            assert table.outer_size.height >= 4, (table.id, table.outer_size)  # a header and a few rows each
        assert detail.outer_size.height >= 4
