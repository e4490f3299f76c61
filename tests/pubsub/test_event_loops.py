"""The links work on asyncio's loop and on uvloop (what workers run when it is installed).

Each case runs a GraphServer and two endpoint hosts in a loop of its own, so
it does not depend on which loop the test runner provides.
"""

from __future__ import annotations

import asyncio
import importlib.util

import numpy as np
import pytest

from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import messages as m
from ezmsg_console.pubsub import shm
from ezmsg_console.pubsub.host import EndpointHost
from ezmsg_console.runtime.loop import LOOP_ENV, loop_name, run_loop
from ezmsg_console.server import GraphServer

from ..conftest import TIMEOUT

LOOPS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(importlib.util.find_spec("uvloop") is None,
                                                    reason="uvloop is not installed")),
]


async def _round_trip(kind: str) -> tuple[str, list[str], str]:
    async with GraphServer("127.0.0.1:0") as server:
        made: list[tuple[EndpointHost, ClientConnection]] = []
        try:
            for _ in range(2):
                conn = await ClientConnection.open(server.address, role=m.Role.PROCESS, name="loop-test",
                                                   token=None, timeout=TIMEOUT)
                host = EndpointHost(conn)
                await host.start()
                made.append((host, conn))
            pub = await made[0][0].publisher("L/OUT", force_tcp=kind == "TCP")
            sub = await made[1][0].subscriber("L/OUT", zero_copy=True)
            await sub.wait_for_publishers(1, TIMEOUT)
            channels = []
            for i in range(20):  # fewer than the ring's slots: no backpressure before recv
                await pub.broadcast(np.full(200 * (i + 1), i, dtype=np.int32))  # up to 16 kB: in a slot
            for i in range(20):
                delivery = await asyncio.wait_for(sub.recv_delivery(), TIMEOUT)
                assert delivery.msg.shape == (200 * (i + 1),) and int(delivery.msg[-1]) == i
                channels.append(delivery.channel)
                delivery.done()
            assert await pub.drain(TIMEOUT)
            return loop_name(), sorted(set(channels)), made[0][0].run_tag
        finally:
            for host, conn in made:
                await host.close()
                await conn.close()


@pytest.mark.parametrize("kind", ["SHM", "TCP"])
@pytest.mark.parametrize("loop", LOOPS)
def test_a_link_on_each_loop(loop: str, kind: str) -> None:
    """Regression: uvloop's create_unix_connection cannot reach an abstract socket
    address (EINVAL), so the same-host link used to never come up on uvloop."""
    ran_on, channels, run_tag = run_loop(_round_trip(kind), {LOOP_ENV: loop})
    assert ran_on == loop
    assert channels == [kind]
    assert shm.ours(run_tag + "_") == []


async def test_these_tests_run_on_the_worker_loop() -> None:
    """With a pytest-asyncio that has the loop-factory hook (see conftest), the other
    tests here run on uvloop when it is installed, like workers do."""
    import pytest_asyncio.plugin as plugin

    if not hasattr(plugin, "PytestAsyncioSpecs"):
        pytest.skip("this pytest-asyncio cannot choose the loop")
    from ezmsg_console.runtime.loop import new_event_loop

    probe = new_event_loop()
    try:
        expected = loop_name(probe)
    finally:
        probe.close()
    assert loop_name() == expected
