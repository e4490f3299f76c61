"""Data links: only processes of the same GraphServer can link, observers cannot publish, and a
subscriber that stops acknowledging cannot stall its publisher forever.

Before, a client with no token and a pub_id from a snapshot could read a publisher's TCP data
port (and stall the source by never acknowledging), and an OBSERVER connection could register a
publisher and feed any topic, a unit's INPUT_SETTINGS included.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import auth
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.endpoints import RegisterPublisher
from ezmsg_console.protocol.errors import PermissionDenied
from ezmsg_console.protocol.graph import PublisherInfo
from ezmsg_console.pubsub.channel import FRAME, SubscriberLink, hello_frame
from ezmsg_console.protocol.codec import unpackb

from ..conftest import TIMEOUT


async def _read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    (size,) = FRAME.unpack(await asyncio.wait_for(reader.readexactly(FRAME.size), TIMEOUT))
    return unpackb(await asyncio.wait_for(reader.readexactly(size), TIMEOUT))


@pytest.mark.parametrize("secret", [None, "not-the-secret"])
async def test_a_stranger_cannot_read_a_publishers_data_port(make_host, secret) -> None:
    host = await make_host()
    pub = await host.publisher("SEC/OUT")
    info = pub.info
    reader, writer = await asyncio.open_connection(info.tcp_host, info.tcp_port)
    try:
        challenge = await _read_frame(reader)
        assert isinstance(challenge.get("nonce"), str)
        proof = auth.link_proof(secret, challenge["nonce"], info.pub_id, "spy") if secret else None
        writer.write(hello_frame({"pub_id": info.pub_id, "sub_id": "spy", "shm": False, "proof": proof}))
        reply = await _read_frame(reader)
        assert reply["ok"] is False and "authentication failed" in reply["error"]
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed, nothing more to read
        assert pub.links == []
    finally:
        writer.close()


async def test_processes_of_the_same_server_still_link(make_host) -> None:
    a, b = await make_host(), await make_host()
    pub = await a.publisher("SEC/OK")
    sub = await b.subscriber("SEC/OK")
    await sub.wait_for_publishers(1, TIMEOUT)
    await pub.broadcast(np.arange(4))
    assert (await asyncio.wait_for(sub.recv(), TIMEOUT)).tolist() == [0, 1, 2, 3]
    assert a.link_secret is not None and a.link_secret == b.link_secret


@pytest.mark.parametrize("role", [m.Role.OBSERVER, m.Role.SESSION])
async def test_only_process_connections_register_endpoints(server, role) -> None:
    conn = await ClientConnection.open(server.address, role=role, name="intruder", token=None, timeout=TIMEOUT)
    try:
        assert conn.welcome.data_secret is None  # only processes get the data-link secret
        info = PublisherInfo("intruder-pub", "UNIT/INPUT_SETTINGS", tcp_host="127.0.0.1", tcp_port=1)
        with pytest.raises(PermissionDenied, match="only a process connection has data-plane endpoints"):
            await conn.request(lambda rid: RegisterPublisher(rid, info), m.Ack, TIMEOUT)
        assert conn.closed is False  # refused, not disconnected
    finally:
        await conn.close()


async def test_a_subscriber_that_never_acknowledges_is_dropped_after_the_bound(make_host) -> None:
    """A peer that links properly, reads, and never acknowledges: after ``link_stall_s`` of its
    publisher waiting, its link is closed and the source (and a healthy subscriber) go on."""
    source = await make_host(link_stall_s=0.3)
    pub = await source.publisher("SEC/STALL", num_buffers=4)
    healthy_host = await make_host()
    healthy = await healthy_host.subscriber("SEC/STALL")
    await healthy.wait_for_publishers(1, TIMEOUT)
    info = pub.info
    secret = healthy_host.link_secret
    assert secret is not None

    def prove(nonce: str) -> str:
        return auth.link_proof(secret, nonce, info.pub_id, "mute")

    loop = asyncio.get_running_loop()
    _transport, mute = await loop.create_connection(
        lambda: SubscriberLink({"pub_id": info.pub_id, "sub_id": "mute", "shm": False},
                               lambda *_args: None, prove),  # takes every message, acknowledges none
        info.tcp_host, info.tcp_port)
    assert (await asyncio.wait_for(mute.ready, TIMEOUT))["ok"]
    assert len(pub.links) == 2
    got = []

    async def consume() -> None:
        while len(got) < 20:
            got.append(int((await healthy.recv())[0]))

    consumer = asyncio.ensure_future(consume())
    for i in range(20):  # 5x the ring: without the bound this stalls at the 5th message forever
        await asyncio.wait_for(pub.broadcast(np.full(2, i)), TIMEOUT)
    await asyncio.wait_for(consumer, TIMEOUT)
    assert got == list(range(20))
    assert pub.links_dropped == 1 and source.watchdog.dropped == 1
    await asyncio.wait_for(mute.closed, TIMEOUT)
    assert len(pub.links) == 1
