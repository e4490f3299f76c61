"""Fixtures running a real upstream ezmsg GraphServer and the upstream demo pipeline.

* ``ezmsg_server``: ``python -m ezmsg.core serve --address 127.0.0.1:PORT`` as a
  subprocess (own session), ready once it sends its version greeting.
* ``ezmsg_pipeline``: ``python -m ezmsg_console.ezmsg_backend.demo --address ...``
  (own session), ready once upstream's GraphContext shows every unit owned by a
  process and the dynamic-settings units in ``settings_snapshot()``.

Teardown stops each process tree (signal, grace period, SIGKILL), reaps every
process collected from it and removes ezmsg shared memory left behind. Every
wait is bounded by a deadline derived from :data:`TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

pytest.importorskip("ezmsg")
psutil = pytest.importorskip("psutil")

from ezmsg.core.graphcontext import GraphContext  # noqa: E402

from ..conftest import TIMEOUT  # noqa: E402

READY_TIMEOUT = 3 * TIMEOUT
"""Start-up deadline of the demo pipeline (four worker processes on a busy machine)."""
STOP_GRACE = TIMEOUT / 2
"""How long a signalled process tree may take to exit before it is SIGKILLed."""
POLL = 0.05

DEMO_MODULE = "ezmsg_console.ezmsg_backend.demo"
DEMO_UNITS = ["DEMO/GEN", "DEMO/FILTER", "DEMO/STATS", "DEMO/SINK"]
DEMO_DYNAMIC_UNITS = ["DEMO/GEN", "DEMO/FILTER"]
REPO_ROOT = Path(__file__).resolve().parents[2]
SHM_DIR = Path("/dev/shm")
_SCRUBBED_ENV = ("EZMSG_GRAPHSERVER_ADDR", "EZMSG_CONSOLE_ADDRESS", "EZMSG_CONSOLE_TOKEN",
                 "EZMSG_STRICT_SHUTDOWN")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(address: str) -> dict[str, str]:
    """The environment of every child: this one, pointed at ``address`` only."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["EZMSG_GRAPHSERVER_ADDR"] = address
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("closed before the greeting was complete")
        data += chunk
    return data


def read_greeting(host: str, port: int, timeout: float = 1.0) -> str:
    """Upstream's greeting: 8-byte little-endian uint64 length, then that many UTF-8 bytes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        size = int.from_bytes(_recv_exact(sock, 8), "little")
        if size > 256:
            raise ValueError(f"implausible greeting length {size}")
        return _recv_exact(sock, size).decode("utf-8")


def log_tail(path: Path, limit: int = 4000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-limit:]
    return ""


def _tree(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """``proc`` and its live descendants (psutil objects guard against pid reuse)."""
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session=True: pgid == pid


def _gone(proc: psutil.Process) -> bool:
    """Exited. A zombie counts: it holds no sockets or mappings any more, and an
    orphan's zombie lasts until init reaps it (which can take a second here)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` for all of ``procs`` to exit; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if not _gone(p)]
    return alive


