"""``ezmsg-console demo --ezmsg``: a real ezmsg GraphServer and the ezmsg demo pipeline, as subprocesses.

:class:`EzmsgDemo` starts ``python -m ezmsg.core serve`` (on ezmsg's default
address if it is free, else on a free port) and then
``python -m ezmsg_console.ezmsg_backend.demo`` joined to it, each in its own
process group, and waits until every demo unit is owned by a worker process.
:meth:`EzmsgDemo.stop` stops the pipeline (SIGINT, then SIGKILL after a grace
period), then the server. The console treats it like its own embedded demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

from ..client.source import Backend, ezmsg_address, probe
from ..protocol.address import Address
from ..protocol.errors import ConsoleError, ServerUnreachable

log = logging.getLogger(__name__)

DEMO_UNITS = ("DEMO/GEN", "DEMO/FILTER", "DEMO/STATS", "DEMO/SINK")
START_TIMEOUT = 30.0
STOP_GRACE = 5.0
POLL = 0.05


class DemoFailed(ConsoleError):
    """The ezmsg demo pipeline or its GraphServer did not start."""


def _port_free(address: Address) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: TIME_WAIT is no obstacle
        try:
            sock.bind((address.host, address.port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _stop_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the console dies, however it dies, so a
    killed console leaves no ezmsg server or pipeline behind. Elsewhere: nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


PR_SET_PDEATHSIG = 1


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT ``proc``'s process group, SIGKILL it after :data:`STOP_GRACE`, and reap ``proc``."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_GRACE)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # any worker left in the group


class EzmsgDemo:
    """An ezmsg GraphServer and a pipeline on it (by default the ezmsg demo): ``start()`` returns
    the server's address once every unit in ``units`` runs."""

    backend = Backend.EZMSG
    LABEL = "ezmsg demo"  # what the console header calls it

    def __init__(self, address: Address | None = None, *, pipeline: list[str] | None = None,
                 units: tuple[str, ...] = DEMO_UNITS) -> None:
        """``pipeline``: the command that runs the pipeline (``--address HOST:PORT`` is appended;
        default the ezmsg demo); ``units``: the addresses that must be running before ``start`` returns."""
        self.requested = address
        self.pipeline_argv = pipeline or [sys.executable, "-m", "ezmsg_console.ezmsg_backend.demo"]
        self.units = units
        self.address: Address | None = None
        self.version = ""
        self.server: subprocess.Popen[bytes] | None = None
        self.pipeline: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the demo

    # -- starting ------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> Address:
        deadline = time.monotonic() + timeout
        try:
            self._start_server(deadline)
            assert self.address is not None
            self.pipeline = self._spawn([*self.pipeline_argv, "--address", str(self.address)])
            asyncio.run(self._wait_owned(deadline))
        except BaseException:
            self.stop()
            raise
        return self.address

    def _start_server(self, deadline: float) -> None:
        wanted = self.requested or ezmsg_address()
        candidates = [wanted] if _port_free(wanted) else []
        candidates += [Address(wanted.host, _free_port(wanted.host)) for _ in range(3)]
        for address in candidates:
            self.server = self._spawn([sys.executable, "-m", "ezmsg.core", "serve", "--address", str(address)])
            while time.monotonic() < deadline and self.server.poll() is None:
                found = asyncio.run(probe(address, timeout=1.0))
                if found.backend is Backend.EZMSG:
                    self.address, self.version = address, found.version
                    return
                time.sleep(POLL)
            stop_process_group(self.server)  # the port was taken meanwhile, or it never answered
            self.server = None
            if time.monotonic() >= deadline:
                break
        raise DemoFailed(f"the ezmsg GraphServer did not start ({self.output_tail()})")

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if self.address is not None:
            env["EZMSG_GRAPHSERVER_ADDR"] = str(self.address)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, preexec_fn=_stop_with_parent)

    async def _wait_owned(self, deadline: float) -> None:
        from .source import EzmsgSource

        assert self.address is not None
        source = EzmsgSource(self.address, name="ezmsg-console demo", timeout=5.0, version=self.version)
        await source.open()
        try:
            while True:
                if self.pipeline is not None and self.pipeline.poll() is not None:
                    raise DemoFailed(f"the ezmsg demo pipeline exited with code {self.pipeline.returncode} "
                                     f"({self.output_tail()})")
                snap = await source.snapshot()
                owned = {u for p in snap.processes for u in p.units}
                if set(self.units) <= owned:
                    return
                if time.monotonic() >= deadline:
                    raise DemoFailed(f"the ezmsg demo pipeline did not start within the deadline "
                                     f"(running: {', '.join(sorted(owned)) or 'none'})")
                await asyncio.sleep(0.1)
        finally:
            await source.close()

    # -- stopping ------------------------------------------------------------

    def running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.server, self.pipeline))

    def stop(self) -> None:
        """Stop the pipeline, then the server (idempotent)."""
        for proc in (self.pipeline, self.server):
            if proc is not None:
                stop_process_group(proc)
        self.pipeline = self.server = None
        with contextlib.suppress(OSError):
            self._log.close()

    def output_tail(self, limit: int = 400) -> str:
        """The last lines the server and pipeline printed (for an error message)."""
        try:
            self._log.seek(0)
            text = self._log.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return "no output"
        tail = " | ".join(text.splitlines()[-3:])
        return tail[-limit:] or "no output"


async def topic_counts(address: Address, version: str = "") -> dict[str, dict[str, Any]]:
    """Messages published per topic so far (upstream counts no bytes: None)."""
    from .source import EzmsgSource

    source = EzmsgSource(address, name="ezmsg-console demo", timeout=5.0, version=version)
    try:
        await source.open()
    except OSError as exc:
        raise ServerUnreachable(f"the ezmsg demo's GraphServer at {address} went away ({exc})") from None
    try:
        results = await source.profiling_snapshot_all(timeout_per_process=2.0)
    finally:
        await source.close()
    topics: dict[str, dict[str, Any]] = {}
    for snap in results.values():
        for pub in getattr(snap, "publishers", ()):
            entry = topics.setdefault(pub.topic, {"messages": 0, "bytes": None})
            entry["messages"] += pub.messages_published_total
    return topics
