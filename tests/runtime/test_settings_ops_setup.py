"""A settings request for a unit this process has claimed but not yet set up waits for it
(the GraphServer routes to a process as soon as it claims its units)."""

from __future__ import annotations

import asyncio
from typing import Any

from ezmsg_console.protocol.process import RoutedRequest
from ezmsg_console.runtime.settings_ops import SettingsOps

from ..conftest import TIMEOUT
from .units import Gain


class _Control:
    def __init__(self) -> None:
        self.operations: dict[str, Any] = {}

    def set_operation(self, operation: str, fn: Any) -> None:
        self.operations[operation] = fn


class _Host:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def publisher(self, topic: str, num_buffers: int) -> str:
        await self.release.wait()  # setting the unit up takes a while
        return f"publisher of {topic}"


class _Runner:
    def __init__(self, address: str) -> None:
        self.address = address
        self.unit = Gain()
        self.settings_hook: Any = None


async def test_a_request_during_set_up_waits_for_the_unit_instead_of_being_refused() -> None:
    host = _Host()
    ops = SettingsOps(_Control(), host)  # type: ignore[arg-type]
    ops.expect(["SYS/GAIN"])
    request = RoutedRequest("r1", "SYS/GAIN", "UPDATE_SETTING_FIELD", {"field_path": "gain", "value": 5.0})
    lookup = asyncio.ensure_future(ops._dynamic(request))
    adding = asyncio.ensure_future(ops.add(_Runner("SYS/GAIN")))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert not lookup.done()  # still waiting for the set-up, not refused
    host.release.set()
    await asyncio.wait_for(adding, TIMEOUT)
    runner, publisher = await asyncio.wait_for(lookup, TIMEOUT)
    assert runner.address == "SYS/GAIN" and publisher == "publisher of SYS/GAIN/INPUT_SETTINGS"
