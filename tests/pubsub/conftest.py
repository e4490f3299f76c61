"""Endpoint hosts over real connections to a real GraphServer on 127.0.0.1.

Two hosts in one test process behave like two processes on one machine
(Unix socket + shared memory between them); one host talking to itself is
the same-process (local) path.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import messages as m
from ezmsg_console.pubsub import shm
from ezmsg_console.pubsub.host import EndpointHost
from ezmsg_console.runtime.loop import new_event_loop

from ..conftest import TIMEOUT

HostFactory = Callable[..., Awaitable[EndpointHost]]


@pytest.hookimpl(optionalhook=True)
def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
    """These tests run on the loop a worker would (asyncio's, or uvloop with
    EZMSG_CONSOLE_LOOP=uvloop or auto), so the links can be tested on both loops.
    (A pytest-asyncio without this hook runs them on asyncio's loop.)"""
    return {"worker-loop": new_event_loop}


@pytest.fixture
async def make_host(server) -> AsyncIterator[HostFactory]:
    made: list[tuple[EndpointHost, ClientConnection]] = []

    async def factory(**kwargs: Any) -> EndpointHost:
        conn = await ClientConnection.open(server.address, role=m.Role.PROCESS, name="test-host", token=None,
                                           timeout=TIMEOUT)
        host = EndpointHost(conn, **kwargs)
        await host.start()
        made.append((host, conn))
        return host

    yield factory
    for host, conn in made:
        await host.close()
        await conn.close()
    for host, _ in made:
        assert shm.ours(host.run_tag + "_") == [], "a closed host left shared memory behind"
