"""EndpointHost: a process's publishers, subscribers and data server.

One per process that publishes or subscribes (each worker has one). It owns
the data server that subscribers connect to (a Unix socket for this host, TCP
for others), registers every endpoint with the GraphServer over the given
control connection, and applies the routes the server pushes back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import sys
import uuid
from typing import Any

from ..client.connection import ClientConnection
from ..protocol import auth
from ..protocol import messages as m
from ..protocol.endpoints import RegisterPublisher, RegisterSubscriber, RoutesUpdate, UnregisterEndpoint
from ..protocol.errors import ConfigurationError, ConsoleError
from ..protocol.graph import PublisherInfo, SubscriberInfo
from ..profiling.sampling import DEFAULT_TIMED_BUDGET, parse_timed_budget
from .channel import PublisherLink
from .publisher import Publisher
from .stall import LinkWatchdog, link_stall_from_env
from .subscriber import Subscriber

log = logging.getLogger(__name__)

DATA_HOST_ENV = "EZMSG_CONSOLE_DATA_HOST"
RUN_TAG_ENV = "EZMSG_CONSOLE_RUN_TAG"
HISTOGRAMS_ENV = "EZMSG_CONSOLE_PROFILING_HISTOGRAMS"
TIMED_BUDGET_ENV = "EZMSG_CONSOLE_PROFILING_TIMED_BUDGET"
DEFAULT_BUF_SIZE = 64 * 1024
DEFAULT_NUM_BUFFERS = 32
REJOIN_GRACE_S = 5.0
"""After rejoining a restarted GraphServer, links are only added, never dropped, for this
long: the new server learns the edges and the endpoints in no particular order."""


def host_identity() -> str:
    """Same value exactly when two processes share a machine *and* network namespace
    (so they can share memory and reach each other's abstract Unix sockets)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = "noboot"
    try:
        netns = str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        netns = "nonet"
    return f"{socket.gethostname()}:{boot}:{netns}"


def timed_budget_from_env() -> int:
    """The timing budget from :data:`TIMED_BUDGET_ENV` (read now), else the default."""
    raw = os.environ.get(TIMED_BUDGET_ENV)
    try:
        budget = parse_timed_budget(raw)
    except ValueError:
        raise ConfigurationError(f"{TIMED_BUDGET_ENV} must be a whole number of timed messages per second "
                                 f"(0: time every message), not {raw!r}") from None
    return DEFAULT_TIMED_BUDGET if budget is None else budget


class EndpointHost:
    """Creates publishers and subscribers bound to one control connection."""

    def __init__(self, conn: ClientConnection, *, run_tag: str | None = None, data_host: str | None = None,
                 timeout: float = 5.0, timed_budget: int | None = None, link_stall_s: float | None = None) -> None:
        self.conn = conn
        self.run_tag = run_tag or os.environ.get(RUN_TAG_ENV) or uuid.uuid4().hex[:8]
        self.data_host = data_host or os.environ.get(DATA_HOST_ENV) or "127.0.0.1"
        self.timeout = timeout
        self.host_id = host_identity()
        self.hostname = socket.gethostname()
        self.publishers: dict[str, Publisher] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self.histograms = os.environ.get(HISTOGRAMS_ENV, "1") not in ("0", "false", "no", "off")
        """Handler-time and latency histograms for new subscribers (the per-process switch)."""
        self.timed_budget = timed_budget if timed_budget is not None else timed_budget_from_env()
        """Timed messages per second per subscriber before only 1 in k is timed (0: time every message)."""
        self._unix_address = ""
        self._tcp_port = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._route_tasks: set[asyncio.Task[None]] = set()
        self._latest_routes: dict[str, tuple[PublisherInfo, ...]] = {}
        self._grace_until = 0.0
        self._reconcile: asyncio.Task[None] | None = None
        self._previous_secret: str | None = None  # the data-link secret before the last rejoin
        self.watchdog = LinkWatchdog(lambda: self.publishers.values(),
                                     link_stall_from_env() if link_stall_s is None else link_stall_s)
        self._watchdog_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if sys.platform.startswith("linux"):
            self._unix_address = f"\0ezc-{self.run_tag}-{uuid.uuid4().hex}"
            self._servers.append(await loop.create_unix_server(self._link_factory, self._unix_address))
        try:
            tcp = await loop.create_server(self._link_factory, self.data_host, 0)
        except OSError as exc:
            raise ConfigurationError(f"cannot open the data port on {self.data_host}: {exc.strerror}") from None
        sock = tcp.sockets[0]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tcp_port = sock.getsockname()[1]
        self._servers.append(tcp)
        self.conn.add_handler(RoutesUpdate, self._on_routes)
        self._watchdog_task = asyncio.ensure_future(self.watchdog.run())

    def _link_factory(self) -> PublisherLink:
        return PublisherLink(self._attach)

    @property
    def link_secret(self) -> str | None:
        """The data-link secret of the GraphServer this host is connected to (process connections
        get one in their Welcome)."""
        return self.conn.welcome.data_secret

    def link_proof(self, nonce: str, pub_id: str, sub_id: str) -> str | None:
        secret = self.link_secret
        return None if secret is None else auth.link_proof(secret, nonce, pub_id, sub_id)

    def _attach(self, link: PublisherLink, hello: dict[str, Any]) -> dict[str, Any]:
        pub_id, sub_id = str(hello.get("pub_id")), str(hello.get("sub_id"))
        # The secret of the current connection, or of the one before it: a subscriber that
        # reconnected to a restarted GraphServer a moment before this host did still gets in.
        secrets = [s for s in (self.link_secret, self._previous_secret) if s is not None]
        if not any(auth.proofs_match(auth.link_proof(s, link.nonce, pub_id, sub_id), hello.get("proof"))
                   for s in secrets):
            log.warning("refused a data link to %s: the subscriber did not prove it belongs to this "
                        "GraphServer's processes", pub_id)
            return {"ok": False, "error": "authentication failed: not a process of this GraphServer"}
        pub = self.publishers.get(pub_id)
        if pub is None:
            return {"ok": False, "error": f"no publisher {hello.get('pub_id')} here"}
        if link.transport is not None:
            sock = link.transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return pub.attach(link, hello)

    def local_publisher(self, pub_id: str) -> Publisher | None:
        return self.publishers.get(pub_id)

    # -- endpoints -------------------------------------------------------

    async def publisher(self, topic: str, *, num_buffers: int = DEFAULT_NUM_BUFFERS,
                        buf_size: int = DEFAULT_BUF_SIZE, force_tcp: bool = False) -> Publisher:
        if num_buffers < 1 or buf_size < 1024:
            raise ConfigurationError("a publisher needs num_buffers >= 1 and buf_size >= 1024")
        info = PublisherInfo(
            pub_id=f"{topic}:{uuid.uuid4().hex}", topic=topic, host_id=self.host_id, hostname=self.hostname,
            pid=os.getpid(), unix_address=self._unix_address, tcp_host=self.data_host, tcp_port=self._tcp_port,
            num_buffers=num_buffers, buf_size=buf_size, force_tcp=force_tcp,
        )
        pub = Publisher(info, run_tag=self.run_tag)
        self.publishers[info.pub_id] = pub
        try:
            await self.conn.request(lambda rid: RegisterPublisher(rid, info), m.Ack, self.timeout)
        except BaseException:
            del self.publishers[info.pub_id]
            await pub.close()
            raise
        return pub

    async def subscriber(self, topic: str, *, msg_type: Any = Any, leaky: bool = False,
                         max_queue: int | None = None, zero_copy: bool = False) -> Subscriber:
        """A subscriber on ``topic``. With ``zero_copy``, shared-memory messages
        arrive as read-only views that hold their slot until released (use
        :meth:`Subscriber.recv_delivery` and ``done()``)."""
        info = SubscriberInfo(
            sub_id=f"{topic}:{uuid.uuid4().hex}", topic=topic, host_id=self.host_id, hostname=self.hostname,
            pid=os.getpid(), leaky=leaky, max_queue=max_queue or 0,
        )
        sub = Subscriber(info, self, msg_type, zero_copy)
        self.subscribers[info.sub_id] = sub
        try:
            await self.conn.request(lambda rid: RegisterSubscriber(rid, info), m.Ack, self.timeout)
        except BaseException:
            del self.subscribers[info.sub_id]
            raise
        await self.settle()
        return sub

    async def settle(self) -> None:
        """Wait until every routes update received so far has been applied."""
        while self._route_tasks:
            await asyncio.gather(*list(self._route_tasks), return_exceptions=True)

    def _on_routes(self, msg: RoutesUpdate) -> None:
        sub = self.subscribers.get(msg.sub_id)
        if sub is None:
            return
        self._latest_routes[msg.sub_id] = msg.publishers
        in_grace = asyncio.get_running_loop().time() < self._grace_until
        self._spawn(sub.update_routes(msg.publishers, allow_removal=not in_grace))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._route_tasks.add(task)
        task.add_done_callback(self._route_tasks.discard)

    async def rejoin(self, conn: ClientConnection) -> None:
        """Re-register every endpoint on a new connection (the GraphServer restarted).

        The links between publishers and subscribers stay up throughout; for
        :data:`REJOIN_GRACE_S` route updates only add links, then the latest
        routes are applied in full.
        """
        if self.conn.welcome.data_secret != conn.welcome.data_secret:
            self._previous_secret = self.conn.welcome.data_secret
        self.conn = conn
        conn.add_handler(RoutesUpdate, self._on_routes)
        self._grace_until = asyncio.get_running_loop().time() + REJOIN_GRACE_S
        for pub in list(self.publishers.values()):
            await conn.request(functools.partial(RegisterPublisher, info=pub.info), m.Ack, self.timeout)
        for sub in list(self.subscribers.values()):
            await conn.request(functools.partial(RegisterSubscriber, info=sub.info), m.Ack, self.timeout)
        if self._reconcile is not None:
            self._reconcile.cancel()
        self._reconcile = asyncio.ensure_future(self._reconcile_after_grace())

    async def _reconcile_after_grace(self) -> None:
        await asyncio.sleep(max(0.0, self._grace_until - asyncio.get_running_loop().time()))
        for sub_id, publishers in list(self._latest_routes.items()):
            sub = self.subscribers.get(sub_id)
            if sub is not None:
                self._spawn(sub.update_routes(publishers))

    async def close_endpoint(self, endpoint: Publisher | Subscriber) -> None:
        endpoint_id = endpoint.pub_id if isinstance(endpoint, Publisher) else endpoint.sub_id
        self.publishers.pop(endpoint_id, None)
        self.subscribers.pop(endpoint_id, None)
        await endpoint.close()
        if not self.conn.closed:
            try:
                await self.conn.request(lambda rid: UnregisterEndpoint(rid, endpoint_id), m.Ack, self.timeout)
            except ConsoleError as exc:
                log.debug("unregistering %s: %s", endpoint_id, exc)

    async def close(self) -> None:
        """Close every endpoint (unlinking shared memory) and the data server."""
        if self._reconcile is not None:
            self._reconcile.cancel()
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
        for task in list(self._route_tasks):
            task.cancel()
        for sub in list(self.subscribers.values()):
            await sub.close()
        for pub in list(self.publishers.values()):
            await pub.close()
        self.subscribers.clear()
        self.publishers.clear()
        for server in self._servers:
            server.close()
        self._servers.clear()
