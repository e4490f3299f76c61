"""The pipeline survives a GraphServer restart: data keeps flowing, workers rejoin."""

from __future__ import annotations

import asyncio
import json
import signal

from ezmsg_console.client import GraphContext
from ezmsg_console.protocol.errors import ConsoleError
from ezmsg_console.runtime.runner import Runner

from ..conftest import TIMEOUT, free_port, snapshot_when
from .units import CollectSettings, CountSettings, GainSettings, Pipeline


async def test_workers_rejoin_a_restarted_server_without_losing_data(no_leaks, tmp_path, serve_process):
    address = f"127.0.0.1:{free_port()}"
    server = serve_process("--address", address)
    server.wait_listening()
    out = tmp_path / "sink.json"
    system = Pipeline()
    system.SOURCE.apply_settings(CountSettings(count=300, period_s=0.01))  # ~3 s of data
    system.GAIN.apply_settings(GainSettings(gain=2.0))
    system.SINK.apply_settings(CollectSettings(out=str(out), expect=300, finish="terminate"))
    runner = Runner({"SYS": system}, address=address, duration=TIMEOUT * 6)
    run = asyncio.ensure_future(runner.run())
    try:
        async with GraphContext(address, timeout=TIMEOUT) as ctx:
            await snapshot_when(ctx, lambda s: len([p for p in s.processes if p.units]) >= 3,
                                "three workers with units", run=run)
            await ctx.update_setting("SYS/GAIN", "gain", 5.0)
            old_epoch = ctx.server_epoch
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        await asyncio.sleep(0.3)  # an outage the workers ride through
        restarted = serve_process("--address", address)
        restarted.wait_listening()

        async def rejoined() -> tuple[str, dict]:
            while True:
                try:
                    async with GraphContext(address, timeout=TIMEOUT) as ctx:
                        snap = await ctx.snapshot()
                        owners = sorted(u for p in snap.processes for u in p.units)
                        settings = {s.component_address: s for s in await ctx.settings_snapshot()}
                        gain = settings.get("SYS/GAIN")
                        if (owners == ["SYS/GAIN", "SYS/SINK", "SYS/SOURCE"] and len(snap.edges) == 2
                                and gain is not None and gain.source_process_id is not None):
                            return snap.server_epoch, gain.value.structured_value
                except ConsoleError:
                    pass
                await asyncio.sleep(0.1)

        epoch, gain_value = await asyncio.wait_for(rejoined(), TIMEOUT)
        assert epoch != old_epoch
        assert gain_value == {"gain": 5.0}  # re-reported by the worker, not the declared 2.0
        result = await asyncio.wait_for(run, TIMEOUT * 3)
    finally:
        if not run.done():
            runner.request_stop("test failed")
            await asyncio.wait_for(run, TIMEOUT * 3)
    assert result.ok and "SYS/SINK requested termination" in result.reason
    seen = json.loads(out.read_text())["seen"]
    assert len(seen) == 300  # nothing lost while the server was down
    assert all(v in (2 * i, 5 * i) for i, v in enumerate(seen)) and seen[-1] == 299 * 5  # in order
