"""Publishers and subscribers for a script outside any run (``GraphContext.publisher``/``subscriber``).

The GraphContext loads this by name when a script first asks for an endpoint: the endpoints live
on their own PROCESS connection and :class:`EndpointHost` (data links need one), opened on first
use and closed with the context, so a script can feed a running pipeline or listen to it::

    async with GraphContext(address) as ctx:
        pub = await ctx.publisher("SCRIPT/OUT")
        await ctx.connect("SCRIPT/OUT", "SYS/FILTER/INPUT")   # an edge owned by this session
        sub = await ctx.subscriber("SYS/FILTER/OUTPUT")
        await pub.broadcast(chunk)
        out = await sub.recv()
"""

from __future__ import annotations

from typing import Any

from ..client.connection import ClientConnection
from ..protocol import messages as m
from .host import EndpointHost
from .publisher import Publisher
from .subscriber import Subscriber


class ScriptEndpoints:
    """One script's data endpoints: a PROCESS connection and its host, opened lazily."""

    def __init__(self, address: Any, *, token: str | None, name: str, timeout: float) -> None:
        self.address = address
        self.token = token
        self.name = name
        self.timeout = timeout
        self._conn: ClientConnection | None = None
        self._host: EndpointHost | None = None

    async def host(self) -> EndpointHost:
        if self._host is None:
            conn = await ClientConnection.open(self.address, role=m.Role.PROCESS, name=f"script:{self.name}",
                                               token=self.token, timeout=self.timeout)
            host = EndpointHost(conn, timeout=self.timeout)
            try:
                await host.start()
            except BaseException:
                await conn.close()
                raise
            self._conn, self._host = conn, host
        return self._host

    async def publisher(self, topic: str, **options: Any) -> Publisher:
        return await (await self.host()).publisher(topic, **options)

    async def subscriber(self, topic: str, **options: Any) -> Subscriber:
        return await (await self.host()).subscriber(topic, **options)

    async def close(self) -> None:
        host, conn, self._host, self._conn = self._host, self._conn, None, None
        if host is not None:
            await host.close()
        if conn is not None:
            await conn.close()
