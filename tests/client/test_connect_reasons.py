"""Why the console cannot connect: the reason, for every way it can fail (a connect-failure matrix)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, AsyncIterator

import pytest

from ezmsg_console.client.monitor import ConnState, GraphMonitor
from ezmsg_console.protocol.address import Address

from ..conftest import TIMEOUT, eventually


async def _reason(address: Any, **kwargs: Any) -> str:
    monitor = GraphMonitor(address, timeout=1.0, **kwargs)
    monitor.start()
    try:
        await eventually(lambda: monitor.state.attempts >= 1, TIMEOUT, "a failed attempt")
        assert monitor.state.conn_state is not ConnState.CONNECTED
        return monitor.state.last_error
    finally:
        await monitor.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _fake(greeting: bytes | None) -> tuple[asyncio.AbstractServer, Address]:
    """A TCP service on 127.0.0.1 that says ``greeting`` (None: nothing) and then waits."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greeting is not None:
            writer.write(greeting)
        await reader.read()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, Address("127.0.0.1", server.sockets[0].getsockname()[1])


@pytest.fixture
async def http_service() -> AsyncIterator[Address]:
    server, address = await _fake(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    yield address
    server.close()
    await server.wait_closed()


async def test_a_server_that_needs_a_token(make_server) -> None:
    server = await make_server(token="s3cret")
    assert await _reason(server.address, backend="native") == "needs a token (--token or $EZMSG_CONSOLE_TOKEN)"


async def test_a_wrong_token(make_server) -> None:
    server = await make_server(token="s3cret")
    assert (await _reason(server.address, backend="native", token="nope")).startswith("authentication:")


async def test_something_that_is_not_a_graphserver(http_service: Address) -> None:
    assert (await _reason(http_service, backend=None)).startswith("not a GraphServer")


async def test_nothing_listening() -> None:
    assert await _reason(f"127.0.0.1:{_free_port()}", backend=None) == "refused: nothing listens there"


async def test_a_bad_address() -> None:
    assert (await _reason("nowhere", backend=None)).startswith("bad address: bad address 'nowhere'")


async def test_the_console_says_why_with_the_whole_address(make_server) -> None:
    """The header keeps the reason short; a notification names the whole address and the reason."""
    from ezmsg_console.tui.app import ConsoleApp

    server = await make_server(token="s3cret")
    monitor = GraphMonitor(server.address, timeout=1.0, backend="native")
    app = ConsoleApp(monitor)
    async with app.run_test(size=(120, 30)) as pilot:
        said = f"cannot connect to {server.address}: needs a token (--token or $EZMSG_CONSOLE_TOKEN)"

        async def shown() -> None:
            while not any(said in str(n.message) for n in app._notifications):
                await pilot.pause(0.05)
        await asyncio.wait_for(shown(), TIMEOUT)
        assert "needs a token" in str(app.header.render()) and str(server.address.port) in str(app.header.render())
        await app.shutdown()
