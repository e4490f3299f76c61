"""Units written the way ezmsg users write them: a handler named like the settings hook, and
dynamic settings typed only by their INPUT_SETTINGS stream (issue 12, bugs 2 and 3)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ezmsg_console.client import GraphContext
from ezmsg_console.runtime.runner import Runner

from ..conftest import TIMEOUT, eventually, snapshot_when
from .units import NoteSettings, SettingsTraps


def notes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_settings_handlers_named_on_settings_and_typed_by_their_stream(tmp_path, no_leaks, server):
    named_out, typed_out = tmp_path / "named.jsonl", tmp_path / "typed.jsonl"
    system = SettingsTraps()
    system.NAMED.apply_settings(NoteSettings(out=str(named_out)))
    system.TYPED.apply_settings(NoteSettings(out=str(typed_out)))
    address = str(server.address)
    runner = Runner({"SYS": system}, address=address, duration=TIMEOUT * 6)
    run = asyncio.ensure_future(runner.run())
    try:
        async with GraphContext(address, timeout=TIMEOUT) as ctx:
            await snapshot_when(ctx, lambda s: sum(len(p.units) for p in s.processes) == 2, "both units owned",
                                run=run)
            # 2: the handler called on_settings gets each message once, as a handler, and no crash
            await ctx.update_setting("SYS/NAMED", "gain", 2.5, timeout=TIMEOUT)
            await eventually(lambda: bool(notes(named_out)), what="the NAMED handler ran")
            assert notes(named_out) == [{"msg": 2.5, "type": "NoteSettings", "settings": 2.5}]
            # 3: no SETTINGS class: the schema comes from the stream's dataclass; both edits apply
            states = {s.component_address: s for s in await ctx.settings_snapshot()}
            typed = states["SYS/TYPED"].value
            assert typed.structured_value == {"out": str(typed_out), "gain": 1.0}
            schema = typed.settings_schema
            assert schema is not None and {f["name"] for f in schema["fields"]} == {"out", "gain"}
            assert (await ctx.update_setting("SYS/TYPED", "gain", 3.5, timeout=TIMEOUT))["value"]["gain"] == 3.5
            reply = await ctx.update_settings("SYS/TYPED", {"out": str(typed_out), "gain": 4.5}, timeout=TIMEOUT)
            assert reply["value"]["gain"] == 4.5
            await eventually(lambda: len(notes(typed_out)) == 2, what="both TYPED edits handled")
            assert notes(typed_out) == [{"msg": 3.5, "type": "NoteSettings", "settings": 3.5},
                                        {"msg": 4.5, "type": "NoteSettings", "settings": 4.5}]
            await ctx.update_setting("SYS/NAMED", "gain", 9.0, timeout=TIMEOUT)  # the handler ends the run
        result = await asyncio.wait_for(run, TIMEOUT * 3)
        assert result.ok and "SYS/NAMED requested termination" in result.reason, result
    finally:
        if not run.done():
            runner.request_stop("test done")
            await asyncio.wait_for(run, TIMEOUT * 3)
