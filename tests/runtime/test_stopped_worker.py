"""A stopped (SIGSTOP) worker never stalls the control plane for anyone else."""

from __future__ import annotations

import asyncio
import os
import signal

from ezmsg_console.client import GraphContext
from ezmsg_console.runtime.runner import Runner

from ..conftest import TIMEOUT, snapshot_when
from .units import Endless


async def test_requests_to_a_stopped_worker_do_not_hold_up_others(no_leaks, server):
    address = str(server.address)
    runner = Runner({"SYS": Endless()}, address=address, duration=TIMEOUT * 6)
    run = asyncio.ensure_future(runner.run())
    stopped_pid = None
    try:
        async with GraphContext(address, timeout=TIMEOUT) as ctx, GraphContext(address, timeout=TIMEOUT) as other:
            snap = await snapshot_when(ctx, lambda s: sum(len(p.units) for p in s.processes) == 2,
                                       "both units owned", run=run)
            pids = {u: p.pid for p in snap.processes for u in p.units}
            stopped_pid = pids["SYS/SOURCE"]
            os.kill(stopped_pid, signal.SIGSTOP)
            big = b"\x00" * (4 * 1024 * 1024)  # queued to a process that reads nothing
            stuck = [asyncio.ensure_future(ctx.process_request("SYS/SOURCE", "ECHO", big, timeout=2.0))
                     for _ in range(3)]
            for _ in range(20):  # meanwhile, everyone else is served promptly
                assert (await other.process_ping("SYS/SINK", timeout=1.0))["pid"] == pids["SYS/SINK"]
                assert len((await other.snapshot(timeout=1.0)).processes) >= 1
            answers = await asyncio.wait_for(asyncio.gather(*stuck), TIMEOUT)
            assert {a.error_code for a in answers} <= {"TIMEOUT", "PROCESS_DISCONNECTED", "ROUTE_WRITE_FAILED"}
            assert not any(a.ok for a in answers)
    finally:
        if stopped_pid is not None:
            try:
                os.kill(stopped_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        runner.request_stop("test done")
        await asyncio.wait_for(run, TIMEOUT * 3)
