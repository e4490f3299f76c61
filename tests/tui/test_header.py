"""The header at 80 and 120 columns: badges, connection state and data age always show."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ezmsg_console.client.monitor import ConnState, MonitorState
from ezmsg_console.protocol.graph import GraphSnapshot, ProcessInfo
from ezmsg_console.tui.header import ConsoleHeader, header_text

from .conftest import wait_until

ALWAYS = ("STALE", "PAUSED", "READ-ONLY", "reconnecting", "data ")


def _state() -> MonitorState:
    """Everything at once: a long address, a server label, a reconnect with an error, stale data."""
    processes = tuple(ProcessInfo(f"p{i:02d}" * 8, 1000 + i, "lab-host-with-a-long-name",
                                  tuple(f"LAB/RIG/UNIT{i}_{j}" for j in range(3)), 0.0) for i in range(12))
    state = MonitorState(address="acquisition-server.lab.example.org:25970",
                         conn_state=ConnState.RECONNECTING, down_since=time.monotonic() - 12, attempts=3,
                         last_error="connection refused by acquisition-server.lab.example.org",
                         server_epoch="0123456789abcdef", server_label="native p2",
                         snapshot=GraphSnapshot("srv", "0123456789abcdef", 1, 0.0,
                                                {f"T{i}": () for i in range(30)}, (), (), processes),
                         data_time=time.time() - 3)
    return state


@pytest.mark.parametrize("width", [80, 100, 120])
def test_every_badge_and_the_data_age_fit_in_the_width(width: int) -> None:
    text = header_text(_state(), embedded="embedded demo", paused=True, read_only=True, profiling_interval=0.5,
                       width=width)
    plain = text.plain
    assert text.cell_len <= width, (width, plain)
    for needed in ALWAYS:
        assert needed in plain, (width, plain)
    assert ":25970" in plain and "acquisit" in plain  # what is watched: the address, shortened if need be


def test_a_wide_header_keeps_everything_and_a_narrow_one_drops_the_least_useful_first() -> None:
    state = _state()
    wide = header_text(state, embedded=False, paused=False, read_only=False, profiling_interval=0.5, width=400).plain
    assert "ezmsg-console" in wide and "native p2 @ acquisition-server" in wide and "procs 12 · units 36" in wide
    assert "epoch 01234567" in wide and "prof 0.5s" in wide and "connection refused" in wide
    narrow = header_text(state, embedded=False, paused=True, read_only=True, profiling_interval=0.5, width=80).plain
    assert "epoch" not in narrow and "prof 0.5s" not in narrow  # the extras go first
    assert header_text(state, embedded=False, paused=False, read_only=False,
                       profiling_interval=0.5).plain == wide  # no width: everything


async def test_the_live_header_at_80_columns_shows_paused_and_read_only(console: Any) -> None:
    async with console(read_only=True) as (app, pilot):
        await pilot.resize_terminal(80, 24)
        await pilot.press("p")
        header = app.query_one(ConsoleHeader)
        await wait_until(pilot, lambda: "PAUSED" in str(header.render()), "PAUSED in the header")
        plain = str(header.render())
        assert "READ-ONLY" in plain and "connected" in plain and "data " in plain
        assert len(plain) <= 80, plain
        await pilot.press("p")
