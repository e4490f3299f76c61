"""GraphServer: bind, accept, serve and stop; in the caller's loop or a thread.

The facade owns the listening socket and the set of live peers; the state is
in :class:`ServerCore`, and each connection's I/O in :class:`Peer`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import socket
import threading
import uuid
from typing import Any

from ..net import is_loopback_host
from ..protocol.address import Address, resolve_address, resolve_token
from ..protocol import messages as m
from ..protocol.connection import ProtocolConnection, Side
from ..protocol.errors import ConfigurationError, ConsoleError, TooManyConnections
from ..protocol.framing import ABSOLUTE_MAX_FRAME_SIZE, MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, MAX_PENDING_BYTES
from ..protocol.wire import Message
from .core import ServerCore
from .limits import FRAME_TIMEOUT_S, LISTEN_BACKLOG, MAX_CONNECTIONS, AuthFailures
from .peer import Peer
from .profiling_hub import DEFAULT_LIMIT

log = logging.getLogger(__name__)


class GraphServer:
    """The control plane's source of truth for topology and sessions.

    ``address`` is ``host:port`` (port 0 picks a free port), an
    :class:`Address`, or None for ``$EZMSG_CONSOLE_ADDRESS`` or the default
    ``127.0.0.1:25970`` (read when the server starts). ``token`` (or
    ``$EZMSG_CONSOLE_TOKEN``) turns on HMAC authentication; without one the
    server refuses to listen on anything but loopback.
    """

    def __init__(
        self,
        address: str | Address | tuple[str, int] | None = None,
        *,
        token: str | None = None,
        max_frame_size: int = MAX_FRAME_SIZE,
        max_message_size: int = MAX_MESSAGE_SIZE,
        history_limit: int = 10000,
        stream_queue_events: int = 1024,
        stream_queue_bytes: int = 4 * 1024 * 1024,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        write_deadline: float = 2.0,
        handshake_timeout: float = 2.0,
        allow_remote_shutdown: bool = False,
        profiling_limit: int = DEFAULT_LIMIT,
        max_connections: int = MAX_CONNECTIONS,
        frame_timeout: float = FRAME_TIMEOUT_S,
    ) -> None:
        if not 4096 <= max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            raise ConfigurationError(f"max_frame_size must be between 4096 and {ABSOLUTE_MAX_FRAME_SIZE}")
        if max_message_size < max_frame_size:
            raise ConfigurationError(f"max_message_size ({max_message_size}) must be at least max_frame_size "
                                     f"({max_frame_size})")
        if max_pending_bytes < 1:
            raise ConfigurationError("max_pending_bytes must be >= 1")
        if max_connections < 1 or not frame_timeout > 0:
            raise ConfigurationError("max_connections must be >= 1 and frame_timeout > 0")
        if history_limit < 1 or stream_queue_events < 2:
            raise ConfigurationError("history_limit must be >= 1 and stream_queue_events >= 2")
        if profiling_limit < 1:
            raise ConfigurationError("profiling_limit must be >= 1")
        self._requested_address = address
        self._requested_token = token
        self.token: str | None = None
        self.server_id = uuid.uuid4().hex
        self.data_secret = secrets.token_hex(32)
        """Given to process connections (Welcome.data_secret) to authenticate their data links."""
        self.max_frame_size = max_frame_size
        self.max_message_size = max_message_size
        self.history_limit = history_limit
        self.stream_queue_events = stream_queue_events
        self.stream_queue_bytes = stream_queue_bytes
        self.max_pending_bytes = max_pending_bytes
        self.write_deadline = write_deadline
        self.handshake_timeout = handshake_timeout
        self.allow_remote_shutdown = allow_remote_shutdown
        self.profiling_limit = profiling_limit
        self.max_connections = max_connections
        self.frame_timeout = frame_timeout
        """Seconds a peer may leave a frame (or a chunked message) unfinished before it is closed."""
        self.auth_failures = AuthFailures()
        self.address: Address | None = None
        self.core = ServerCore(server_id=self.server_id, send_to_peer=self._send_to_peer)
        self._server: asyncio.base_events.Server | None = None
        self._peers: dict[Peer, asyncio.Task[None]] = {}
        self._peers_by_id: dict[str, Peer] = {}
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- running in the caller's event loop ------------------------------

    async def start(self) -> Address:
        """Bind and start accepting; return the bound address (port 0 resolved)."""
        if self._server is not None:
            raise ConfigurationError("this GraphServer is already running")
        addr = resolve_address(self._requested_address)
        self.token = resolve_token(self._requested_token)
        if self.token is None and not is_loopback_host(addr.host):
            raise ConfigurationError(
                f"refusing to listen on {addr} without a token: a non-loopback address needs "
                "--token TOKEN (or EZMSG_CONSOLE_TOKEN) so that only holders of the token can connect"
            )
        self.core = ServerCore(
            server_id=self.server_id,
            history_limit=self.history_limit,
            queue_events=self.stream_queue_events,
            queue_bytes=self.stream_queue_bytes,
            send_to_peer=self._send_to_peer,
            profiling_limit=self.profiling_limit,
            # a trace event must fit in one frame and in a subscriber's queue, with room to spare
            max_event_bytes=min(self.stream_queue_bytes, self.max_frame_size) // 2,
        )
        try:
            self._server = await asyncio.start_server(self._on_client, addr.host, addr.port, reuse_address=True,
                                                      backlog=min(self.max_connections, LISTEN_BACKLOG))
        except OSError as exc:
            raise _bind_error(addr, exc) from None
        port = self._server.sockets[0].getsockname()[1]
        self.address = Address(addr.host, port)
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        log.info("GraphServer listening on %s (epoch %s)", self.address, self.core.epoch)
        return self.address

    async def serve_forever(self) -> None:
        """Serve until :meth:`request_shutdown` (or SHUTDOWN from a peer), then close."""
        if self._stopped is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()
        await self.close()

    def request_shutdown(self) -> None:
        """Ask the server to stop; safe from any thread."""
        loop, stopped = self._loop, self._stopped
        if loop is None or stopped is None or loop.is_closed():
            return
        try:
            if threading.current_thread() is self._thread or _running_loop() is loop:
                stopped.set()
            else:
                loop.call_soon_threadsafe(stopped.set)
        except RuntimeError:  # loop already closed
            pass

    async def close(self) -> None:
        """Stop accepting, close every peer, and wait for them to finish."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for peer in list(self._peers):
            peer.close()
            peer.reader.feed_eof()
        tasks = list(self._peers.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.write_deadline + 1.0)
            for task in pending:
                task.cancel()
        self.core.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 2.0)
        except (TimeoutError, asyncio.TimeoutError):
            pass
        if self._stopped is not None:
            self._stopped.set()
        log.info("GraphServer on %s closed", self.address)

    async def __aenter__(self) -> GraphServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._peers) >= self.max_connections:
            await self._refuse(writer, TooManyConnections(
                f"the GraphServer is at its limit of {self.max_connections} connections (serve "
                "--max-connections); try again later", {"max_connections": self.max_connections}))
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = Peer(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._peers[peer] = task
        self._peers_by_id[peer.peer_id] = peer
        try:
            await peer.run()
        except ConsoleError as exc:
            log.info("peer %s ended: %s", peer.peer_address, exc)
        finally:
            self._peers.pop(peer, None)
            self._peers_by_id.pop(peer.peer_id, None)

    async def _refuse(self, writer: asyncio.StreamWriter, err: ConsoleError) -> None:
        """Tell a connection why it is refused (an ErrorReply frame, as in a handshake) and close it."""
        log.warning("refused a connection from %s: %s", writer.get_extra_info("peername"), err.message)
        try:
            writer.write(ProtocolConnection(Side.SERVER).send(
                m.ErrorReply(None, err.code, err.message, dict(err.details))))
            await asyncio.wait_for(writer.drain(), self.write_deadline)
        except (ConnectionError, OSError, TimeoutError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    def _send_to_peer(self, peer_id: str, msg: Message) -> bool:
        """Queue an unsolicited message (a routes update, a routed request) to one peer."""
        peer = self._peers_by_id.get(peer_id)
        return peer is not None and peer.queue_control(msg)

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    # -- running in a background thread ----------------------------------

    def start_in_thread(self, timeout: float = 5.0) -> Address:
        """Run the server on its own event loop in a daemon thread.

        Returns once it is listening; raises the start-up error otherwise.
        """
        if self._thread is not None:
            raise ConfigurationError("this GraphServer is already running in a thread")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            try:
                await self.start()
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                return
            finally:
                ready.set()
            await self.serve_forever()

        def runner() -> None:
            asyncio.run(main())

        self._thread = threading.Thread(target=runner, name="ezmsg-console-graphserver", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise ConfigurationError(f"GraphServer did not start within {timeout:.1f} s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise failure[0]
        assert self.address is not None
        return self.address

    def stop_thread(self, timeout: float = 5.0) -> None:
        """Stop a server started with :meth:`start_in_thread` and join its thread."""
        thread = self._thread
        if thread is None:
            return
        self.request_shutdown()
        thread.join(timeout)
        self._thread = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _bind_error(addr: Address, exc: OSError) -> ConfigurationError:
    if exc.errno == errno.EADDRINUSE:
        return ConfigurationError(
            f"address {addr} is already in use (another GraphServer?); choose another with --address HOST:PORT",
            {"address": str(addr)},
        )
    reason = exc.strerror or str(exc)
    return ConfigurationError(f"cannot listen on {addr}: {reason}", {"address": str(addr)})