def stop_tree(proc: subprocess.Popen[bytes], known: list[psutil.Process], sig: int,
              group: bool = True) -> None:
    """Send ``sig`` to ``proc``'s group (or to ``proc`` only), wait :data:`STOP_GRACE`,
    SIGKILL the group and whatever else is left, reap.

    ``known`` holds processes collected earlier (workers may have been
    reparented if the leader died first); all of them must be gone on return.
    """
    procs = {p.pid: p for p in [*known, *_tree(proc)]}
    if proc.poll() is None:
        if group:
            _signal_group(proc, sig)
        else:
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_GRACE)
    procs.update({p.pid: p for p in _tree(proc)})
    alive = _wait_gone(list(procs.values()), STOP_GRACE if proc.poll() is None else 1.0)
    if alive or proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        alive = _wait_gone(alive, TIMEOUT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(TIMEOUT)
    assert proc.poll() is not None, f"pid {proc.pid} survived SIGKILL"
    assert not alive, f"processes survived SIGKILL: {alive}"


def ezmsg_shm_segments() -> set[str]:
    """Segments in /dev/shm that look like upstream ezmsg's (``psm_*`` with its header:
    uint64 num_buffers, uint64 buf_size, and exactly that total size)."""
    found: set[str] = set()
    if not SHM_DIR.is_dir():
        return found
    for entry in SHM_DIR.glob("psm_*"):
        try:
            size = entry.stat().st_size
            with open(entry, "rb") as fh:
                header = fh.read(16)
        except OSError:
            continue
        if len(header) == 16:
            num, buf = int.from_bytes(header[:8], "little"), int.from_bytes(header[8:], "little")
            if 0 < num < 1 << 20 and 0 < buf < 1 << 40 and num * buf == size:
                found.add(entry.name)
    return found


def _mapped_shm() -> set[str]:
    """Names of /dev/shm segments some live process (that we may inspect) maps."""
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            for line in maps.read_text().splitlines():
                if "/dev/shm/" in line:
                    mapped.add(line.rsplit("/dev/shm/", 1)[1].split(" ")[0])
    return mapped


def cleanup_shm(before: set[str], what: str) -> list[str]:
    """Unlink ezmsg segments created since ``before`` that no live process maps."""
    leaked = sorted((ezmsg_shm_segments() - before) - _mapped_shm())
    for name in leaked:
        with contextlib.suppress(FileNotFoundError):
            (SHM_DIR / name).unlink()
    if leaked:
        warnings.warn(f"ezmsg shared memory unmapped but not unlinked after {what} "
                      f"(removed): {leaked}", stacklevel=2)
    return leaked


class EzmsgServer:
    """An upstream ``ezmsg.core serve`` subprocess on 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""
        self._procs: list[psutil.Process] = []
        self._log = open(log_path, "ab")  # noqa: SIM115 - open while the pipeline runs
        self.shm_before = ezmsg_shm_segments()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def graph_address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self, port: int | None = None, attempts: int = 5) -> None:
        """Start on ``port`` (retried until :data:`TIMEOUT`), or on a fresh free port
        (up to ``attempts`` ports); return once the greeting arrives."""
        deadline = time.monotonic() + TIMEOUT
        errors: list[str] = []
        tries = 0
        while time.monotonic() < deadline and (port is not None or tries < attempts):
            tries += 1
            self.port = free_port() if port is None else port
            if self._start_once(deadline):
                return
            errors.append(f"port {self.port}: rc={self.proc.returncode if self.proc else None}")
            time.sleep(POLL)
        raise RuntimeError(f"ezmsg GraphServer did not start ({errors}):\n{log_tail(self.log_path)}")

    def _start_once(self, deadline: float) -> bool:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ezmsg.core", "serve", "--address", self.address],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=child_env(self.address), cwd=self.log_path.parent, start_new_session=True,
        )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # e.g. the port was taken meanwhile
            try:
                version = read_greeting(self.host, self.port, timeout=min(1.0, TIMEOUT))
            except (OSError, ValueError):
                time.sleep(POLL)
                continue
            if not self._listening():  # not ours (yet): someone else answered on the port
                time.sleep(POLL)
                continue
            if self.proc.poll() is None:
                self.version = version
                self._procs = _tree(self.proc)
                return True
        self.kill()
        return False

    def _listening(self) -> bool:
        """Whether our server process holds the listening socket on :attr:`port`."""
        try:
            conns = psutil.Process(self.proc.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in conns)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the server (SIGKILL after a grace period) and reap its tree.

        Only the server gets ``sig``: its multiprocessing resource tracker then
        sees EOF and unlinks the server's shared memory, as after a real crash.
        """
        if self.proc is not None:
            stop_tree(self.proc, self._procs + _tree(self.proc), sig, group=False)
            self._procs = []

    def restart(self) -> None:
        """SIGKILL the server and start a new one on the same port."""
        self.kill(signal.SIGKILL)
        self.start(port=self.port)

    def close(self) -> None:
        try:
            self.kill()
        finally:
            self._log.close()
            cleanup_shm(self.shm_before, "stopping the ezmsg GraphServer")


class EzmsgPipeline:
    """The upstream demo pipeline as a subprocess, attached to ``server``."""

    def __init__(self, server: EzmsgServer, log_path: Path) -> None:
        self.server = server
        self.log_path = log_path
        self.units = list(DEMO_UNITS)
        self.dynamic_units = list(DEMO_DYNAMIC_UNITS)
        self.shm_before = ezmsg_shm_segments()
        self.processes: list[psutil.Process] = []
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", DEMO_MODULE, "--address", server.address],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=child_env(server.address), cwd=log_path.parent, start_new_session=True,
            )

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid != self.proc.pid]

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        try:
            await asyncio.wait_for(self._poll_ready(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise RuntimeError(
                f"ezmsg demo not ready within {timeout} s:\n{log_tail(self.log_path)}"
            ) from None
        self.processes = _tree(self.proc)

    async def _poll_ready(self) -> None:
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ezmsg demo exited with {self.proc.returncode}:\n{log_tail(self.log_path)}"
                )
            ctx = GraphContext(graph_address=self.server.graph_address, auto_start=False)
            try:
                await ctx.__aenter__()
            except OSError:
                await asyncio.sleep(POLL)
                continue
            try:
                while self.proc.poll() is None:
                    snap = await ctx.snapshot()
                    owned = {u for p in snap.processes.values() for u in p.units}
                    settings = await ctx.settings_snapshot()
                    if set(self.units) <= owned and set(self.dynamic_units) <= set(settings):
                        return
                    await asyncio.sleep(POLL)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ctx.__aexit__(None, None, None), TIMEOUT)

    def stop(self) -> None:
        """SIGINT the process group, SIGKILL it after a grace period, reap every worker."""
        stop_tree(self.proc, self.processes + _tree(self.proc), signal.SIGINT)
        # The server unlinks a segment once its last lease closes; give it a moment.
        deadline = time.monotonic() + TIMEOUT / 5
        while ezmsg_shm_segments() - self.shm_before - self.server.shm_before:
            if time.monotonic() > deadline or self.server.proc is None or self.server.proc.poll() is not None:
                break
            time.sleep(POLL)
        cleanup_shm(self.shm_before | self.server.shm_before, "stopping the ezmsg demo pipeline")


