"""An ezmsg-style pipeline (tests/runtime/ezmsg_style.py) on our runtime through ``ezmsg_console.ez``,
in both of ezmsg's ``run`` forms, and the unit API's pieces one by one (issue 12)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

import ezmsg_console.ez as ez
from ezmsg_console.protocol.errors import ConfigurationError, RunError

from ..conftest import free_address
from . import ezmsg_style
from .ezmsg_style import System, SystemSettings


def check(out: str) -> dict:
    data = json.loads(Path(out).read_text())
    texts = [g["text"] for g in data["got"]]
    assert texts == [f"hi-{i}@{i + 1}/1" for i in range(6)]  # every word, in order, the heartbeat task ran
    levels = [g["level"] for g in data["got"]]
    assert levels == sorted(levels) and levels[-1] > 0 and all(v == -1.0 or v % 0.5 == 0 for v in levels)
    assert data["main"] == "main-ran"
    return data


async def test_the_pipeline_runs_with_components_and_connections(tmp_path, no_leaks):
    out = str(tmp_path / "rec.json")
    result = await ez.run_async(components={"SYSTEM": System(SystemSettings(word="hi", out=out))},
                                graph_address=free_address(), duration=60)
    assert result.ok and "SYSTEM/RECORDER requested termination" in result.reason
    data = check(out)
    pids = {g["tagger_pid"] for g in data["got"]}
    assert len(pids) == 1 and data["recorder_pid"] not in pids  # TAGGING and RECORDER: processes of their own
    assert sorted(result.exit_codes) == ["SYSTEM", "SYSTEM/RECORDER", "SYSTEM/TAGGING"]


async def test_the_pipeline_runs_in_one_process_with_keyword_roots(tmp_path, no_leaks):
    out = str(tmp_path / "rec.json")
    result = await ez.run_async(SYSTEM=System(SystemSettings(word="hi", out=out)), address=free_address(),
                                force_single_process=True, duration=60)
    assert result.ok and sorted(result.exit_codes) == ["SYSTEM"]
    data = check(out)
    assert {g["tagger_pid"] for g in data["got"]} == {data["recorder_pid"]}


def test_state_is_per_instance_with_defaults_and_unset_fields() -> None:
    a, b = ezmsg_style.Tagger(), ezmsg_style.Tagger()
    assert a.STATE is not b.STATE and a.STATE.words == 0 and not hasattr(a.STATE, "level")
    a.STATE.words = 3
    assert b.STATE.words == 0


def test_decorators_refuse_the_wrong_kind_of_function() -> None:
    with pytest.raises(ConfigurationError, match="@task blocking must be an async function"):
        @ez.task
        def blocking(self): ...
    with pytest.raises(ConfigurationError, match="@main spin must be a plain"):
        @ez.main
        async def spin(self): ...


class Failing(ez.Unit):
    @ez.main
    def crash(self) -> None:
        raise ValueError("main went wrong")


async def test_an_error_in_main_is_the_units_error(no_leaks):
    with pytest.raises(RunError, match="ValueError: main went wrong"):
        await ez.run_async(BAD=Failing(), address=free_address(), duration=60)


async def test_timeit_logs_each_call(caplog):
    class Timed:
        address = "SYS/T"

        @ez.timeit
        async def handle(self, x):
            return x * 2

    with caplog.at_level(logging.INFO, logger="ezmsg_console.timeit"):
        assert await Timed().handle(21) == 42
    assert any(r.getMessage().startswith("SYS/T.handle: ") and r.getMessage().endswith(" ms")
               for r in caplog.records)


def test_the_facade_has_what_ezmsg_users_import() -> None:
    import ezmsg_console.runtime as runtime

    for name in ("Unit", "Collection", "Settings", "State", "InputStream", "OutputStream", "subscriber",
                 "publisher", "task", "main", "thread", "timeit", "Complete", "NormalTermination", "run",
                 "NetworkDefinition", "logger"):
        assert hasattr(ez, name), name
    assert ez.Unit is runtime.Unit and os.path.basename(ez.__file__) == "ez.py"
