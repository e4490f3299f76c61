"""GraphContext behaviour: auto start, unreachable servers, connection loss."""

from __future__ import annotations

import asyncio

import pytest

from ezmsg_console.client import GraphContext
from ezmsg_console.protocol.errors import ConnectionClosed, RequestTimeout, ServerUnreachable
from ezmsg_console.server import GraphServer

from ..conftest import TIMEOUT, free_port


async def test_unreachable_server_names_the_address_and_the_fix():
    port = free_port()
    with pytest.raises(ServerUnreachable) as info:
        async with GraphContext(f"127.0.0.1:{port}", timeout=TIMEOUT):
            pass
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and "ezmsg-console serve" in text and "auto_start" in text


async def test_address_from_environment(server, monkeypatch):
    monkeypatch.setenv("EZMSG_CONSOLE_ADDRESS", str(server.address))
    async with GraphContext(timeout=TIMEOUT) as ctx:
        assert ctx.address == server.address
        assert await ctx.ping() >= 0


async def test_auto_start_runs_an_embedded_server_and_stops_it():
    address = f"127.0.0.1:{free_port()}"
    async with GraphContext(address, auto_start=True, timeout=TIMEOUT) as first:
        assert first.embedded_server is not None
        async with GraphContext(address, auto_start=True, timeout=TIMEOUT) as second:
            assert second.embedded_server is None  # the first one's server answered
            await first.connect("a", "b")
            assert (await second.snapshot()).edges == [("a", "b")]
    with pytest.raises(ServerUnreachable):
        async with GraphContext(address, timeout=TIMEOUT):
            pass


async def test_server_going_away_fails_pending_calls_and_streams(make_ctx):
    server = GraphServer("127.0.0.1:0")
    await server.start()
    ctx = await make_ctx(server.address)
    sub = await ctx.subscribe_topology_events(after_seq=None)
    waiter = asyncio.ensure_future(sub.next(TIMEOUT))
    await server.close()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(waiter, TIMEOUT)
    with pytest.raises(ConnectionClosed):
        await ctx.snapshot()


async def test_request_timeout_is_typed_and_a_timeout_error(raw_server):
    async with GraphContext(raw_server, timeout=TIMEOUT) as ctx:
        with pytest.raises(RequestTimeout) as info:
            await ctx.snapshot(timeout=0.2)
    assert isinstance(info.value, TimeoutError) and "SNAPSHOT" in str(info.value)


@pytest.fixture
async def raw_server():
    """A server that completes the handshake and then never answers anything."""
    from ezmsg_console.protocol import messages as m
    from ezmsg_console.protocol.address import Address
    from ezmsg_console.protocol.connection import ProtocolConnection, Side

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ProtocolConnection(Side.SERVER)
        writer.write(conn.send(m.ServerHello(m.PROTOCOL_VERSION, "mute", "epoch", "00", False)))
        while data := await reader.read(65536):
            for msg in conn.receive_data(data):
                if isinstance(msg, m.Hello):
                    writer.write(conn.send(m.Welcome(m.PROTOCOL_VERSION, "mute", "epoch", "p1", msg.role, 1 << 20)))
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield Address("127.0.0.1", srv.sockets[0].getsockname()[1])
    srv.close()
    await srv.wait_closed()


def test_embedded_server_in_a_thread_serves_other_event_loops():
    server = GraphServer("127.0.0.1:0")
    address = server.start_in_thread()
    try:
        async def use() -> list[tuple[str, str]]:
            async with GraphContext(address, timeout=TIMEOUT) as ctx:
                await ctx.connect("t1", "t2", persistent=True)
            async with GraphContext(address, timeout=TIMEOUT) as ctx:
                return (await ctx.snapshot()).edges

        assert asyncio.run(use()) == [("t1", "t2")]  # persistent edges outlive their session
    finally:
        server.stop_thread()
    with pytest.raises(ServerUnreachable):
        asyncio.run(GraphContext(address, timeout=TIMEOUT).open())
