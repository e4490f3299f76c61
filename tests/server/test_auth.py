"""Handshake: versions, shared-secret tokens, public binds, shutdown."""

from __future__ import annotations

import pytest

from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.errors import AuthError, AuthRequired, ConfigurationError, VersionMismatch
from ezmsg_console.server import GraphServer

from ..conftest import TIMEOUT

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
