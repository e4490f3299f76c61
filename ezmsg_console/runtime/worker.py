"""Worker process main: ``python -m ezmsg_console.runtime.worker``.

The runner starts one worker per process group and writes its spec (plain
msgpack, never pickle) to the worker's stdin. The worker imports the unit
classes, connects to the GraphServer, sets up every endpoint, runs the units,
and reports to the runner as JSON lines on the status pipe:
``ready``, ``error`` (unit address, message, traceback), ``terminate``
(a unit raised NormalTermination), ``stats`` and ``done``.

It stops on SIGTERM/SIGINT, when its parent dies (Linux parent-death
signal), when every unit has completed, or when a unit fails; in every case
the units' ``shutdown()`` hooks run and every shared-memory segment is
unlinked before it exits.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import importlib.util
import logging
import os
import signal
import sys
import traceback
from typing import Any

from ..client.connection import ClientConnection
from ..protocol import messages as m
from ..protocol.address import parse_address, resolve_token
from ..protocol.errors import ConsoleError
from ..client.reconnect import retry_until_connected
from ..pubsub.host import EndpointHost
from ..settings.values import from_plain
from .loop import run_loop
from .process_control import ProcessControlClient
from .profiling_ops import ProfilingOps
from .settings_ops import SettingsOps
from .status import EXIT_OK, EXIT_STARTUP, EXIT_UNIT_ERROR, STATUS_FD_ENV, StatusPipe, read_spec
from .unit import NormalTermination, Unit
from .unit_runner import UnitRunner

log = logging.getLogger("ezmsg_console.worker")

MAIN_MODULE = "__ezc_main__"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DRAIN_TIMEOUT = 2.0


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the runner dies, so no worker is orphaned."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def resolve_class(path: str, main_script: str | None) -> type:
    module_name, _, qualname = path.partition(":")
    if module_name == "__main__":
        module = sys.modules.get(MAIN_MODULE)
        if module is None:
            if not main_script:
                raise ConsoleError(f"cannot import {path}: no main script")
            spec = importlib.util.spec_from_file_location(MAIN_MODULE, main_script)
            if spec is None or spec.loader is None:
                raise ConsoleError(f"cannot load {main_script}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[MAIN_MODULE] = module
            spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ConsoleError(f"{path} is not a class")
    return obj


def _ended_by_exception(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


class Worker:
    def __init__(self, spec: dict[str, Any], status: StatusPipe) -> None:
        self.spec = spec
        self.status = status
        self.runners: list[UnitRunner] = []
        self.stop_event = asyncio.Event()
        self.exit_code = EXIT_OK
        self.host: EndpointHost | None = None
        self.control: ProcessControlClient | None = None
        self.settings_ops: SettingsOps | None = None
        self.profiling_ops: ProfilingOps | None = None
        self.conn: ClientConnection | None = None

    def build_units(self) -> list[Unit]:
        units = []
        for entry in self.spec["units"]:
            cls = resolve_class(entry["class_path"], self.spec.get("main_script"))
            settings_type = cls.settings_type()  # type: ignore[attr-defined]
            settings = entry.get("settings")
            value = from_plain(settings_type, settings) if settings_type is not None and settings is not None else None
            unit = cls(value) if value is not None else cls()
            unit.address = entry["address"]
            units.append(unit)
        return units

    def _task_exit(self, runner: UnitRunner, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if self.stop_event.is_set():
            if exc is not None and not isinstance(exc, NormalTermination):  # raised while being stopped
                log.error("unit %s raised while stopping, in %s: %s: %s", runner.address, task.get_name(),
                          type(exc).__name__, exc, exc_info=exc)
            return
        if isinstance(exc, NormalTermination):
            self.status.send("terminate", unit=runner.address)
            self.stop_event.set()
        elif exc is not None:
            text = "".join(traceback.format_exception(exc))
            log.error("unit %s failed in %s: %s: %s", runner.address, task.get_name(), type(exc).__name__, exc)
            self.status.send("error", unit=runner.address, error=f"{type(exc).__name__}: {exc}", traceback=text)
            self.exit_code = EXIT_UNIT_ERROR
            self.stop_event.set()
        elif all(r.complete for r in self.runners) and not any(_ended_by_exception(t) for r in self.runners
                                                                   for t in r.tasks):
            # Every task is done, none with an error still to report: a failure that ended in the
            # same loop iteration as this completion has its own callback after this one.
            self.stop_event.set()

    async def _command(self, commands: asyncio.StreamReader, expected: str) -> bool:
        """Wait for the runner's next command; False if the runner is gone or we must stop."""
        read = asyncio.ensure_future(commands.readline())
        stop = asyncio.ensure_future(self.stop_event.wait())
        await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not read.done():
            read.cancel()
            return False
        line = read.result().strip().decode()
        if line != expected:
            if not line:
                log.warning("the runner went away; stopping")
            self.stop_event.set()
            return False
        return True

    async def run(self, commands: asyncio.StreamReader) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop_event.set)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked from birth (see runner.WORKER_BOOT)
        address = parse_address(self.spec["graph_address"])
        units = self.build_units()
        self.conn = await ClientConnection.open(address, role=m.Role.PROCESS, name=f"worker:{self.spec['group']}",
                                                token=resolve_token(None), timeout=10.0)
        self.host = EndpointHost(self.conn, run_tag=self.spec["run_tag"])
        self.control = ProcessControlClient(self.conn, stats=self.stats)
        try:
            self.settings_ops = SettingsOps(self.control, self.host)
            self.settings_ops.expect([u.address for u in units])  # requests may come as soon as we claim them
            self.profiling_ops = ProfilingOps(self.control, self.host)  # so may profiling polls (a console's)
            await self.control.register([u.address for u in units])
            await self.host.start()
            self.runners = [UnitRunner(u, self.host) for u in units]
            for runner in self.runners:
                await runner.setup()
                await self.settings_ops.add(runner)
            for runner in self.runners:
                result = runner.unit.initialize()
                if asyncio.iscoroutine(result):
                    await result
            # Start barrier: every worker registers its endpoints, then every
            # worker links to its publishers, then all units start together,
            # so no message is published before its subscribers are wired.
            self.status.send("registered", pid=os.getpid(), units=[r.address for r in self.runners])
            if await self._command(commands, "link"):
                await self.conn.request(m.SyncRequest, m.Ack, 10.0)  # routes pushed so far have arrived
                await self.host.settle()
                self.status.send("ready")
                if await self._command(commands, "start"):
                    for runner in self.runners:
                        runner.start(self._task_exit)
                    if not any(r.tasks for r in self.runners):
                        self.stop_event.set()
                    watcher = asyncio.ensure_future(self._watch_runner(commands))
                    keeper = asyncio.ensure_future(self._keep_connected(address))
                    await self.stop_event.wait()
                    watcher.cancel()
                    keeper.cancel()
        finally:
            await self.shutdown()
            _ignore_stop_signals(loop)
        return self.exit_code

    async def _keep_connected(self, address: Any) -> None:
        """If the GraphServer goes away, keep running and rejoin it when it is back."""
        while not self.stop_event.is_set():
            assert self.conn is not None and self.control is not None and self.host is not None
            await self.conn.wait_closed()
            if self.stop_event.is_set():
                return
            log.warning("lost the GraphServer at %s (%s); units keep running, reconnecting",
                        address, self.conn.close_error)
            new = await retry_until_connected(
                lambda: ClientConnection.open(address, role=m.Role.PROCESS, name=f"worker:{self.spec['group']}",
                                              token=resolve_token(None), timeout=5.0),
                self.stop_event, f"worker {self.spec['group']}")
            if new is None:
                return
            try:
                await self.control.rejoin(new)
                await self.host.rejoin(new)
                if self.settings_ops is not None:
                    await self.settings_ops.report_all()
            except ConsoleError as exc:
                log.warning("rejoining the GraphServer failed (%s); retrying", exc)
                await new.close()
                continue
            self.conn = new
            log.warning("rejoined the GraphServer at %s (epoch %s) as process %s", address,
                        new.welcome.server_epoch, new.welcome.peer_id)

    async def _watch_runner(self, commands: asyncio.StreamReader) -> None:
        """The command pipe closing means the runner is gone: stop."""
        await commands.read()
        if not self.stop_event.is_set():
            await asyncio.sleep(0.2)  # a SIGTERM sent just before the EOF may still be on its way
        if not self.stop_event.is_set():
            log.warning("the runner went away; stopping")
            self.stop_event.set()

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for runner in self.runners:
            for pub in runner.publishers.values():
                out[pub.topic] = {"messages": pub.msg_id, "bytes": pub.bytes_sent}
        return out

    async def shutdown(self) -> None:
        for runner in self.runners:
            await runner.stop()
        for runner in self.runners:  # let what is in flight reach the subscribers
            for pub in runner.publishers.values():
                await pub.drain(DRAIN_TIMEOUT)
        self.status.send("stats", topics=self.stats())
        if self.profiling_ops is not None:
            await self.profiling_ops.close()
        if self.control is not None:
            await self.control.close()
        if self.host is not None:
            await self.host.close()
        if self.conn is not None:
            await self.conn.close()


