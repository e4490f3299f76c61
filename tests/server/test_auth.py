"""Handshake: versions, shared-secret tokens, public binds, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.client.reconnect import Backoff, retry_until_connected
from ezmsg_console.protocol.address import Address
from ezmsg_console.protocol.connection import ProtocolConnection, Side

from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.errors import AuthError, AuthRequired, ConfigurationError, ProtocolError, VersionMismatch
from ezmsg_console.server import GraphServer

from ..conftest import TIMEOUT, eventually

TOKEN = "correct horse battery staple"


async def test_version_mismatch_is_named_on_the_server_side(server, raw_peer):
    raw = await raw_peer(server.address)
    reply = await raw.handshake(version=99)
    assert isinstance(reply, m.ErrorReply) and reply.code == "VERSION_MISMATCH"
    assert "client speaks 99" in reply.message and f"server speaks {m.PROTOCOL_VERSION}" in reply.message
    assert await raw.closed_by_server()


async def test_token_required_accepted_and_refused(make_server, make_ctx):
    server = await make_server(token=TOKEN)
    with pytest.raises(AuthRequired, match="requires a token"):
        await make_ctx(server.address)
    with pytest.raises(AuthError, match="authentication failed") as info:
        await make_ctx(server.address, token="wrong")
    assert not isinstance(info.value, AuthRequired)
    ctx = await make_ctx(server.address, token=TOKEN)
    await ctx.connect("a", "b")
    assert (await ctx.snapshot()).edges == [("a", "b")]


async def test_token_is_read_from_the_environment(make_server, make_ctx, monkeypatch):
    monkeypatch.setenv("EZMSG_CONSOLE_TOKEN", TOKEN)
    server = await make_server()
    assert server.token == TOKEN
    ctx = await make_ctx(server.address)  # the client reads it too
    assert await ctx.ping() >= 0


async def test_replayed_handshake_fails(make_server, raw_peer):
    server = await make_server(token=TOKEN)
    first = await raw_peer(server.address)
    nonce = "c0ffee" * 5
    assert isinstance(await first.handshake(token=TOKEN, client_nonce=nonce), m.Welcome)
    assert first.server_hello is not None
    from ezmsg_console.protocol import auth

    captured = auth.client_proof(TOKEN, first.server_hello.nonce, nonce, "session", "raw")
    second = await raw_peer(server.address)
    reply = await second.handshake(client_nonce=nonce, proof=captured)  # same bytes, new server nonce
    assert isinstance(reply, m.ErrorReply) and reply.code == "AUTH_FAILED"
    assert await second.closed_by_server()


async def test_welcome_proves_the_server_holds_the_token(make_server, raw_peer):
    server = await make_server(token=TOKEN)
    raw = await raw_peer(server.address)
    nonce = "ab" * 16
    welcome = await raw.handshake(token=TOKEN, client_nonce=nonce)
    assert isinstance(welcome, m.Welcome) and raw.server_hello is not None
    from ezmsg_console.protocol import auth

    assert welcome.server_proof == auth.server_proof(TOKEN, raw.server_hello.nonce, nonce)


async def test_public_bind_without_token_refuses_to_start():
    server = GraphServer("0.0.0.0:0")
    with pytest.raises(ConfigurationError, match="--token"):
        await server.start()
    async with GraphServer("0.0.0.0:0", token=TOKEN) as public:
        assert public.address is not None and public.address.port > 0


async def test_port_in_use_is_a_clear_error(server):
    with pytest.raises(ConfigurationError, match="already in use"):
        await GraphServer(server.address).start()


async def test_shutdown_from_loopback_stops_the_server(make_server, make_ctx):
    server = await make_server()
    ctx = await make_ctx(server.address)
    await ctx.shutdown_server()
    await server.serve_forever()  # returns once the shutdown has been processed
    assert server.peer_count == 0


async def test_client_side_version_check(serve_process, monkeypatch):
    """A real `serve` subprocess on protocol 1 vs a client claiming 2: both name both."""
    proc = serve_process("--address", "127.0.0.1:0")
    address = proc.wait_listening()
    monkeypatch.setattr(m, "PROTOCOL_VERSION", m.PROTOCOL_VERSION + 1)
    from ezmsg_console.client import GraphContext

    with pytest.raises(VersionMismatch) as info:
        async with GraphContext(address, timeout=TIMEOUT):
            pass
    assert f"client speaks {m.PROTOCOL_VERSION}" in str(info.value)
    assert f"server speaks {m.PROTOCOL_VERSION - 1}" in str(info.value)
    assert proc.stop() == 0
    assert f"client speaks {m.PROTOCOL_VERSION}, server speaks {m.PROTOCOL_VERSION - 1}" in proc.stderr_text


class _Impostor:
    """A fake GraphServer on 127.0.0.1: says ``auth_required`` (or not) and welcomes whoever says
    HELLO with a made-up proof. Counts the connections and the HELLOs it got."""

    def __init__(self, auth_required: bool) -> None:
        self.auth_required = auth_required
        self.connections = 0
        self.hellos = 0
        self.attempted = asyncio.Event()  # set at the third connection
        self.server: asyncio.AbstractServer | None = None
        self.address = Address("127.0.0.1", 0)

    async def __aenter__(self) -> _Impostor:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = Address("127.0.0.1", self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.connections >= 3:
            self.attempted.set()
        conn = ProtocolConnection(Side.SERVER)
        writer.write(conn.send(m.ServerHello(m.PROTOCOL_VERSION, "fake", "epoch", "ab" * 16, self.auth_required)))
        try:
            while data := await reader.read(65536):
                for msg in conn.receive_data(data):
                    if isinstance(msg, m.Hello):
                        self.hellos += 1
                        writer.write(conn.send(m.Welcome(m.PROTOCOL_VERSION, "fake", "epoch", "p1", msg.role,
                                                         1 << 20, "00" * 32 if self.auth_required else None)))
        except (ConnectionError, ProtocolError):
            pass
        writer.close()


async def test_a_client_with_a_token_refuses_a_server_that_asks_for_none(make_ctx):
    async with _Impostor(auth_required=False) as fake:
        address = fake.address
        with pytest.raises(AuthError, match="does not ask for a token") as info:
            await make_ctx(address, token=TOKEN)
        assert info.value.details["reason"] == "server_unauthenticated"
        with pytest.raises(AuthError, match="does not ask for a token"):
            await ClientConnection.open(address, role=m.Role.PROCESS, name="worker", token=TOKEN, timeout=TIMEOUT)
        assert fake.hellos == 0  # refused before saying anything
        ctx = await make_ctx(address)  # without a token the same server is accepted (loopback, no secret)
        assert ctx.address == address and fake.hellos == 1


async def test_a_server_with_a_wrong_proof_is_refused(make_ctx):
    async with _Impostor(auth_required=True) as fake:
        with pytest.raises(AuthError, match="could not prove it holds the token") as info:
            await make_ctx(fake.address, token=TOKEN)
        assert info.value.details["reason"] == "bad_server_proof"


async def test_a_worker_holding_a_token_keeps_retrying_and_never_joins_an_impostor():
    """A local process that grabs the port while the real server is down gets no worker: each
    attempt is refused before the worker says HELLO, and the retry loop goes on."""
    async with _Impostor(auth_required=False) as impostor:
        stop = asyncio.Event()

        async def connect() -> ClientConnection:
            return await ClientConnection.open(impostor.address, role=m.Role.PROCESS, name="worker", token=TOKEN,
                                               timeout=TIMEOUT)

        retry = asyncio.ensure_future(retry_until_connected(connect, stop, "worker",
                                                            Backoff(initial=0.01, maximum=0.02)))
        await asyncio.wait_for(impostor.attempted.wait(), TIMEOUT)
        stop.set()
        assert await asyncio.wait_for(retry, TIMEOUT) is None
        assert impostor.connections >= 3 and impostor.hellos == 0


async def test_online_token_guessing_is_rate_limited(make_server, make_ctx):
    from ezmsg_console.protocol.errors import AuthRateLimited
    from ezmsg_console.server.limits import AuthFailures

    server = await make_server(token=TOKEN)
    server.auth_failures = AuthFailures(limit=5, window_s=0.5)
    for guess in range(5):
        with pytest.raises(AuthError, match="authentication failed"):
            await make_ctx(server.address, token=f"guess-{guess}")
    with pytest.raises(AuthRateLimited, match="too many failed authentication attempts") as info:
        await make_ctx(server.address, token=TOKEN)  # even the right token waits out the window
    assert 0 < info.value.details["retry_after_s"] <= 0.5
    await eventually(lambda: server.auth_failures.retry_after("127.0.0.1") == 0, what="the window passing")
    assert await (await make_ctx(server.address, token=TOKEN)).ping() >= 0
