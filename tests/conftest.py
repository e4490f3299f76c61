"""Shared fixtures: a real GraphServer on 127.0.0.1 port 0, contexts, a raw peer.

Every wait on a network event has a deadline derived from :data:`TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from ezmsg_console.client import GraphContext
from ezmsg_console.protocol import auth
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.address import Address
from ezmsg_console.protocol.connection import ProtocolConnection, Side
from ezmsg_console.protocol.wire import Message
from ezmsg_console.server import GraphServer

# Cached bytecode for this run, whatever the environment says (PYTHONDONTWRITEBYTECODE=1 on some
# machines, this CI's included): the suite starts ~150 Python processes (workers, CLI commands, demos)
# that import the package from the source tree, and without cached bytecode every one of them
# compiled it again: half the suite's CPU time (210 s -> 110 s). Set before xdist starts its workers.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

TIMEOUT_FACTOR = float(os.environ.get("EZMSG_CONSOLE_TEST_TIMEOUT_FACTOR", "1") or 1)
"""Scales every deadline of the suite (e.g. 3 on a slow or heavily shared machine)."""

TIMEOUT = 10.0 * TIMEOUT_FACTOR
"""The one deadline every test wait derives from (10 s times the factor)."""

FUZZ_SCALE = float(os.environ.get("EZMSG_CONSOLE_TEST_FUZZ_SCALE", "1") or 1)
"""Scales the example count of every property-based test (e.g. 10 for a deep run)."""


def fuzz_examples(n: int) -> int:
    """Hypothesis ``max_examples`` for a property test whose everyday count is ``n``."""
    return max(1, round(n * FUZZ_SCALE))


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for a server the test starts by address)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_address() -> str:
    return f"127.0.0.1:{free_port()}"


EZMSG_BACKEND_TESTS = "tests/ezmsg_backend/"

HEAVY_FIRST = (EZMSG_BACKEND_TESTS, "tests/tui/test_", "tests/export/test_headless", "tests/runtime/",
               "tests/server/test_large_graph",
               "tests/protocol/test_fuzz")
"""Module path prefixes whose modules run first under pytest-xdist (longest work first, so two
workers finish together instead of one running a long module alone at the end)."""


def xdist_scope(nodeid: str) -> str:
    """The unit of work pytest-xdist gives one worker: a test module (its module-scoped fixtures,
    e.g. a demo pipeline, start once), and all the ezmsg backend's modules together, because
    upstream names its shared memory at random and each module's clean-up removes the ezmsg
    segments that appeared during its run and that nobody maps."""
    module = nodeid.split("::", 1)[0]
    return EZMSG_BACKEND_TESTS if module.startswith(EZMSG_BACKEND_TESTS) else module


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` with :func:`xdist_scope` as the scope. (``--dist loadgroup`` with
    ``xdist_group`` marks no longer groups under pytest 9.2: xdist writes the group into a node
    id field pytest stopped reading, pytest-xdist issue 1386.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ModuleScheduling(config, log)


class _ScopeGuard:
    """In the pytest-xdist controller: fail the run when a unit of work (:func:`xdist_scope`) ran
    on more than one worker, so a scheduler that stops grouping is seen, not silently slower."""

    def __init__(self) -> None:
        self.workers: dict[str, set[str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        node = getattr(report, "node", None)  # the worker that ran it (set by xdist)
        if node is not None and report.when == "call":
            self.workers.setdefault(xdist_scope(report.nodeid), set()).add(str(node.gateway.id))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        split = sorted(scope for scope, workers in self.workers.items() if len(workers) > 1)
        if split:
            tw = session.config.get_terminal_writer()
            tw.line(f"xdist split these units of work between workers: {', '.join(split)}", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    if config.getvalue("dist") == "loadscope" and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_ScopeGuard(), "ezmsg-console-scope-guard")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The heavy modules first (a stable sort: the order inside a module is kept)."""
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(HEAVY_FIRST) if item.nodeid.startswith(prefix)), len(HEAVY_FIRST))

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def _no_env_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their own addresses and tokens."""
    monkeypatch.delenv("EZMSG_CONSOLE_ADDRESS", raising=False)
    monkeypatch.delenv("EZMSG_CONSOLE_TOKEN", raising=False)
    monkeypatch.delenv("EZMSG_GRAPHSERVER_ADDR", raising=False)


@pytest.fixture
async def server() -> AsyncIterator[GraphServer]:
    async with GraphServer("127.0.0.1:0") as srv:
        yield srv


ServerFactory = Callable[..., Awaitable[GraphServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start servers with custom options; all are closed at teardown."""
    started: list[GraphServer] = []

    async def factory(address: str = "127.0.0.1:0", **kwargs: Any) -> GraphServer:
        srv = GraphServer(address, **kwargs)
        await srv.start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        await srv.close()


CtxFactory = Callable[..., Awaitable[GraphContext]]


