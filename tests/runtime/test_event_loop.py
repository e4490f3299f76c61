"""Workers run on asyncio's loop, or on uvloop when EZMSG_CONSOLE_LOOP asks for it (runtime.loop)."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest

from ezmsg_console.protocol.errors import ConfigurationError
from ezmsg_console.runtime import loop as loop_mod
from ezmsg_console.runtime import run_async
from ezmsg_console.runtime.loop import LOOP_ENV, loop_choice, loop_name, new_event_loop, run_loop

from ..conftest import free_address
from .units import CollectSettings, CountSettings, Pipeline

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
needs_uvloop = pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")


def test_the_choice_is_read_from_the_environment() -> None:
    assert loop_choice({}) == "asyncio"
    assert loop_choice({LOOP_ENV: ""}) == "asyncio"
    assert loop_choice({LOOP_ENV: "auto"}) == "auto"
    assert loop_choice({LOOP_ENV: " AsyncIO "}) == "asyncio"
    assert loop_choice({LOOP_ENV: "uvloop"}) == "uvloop"
    with pytest.raises(ConfigurationError, match=LOOP_ENV):
        loop_choice({LOOP_ENV: "trio"})


def _made(environ: dict[str, str]) -> str:
    loop = new_event_loop(environ)
    try:
        return loop_name(loop)
    finally:
        loop.close()


def test_asyncio_is_used_when_asked_or_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _made({LOOP_ENV: "asyncio"}) == "asyncio"
    assert _made({}) == "asyncio"
    monkeypatch.setattr(loop_mod, "_uvloop", lambda: None)
    assert _made({LOOP_ENV: "auto"}) == "asyncio"
    with pytest.raises(ConfigurationError, match="uvloop is not installed"):
        new_event_loop({LOOP_ENV: "uvloop"})


@needs_uvloop
def test_uvloop_when_asked_for_and_installed() -> None:
    assert _made({LOOP_ENV: "auto"}) == "uvloop"
    assert _made({LOOP_ENV: "uvloop"}) == "uvloop"
    assert _made({}) == "asyncio"


def test_run_loop_runs_the_coroutine_and_closes_it_on_a_bad_choice() -> None:
    async def which() -> str:
        await asyncio.sleep(0)
        return loop_name()

    assert run_loop(which(), {LOOP_ENV: "asyncio"}) == "asyncio"
    if HAVE_UVLOOP:
        assert run_loop(which(), {LOOP_ENV: "auto"}) == "uvloop"
    coro = which()
    with pytest.raises(ConfigurationError):
        run_loop(coro, {LOOP_ENV: "nope"})
    assert coro.cr_frame is None  # closed, not left un-awaited


@pytest.mark.parametrize("setting, expected", [
    pytest.param(None, "asyncio", id="default-asyncio"),
    pytest.param("uvloop", "uvloop", marks=needs_uvloop, id="uvloop"),
])
async def test_workers_run_on_the_chosen_loop(tmp_path, no_leaks, monkeypatch, setting, expected):
    """Three workers linked by shared memory, on the loop EZMSG_CONSOLE_LOOP chooses."""
    if setting is None:
        monkeypatch.delenv(LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(LOOP_ENV, setting)
    out = tmp_path / "sink.json"
    system = Pipeline()
    system.SOURCE.apply_settings(CountSettings(count=200, width=16))
    system.SINK.apply_settings(CollectSettings(out=str(out), expect=200, finish="terminate"))
    result = await run_async(SYS=system, address=free_address(), duration=60)
    assert result.ok, result.reason
    data = json.loads(out.read_text())
    assert data["seen"] == list(range(200))
    assert data["loop"] == expected


async def test_a_bad_choice_fails_the_run_with_a_clear_error(no_leaks, monkeypatch):
    from ezmsg_console.protocol.errors import RunError

    monkeypatch.setenv(LOOP_ENV, "fastest")
    system = Pipeline()
    system.SINK.apply_settings(CollectSettings(expect=1))
    with pytest.raises(RunError) as info:
        await run_async(SYS=system, address=free_address(), duration=60)
    assert f"{LOOP_ENV}='fastest'" in str(info.value.details)
