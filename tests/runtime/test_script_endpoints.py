"""GraphContext.publisher()/subscriber(): a script feeds a running pipeline and listens to it
(ezmsg's GraphContext API; issue 12)."""

from __future__ import annotations

import asyncio

import numpy as np

from ezmsg_console.client import GraphContext
from ezmsg_console.pubsub import shm
from ezmsg_console.runtime.runner import Runner

from ..conftest import TIMEOUT, snapshot_when
from .units import Gain, GainSettings


async def test_a_script_publishes_into_a_running_unit_and_reads_its_output(no_leaks, server):
    address = str(server.address)
    runner = Runner({"G": Gain(GainSettings(gain=3.0))}, address=address, duration=TIMEOUT * 6)
    run = asyncio.ensure_future(runner.run())
    try:
        async with GraphContext(address, timeout=TIMEOUT, name="script") as ctx:
            await snapshot_when(ctx, lambda s: any("G" in p.units for p in s.processes), "G owned", run=run)
            pub = await ctx.publisher("SCRIPT/OUT")
            sub = await ctx.subscriber("G/OUTPUT")
            await ctx.connect("SCRIPT/OUT", "G/INPUT")
            await sub.wait_for_publishers(1, TIMEOUT)
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while not pub.links:  # G's subscriber links to the script's new publisher
                assert asyncio.get_running_loop().time() < deadline, "G never linked to the script"
                await asyncio.sleep(0.01)
            for i in range(5):
                await pub.broadcast(np.full(4, float(i)))
            got = [await asyncio.wait_for(sub.recv(), TIMEOUT) for _ in range(5)]
            assert [float(g[0]) for g in got] == [0.0, 3.0, 6.0, 9.0, 12.0]
            snap = await ctx.snapshot()
            assert {p.topic for p in snap.publishers} >= {"SCRIPT/OUT", "G/OUTPUT"}
            run_tag = ctx._endpoints._host.run_tag
        assert shm.ours(run_tag) == []  # closing the context closed its endpoints and their rings
    finally:
        runner.request_stop("test done")
        await asyncio.wait_for(run, TIMEOUT * 3)