@pytest.fixture
async def make_ctx() -> AsyncIterator[CtxFactory]:
    """Open GraphContexts; all are closed at teardown."""
    opened: list[GraphContext] = []

    async def factory(address: Any, **kwargs: Any) -> GraphContext:
        kwargs.setdefault("timeout", TIMEOUT)
        ctx = GraphContext(address, **kwargs)
        await ctx.open()
        opened.append(ctx)
        return ctx

    yield factory
    for ctx in opened:
        await ctx.close()


class RawPeer:
    """A hand-driven client socket for protocol-level tests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = ProtocolConnection(Side.CLIENT)
        self.server_hello: m.ServerHello | None = None
        self._inbox: list[Message] = []

    @classmethod
    async def open(cls, address: Address, rcvbuf: int | None = None) -> RawPeer:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection(address.host, address.port)
        else:
            import socket

            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (address.host, address.port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
        return cls(reader, writer)

    async def recv(self, timeout: float = TIMEOUT) -> Message:
        while not self._inbox:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionResetError("server closed the connection")
            self._inbox.extend(self.conn.receive_data(data))
        return self._inbox.pop(0)

    async def handshake(self, *, token: str | None = None, role: m.Role = m.Role.SESSION,
                        name: str = "raw", version: int = m.PROTOCOL_VERSION,
                        client_nonce: str | None = None, proof: str | None = None) -> Message:
        hello = await self.recv()
        assert isinstance(hello, m.ServerHello)
        self.server_hello = hello
        nonce = client_nonce or auth.new_nonce()
        if proof is None and token is not None:
            proof = auth.client_proof(token, hello.nonce, nonce, role.value, name)
        self.send(m.Hello(version, role, name, nonce, proof))
        return await self.recv()

    def send(self, msg: Message) -> None:
        self.writer.write(self.conn.send(msg))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """Read until EOF; True if the server closed the connection in time."""
        async def drain() -> None:
            while await self.reader.read(65536):
                pass
        try:
            await asyncio.wait_for(drain(), timeout)
        except ConnectionResetError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)
        except (ConnectionError, OSError):
            pass


@pytest.fixture
async def raw_peer() -> AsyncIterator[Callable[..., Awaitable[RawPeer]]]:
    peers: list[RawPeer] = []

    async def factory(address: Address, **kwargs: Any) -> RawPeer:
        peer = await RawPeer.open(address, **kwargs)
        peers.append(peer)
        return peer

    yield factory
    for peer in peers:
        await peer.close()


class ServeProcess:
    """``ezmsg-console serve`` as a real subprocess."""

    LINE = re.compile(r"listening on (\S+):(\d+)")

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ezmsg_console", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.address: Address | None = None
        self.stdout_text = ""
        self.stderr_text = ""

    def wait_listening(self) -> Address:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""  # printed first, flushed
        match = self.LINE.search(line)
        if match is None:
            self.proc.kill()
            _out, err = self.proc.communicate(timeout=TIMEOUT)
            raise AssertionError(f"serve did not report an address: {line!r} {err!r}")
        self.address = Address(match.group(1), int(match.group(2)))
        return self.address

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Signal the process, wait for it, keep its remaining output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=TIMEOUT)
        self.stdout_text, self.stderr_text = out, err
        return self.proc.returncode


@pytest.fixture
def serve_process() -> Any:
    started: list[ServeProcess] = []

    def factory(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
        proc = ServeProcess(*args, env=env)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        if proc.proc.poll() is None:
            proc.stop(signal.SIGKILL)


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Poll ``predicate`` until true (for state with no event to await), bounded by ``timeout``."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    try:
        await asyncio.wait_for(poll(), timeout)
    except (TimeoutError, asyncio.TimeoutError):
        raise AssertionError(f"{what} did not become true within {timeout} s") from None


async def snapshot_when(ctx: GraphContext, ok: Callable[[Any], bool], what: str, *, timeout: float = TIMEOUT,
                        run: asyncio.Future[Any] | None = None) -> Any:
    """The first graph snapshot for which ``ok(snapshot)`` holds, checked now and again after
    each topology event (a process claiming units is one): awaited, not polled. Fails at once
    if ``run`` (the pipeline's task) ends first, with what it ended with."""
    async def wait() -> Any:
        async with ctx.subscribe_topology_events(after_seq=None) as events:  # before the first look
            while True:
                snap = await ctx.snapshot()
                if ok(snap):
                    return snap
                waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(events.next(timeout=None))}
                if run is not None:
                    waits.add(run)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for fut in waits - {run}:
                    fut.cancel()
                if run is not None and run in done:
                    raise AssertionError(f"the run ended before {what}: "
                                         f"{run.exception() or run.result()!r}")
    try:
        return await asyncio.wait_for(wait(), timeout)
    except (TimeoutError, asyncio.TimeoutError):
        raise AssertionError(f"{what} did not happen within {timeout} s") from None