async def _amain(status: StatusPipe) -> int:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin.buffer)
    spec = await read_spec(commands)
    for path in reversed(spec.get("sys_path", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    return await Worker(spec, status).run(commands)


def _ignore_stop_signals(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """We are exiting anyway: a late SIGTERM from the runner (sent when the run stops,
    so it often lands just as we finish) must not turn a clean exit into death-by-signal.

    ``loop.remove_signal_handler()`` (also run by ``loop.close()``) restores SIG_DFL
    before we can ignore the signal; a SIGTERM in that gap killed the worker (exit -15),
    even with it blocked in this thread, as another thread (numpy's BLAS pool) took it.
    So the signals stay blocked here while the loop lets go of them; the threads
    started while importing were born with them blocked (``runner.WORKER_BOOT``).
    A pending one is dropped when it becomes ignored.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for sig in STOP_SIGNALS:
        if loop is not None:
            loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


def main() -> int:
    _die_with_parent()
    logging.basicConfig(level=os.environ.get("EZMSG_CONSOLE_LOG", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    fd = os.environ.get(STATUS_FD_ENV)
    status = StatusPipe(os.fdopen(int(fd), "w") if fd else None)
    try:
        try:
            code = run_loop(_amain(status))  # uvloop when installed (see runtime.loop)
        finally:
            _ignore_stop_signals()  # also when the run failed before its own clean-up
    except KeyboardInterrupt:
        code = EXIT_OK
    except Exception as exc:  # noqa: BLE001 - reported to the runner, then a clean exit code
        status.send("error", unit=None, error=f"{type(exc).__name__}: {exc}",
                    traceback="".join(traceback.format_exception(exc)))
        log.error("worker failed: %s: %s", type(exc).__name__, exc)
        code = EXIT_STARTUP
    status.send("done", code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
