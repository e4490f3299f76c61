"""Which GraphServer answers: ours, ezmsg's, nothing, or something else; each with its own message."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from ezmsg_console.client import source
from ezmsg_console.client.source import Backend, EzmsgExtraMissing, NotAGraphServer, locate
from ezmsg_console.protocol.address import Address, parse_address
from ezmsg_console.protocol.errors import ConfigurationError
from ezmsg_console.server import GraphServer

from ..conftest import TIMEOUT, free_address
from ..export.conftest import run_cli

pytest.importorskip("ezmsg")


@pytest.fixture
async def http_port() -> AsyncIterator[Address]:
    """A TCP service that is no GraphServer: it sends an HTTP error line at once."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield Address("127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_each_kind_is_told_apart(ezmsg_server: Any, http_port: Address) -> None:
    ezmsg_at = parse_address(ezmsg_server.address)
    async with GraphServer("127.0.0.1:0") as ours:
        native_at = ours.address
        found = await locate(str(native_at))
        assert (found.backend, found.address, found.warnings) == (Backend.NATIVE, native_at, ())
        found = await locate(str(ezmsg_at))
        assert (found.backend, found.version, found.label) == (Backend.EZMSG, ezmsg_server.version,
                                                               f"ezmsg {ezmsg_server.version}")
        nothing = free_address()
        assert (await locate(nothing)).backend is None
        with pytest.raises(NotAGraphServer, match="is not a GraphServer"):
            await locate(str(http_port))
        with pytest.raises(ConfigurationError, match="is an ezmsg GraphServer, not native"):
            await locate(str(ezmsg_at), backend="native")
        with pytest.raises(ConfigurationError, match="is an ezmsg-console GraphServer, not ezmsg"):
            await locate(str(native_at), backend="ezmsg")
        # No address: ours first, then ezmsg's (both from the environment here).
        env = {"EZMSG_CONSOLE_ADDRESS": str(native_at), "EZMSG_GRAPHSERVER_ADDR": str(ezmsg_at)}
        assert (await locate(environ=env)).backend is Backend.NATIVE
        env["EZMSG_CONSOLE_ADDRESS"] = nothing
        assert (await locate(environ=env)).address == ezmsg_at
        assert (await locate(backend="ezmsg", environ=env)).address == ezmsg_at
        env["EZMSG_GRAPHSERVER_ADDR"] = free_address()
        empty = await locate(environ=env)
        assert empty.backend is None and empty.address == parse_address(nothing)  # where to embed


async def test_an_ezmsg_server_without_the_extra_names_the_install(ezmsg_server: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "ezmsg_available", lambda: False)
    with pytest.raises(EzmsgExtraMissing, match=r"pip install 'ezmsg-console\[ezmsg\]'"):
        await locate(ezmsg_server.address)


def test_the_command_line_says_which(ezmsg_server: Any, tmp_path: Path) -> None:
    nothing = run_cli("get", "DEMO/GEN", "--address", free_address())
    assert nothing.returncode == 2 and "no GraphServer answered" in nothing.stderr
    # Without the extra (an empty 'ezmsg' package shadows the real one): one line, the install command.
    shadow = tmp_path / "shadow"
    (shadow / "ezmsg").mkdir(parents=True)
    (shadow / "ezmsg" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    for args in (("get", "DEMO/GEN", "--address", ezmsg_server.address), ("--address", ezmsg_server.address)):
        result = subprocess.run([sys.executable, "-m", "ezmsg_console", *args], capture_output=True, text=True,
                                timeout=3 * TIMEOUT, stdin=subprocess.DEVNULL, env=env)
        lines = [line for line in result.stderr.splitlines() if "no terminal" not in line]
        assert result.returncode == 64 and "Traceback" not in result.stderr, result.stderr  # needs the extra
        assert lines == [f"ezmsg-console: an ezmsg GraphServer {ezmsg_server.version} answers at "
                         f"{ezmsg_server.address}; to attach to it: pip install 'ezmsg-console[ezmsg]'"]
    demo = subprocess.run([sys.executable, "-m", "ezmsg_console", "demo", "--ezmsg"], capture_output=True,
                          text=True, timeout=3 * TIMEOUT, stdin=subprocess.DEVNULL, env=env)
    assert demo.returncode == 64 and "pip install 'ezmsg-console[ezmsg]'" in demo.stderr


def _own_address() -> str | None:
    """This host's address on its main interface, if it has one that is not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.254", 9))  # sends nothing: picks the outgoing interface
        except OSError:
            return None
        host = str(sock.getsockname()[0])
    return None if ipaddress.ip_address(host).is_loopback else host


async def test_an_ezmsg_server_on_another_address_is_warned_about(ezmsg_server: Any) -> None:
    """Reached through a non-loopback address (a relay to the loopback server): one warning line."""
    host = _own_address()
    if host is None:
        pytest.skip("this host has no non-loopback IPv4 address")

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(ezmsg_server.host, ezmsg_server.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, host, 0)
    try:
        address = f"{host}:{server.sockets[0].getsockname()[1]}"
        found = await locate(address)
        assert found.backend is Backend.EZMSG
        assert found.warnings == (f"{address} is an ezmsg GraphServer on another host: its wire format is pickle "
                                  "without authentication, so attach only to a server you trust",)
        assert (await locate(ezmsg_server.address)).warnings == ()
    finally:
        server.close()
        await server.wait_closed()