@pytest.fixture
def ezmsg_server(tmp_path: Path) -> Iterator[EzmsgServer]:
    """A running upstream GraphServer subprocess (``.host``, ``.port``, ``.address``,
    ``.graph_address``, ``.proc``, ``.version``, ``.restart()``)."""
    server = EzmsgServer(tmp_path / "ezmsg-server.log")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def ezmsg_pipeline(ezmsg_server: EzmsgServer, tmp_path: Path) -> AsyncIterator[EzmsgPipeline]:
    """The demo pipeline running against ``ezmsg_server`` (``.proc``, ``.units``,
    ``.dynamic_units``, ``.server``, ``.processes``, ``.worker_pids``, ``.log_path``)."""
    pipeline = EzmsgPipeline(ezmsg_server, tmp_path / "ezmsg-demo.log")
    try:
        await pipeline.wait_ready()
        yield pipeline
    finally:
        await asyncio.to_thread(pipeline.stop)


@pytest.fixture(scope="module")
def shared_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EzmsgPipeline]:
    """An ezmsg GraphServer and the demo pipeline for a whole module (tests that only read, or
    that read the current values before changing them)."""
    folder = tmp_path_factory.mktemp("ezmsg")
    server = EzmsgServer(folder / "ezmsg-server.log")
    try:
        server.start()
        pipeline = EzmsgPipeline(server, folder / "ezmsg-demo.log")
        try:
            asyncio.run(pipeline.wait_ready())
            yield pipeline
        finally:
            pipeline.stop()
    finally:
        server.close()
