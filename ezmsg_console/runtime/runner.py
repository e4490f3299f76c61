"""``run()``: start a pipeline across worker processes and supervise it.

The runner finds (or starts, embedded) the GraphServer, registers the
session metadata and edges, and starts one worker process per group. It
then waits for the first of: every unit complete, a unit raising
``NormalTermination``, a unit failing, a worker dying, Ctrl+C/SIGTERM, or
``duration`` seconds. Shutdown is always the same: SIGTERM to every worker
(units' ``shutdown()`` hooks run), SIGKILL after ``grace`` seconds, then a
sweep of any shared-memory segment of this run a killed worker left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any, Iterable, Mapping

from ..client.context import GraphContext
from ..client.reconnect import retry_until_connected
from ..protocol.address import TOKEN_ENV
from ..protocol.errors import ConfigurationError, RunError
from ..pubsub import shm
from ..pubsub.host import RUN_TAG_ENV
from .assembly import Assembly, assemble
from .unit import Component
from .status import STATUS_FD_ENV, encode_spec

RUN_TAG_PREFIX_ENV = "EZMSG_CONSOLE_RUN_TAG_PREFIX"

WORKER_BOOT = ("import signal; signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT)); "
               "from ezmsg_console.runtime.worker import main; raise SystemExit(main())")
"""The worker's command (``python -c``): SIGTERM/SIGINT are blocked before anything is
imported, so threads started by imports (numpy's BLAS pool) never take them; the worker
unblocks them in its main thread once its loop handles them (see ``worker.Worker.run``)."""

log = logging.getLogger(__name__)


@dataclasses.dataclass
class WorkerState:
    group: str
    proc: asyncio.subprocess.Process
    units: list[str]
    registered: bool = False
    ready: bool = False
    exit_code: int | None = None
    stats: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunResult:
    """What happened: per-topic message and byte counts, errors, worker exit codes."""

    ok: bool
    reason: str
    duration: float
    topics: dict[str, dict[str, int]]
    errors: list[dict[str, Any]]
    exit_codes: dict[str, int | None]


class Runner:
    def __init__(self, components: dict[str, Component], *, address: Any = None, token: str | None = None,
                 duration: float | None = None, grace: float = 5.0, connections: tuple[tuple[Any, Any], ...] = (),
                 single_process: bool = False) -> None:
        self.components = components
        self.connections = connections
        self.single_process = single_process
        self.address = address
        self.token = token
        self.duration = duration
        self.grace = grace
        # An optional prefix (tests use one) lets a caller find this run's segments among others'.
        self.run_tag = os.environ.get(RUN_TAG_PREFIX_ENV, "") + uuid.uuid4().hex[:8]
        self.workers: list[WorkerState] = []
        self.errors: list[dict[str, Any]] = []
        self.reason = ""
        self._stop = asyncio.Event()
        self._forced = asyncio.Event()  # a second stop signal: no grace period, kill the workers
        self._progress = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self.ctx: GraphContext | None = None

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.reason = reason
            self._stop.set()
            self._progress.set()

    def _on_signal(self, name: str) -> None:
        """SIGINT/SIGTERM: the first stops the run cleanly; a second one, while it stops, kills
        the workers at once (their shared memory is swept as for any killed worker)."""
        if not self._stop.is_set():
            self.request_stop(f"signal {name}")
            log.warning("stopping the run (%s); %s again kills the workers at once", name,
                        "Ctrl+C" if name == "SIGINT" else name)
        elif not self._forced.is_set():
            self._forced.set()
            self.reason += f"; forced by a second {name}"
            log.warning("second %s: killing the workers now", name)

    async def run(self) -> RunResult:
        started = time.monotonic()
        assembly = assemble(self.components, connections=self.connections, single_process=self.single_process)
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, signal.Signals(sig).name)
        self.ctx = GraphContext(self.address, auto_start=True, token=self.token, name=f"runner:{os.getpid()}")
        await self.ctx.open()
        try:
            await self.ctx.register_metadata(assembly.metadata)
            for src, dst in assembly.edges:
                await self.ctx.connect(src, dst)
            await self._start_workers(assembly)
            if await self._barrier("registered", "link") and await self._barrier("ready", "start"):
                log.info("run %s started: %d worker(s)", self.run_tag, len(self.workers))
                keeper = asyncio.ensure_future(self._keep_connected(assembly))
                try:
                    await asyncio.wait_for(self._stop.wait(), self.duration)
                except (TimeoutError, asyncio.TimeoutError):
                    self.request_stop(f"duration of {self.duration:g} s reached")
                finally:
                    keeper.cancel()
        finally:
            await self._stop_workers()
            leftovers = shm.sweep(self.run_tag)
            if leftovers:
                log.warning("removed %d shared-memory segment(s) left by killed workers", len(leftovers))
            await self.ctx.close()
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        topics: dict[str, dict[str, int]] = {}
        for worker in self.workers:
            topics.update(worker.stats)
        return RunResult(
            ok=not self.errors,
            reason=self.reason,
            duration=time.monotonic() - started,
            topics=dict(sorted(topics.items())),
            errors=self.errors,
            exit_codes={w.group: w.exit_code for w in self.workers},
        )

    async def _keep_connected(self, assembly: Assembly) -> None:
        """If an external GraphServer restarts, declare the metadata and edges again."""
        while not self._stop.is_set():
            assert self.ctx is not None
            if self.ctx.embedded_server is not None:
                return  # our own server lives as long as we do
            await self.ctx.wait_disconnected()
            if self._stop.is_set():
                return
            log.warning("lost the GraphServer at %s; the pipeline keeps running, reconnecting", self.ctx.address)
            ctx = GraphContext(self.ctx.address, token=self.token, name=self.ctx.name)

            async def rejoin(ctx: GraphContext = ctx) -> GraphContext:  # this iteration's ctx
                await ctx.open()
                await ctx.register_metadata(assembly.metadata)
                for src, dst in assembly.edges:
                    await ctx.connect(src, dst)
                return ctx

            if await retry_until_connected(rejoin, self._stop, "runner") is None:
                await ctx.close()
                return
            old, self.ctx = self.ctx, ctx
            await old.close()
            log.warning("rejoined the GraphServer at %s (epoch %s)", ctx.address, ctx.server_epoch)

    async def _barrier(self, flag: str, command: str) -> bool:
        """Wait until every worker has reported ``flag``, then send it ``command``.
        False if the run is stopping instead."""
        while not all(getattr(w, flag) for w in self.workers):
            if self._stop.is_set():
                return False
            self._progress.clear()
            await self._progress.wait()
        for worker in self.workers:
            assert worker.proc.stdin is not None
            worker.proc.stdin.write(f"{command}\n".encode())
        return not self._stop.is_set()

    async def _start_workers(self, assembly: Assembly) -> None:
        assert self.ctx is not None and self.ctx.address is not None
        base_env = shm.worker_environ(os.environ)
        for group, units in assembly.groups:
            spec = {
                "run_tag": self.run_tag,
                "group": group,
                "graph_address": str(self.ctx.address),
                "main_script": assembly.main_script,
                "sys_path": [p for p in sys.path if p],
                "units": [dataclasses.asdict(u) for u in units],
            }
            read_fd, write_fd = os.pipe()
            env = {**base_env, STATUS_FD_ENV: str(write_fd), RUN_TAG_ENV: self.run_tag}
            if self.token:
                env[TOKEN_ENV] = self.token
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", WORKER_BOOT,
                    stdin=asyncio.subprocess.PIPE, pass_fds=(write_fd,), env=env, start_new_session=True,
                )
            finally:
                os.close(write_fd)
            state = WorkerState(group, proc, [u.address for u in units])
            self.workers.append(state)
            assert proc.stdin is not None
            proc.stdin.write(encode_spec(spec))  # stdin stays open: commands follow
            watcher = asyncio.ensure_future(self._watch(state, read_fd))
            self._watchers.add(watcher)  # the loop keeps only weak references to tasks

    async def _watch(self, state: WorkerState, read_fd: int) -> None:
        """Follow one worker's status lines until it exits."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(read_fd, "rb"))
        try:
            while line := await reader.readline():
                self._on_status(state, line)
        finally:
            transport.close()
            state.exit_code = await state.proc.wait()
            self._progress.set()
            if state.exit_code != 0 and not self._stop.is_set():
                if not any(e.get("group") == state.group for e in self.errors):
                    self.errors.append({"group": state.group, "unit": None,
                                        "error": f"worker {state.group} exited with code {state.exit_code}"})
                self.request_stop(f"worker {state.group} failed")
            elif all(w.exit_code is not None for w in self.workers):
                self.request_stop("every unit completed")

    def _on_status(self, state: WorkerState, line: bytes) -> None:
        try:
            status = json.loads(line)
        except ValueError:
            return
        event = status.get("event")
        self._progress.set()
        if event == "registered":
            state.registered = True
        elif event == "ready":
            state.ready = True
        elif event == "error":
            self.errors.append({"group": state.group, "unit": status.get("unit"), "error": status.get("error"),
                                "traceback": status.get("traceback", "")})
            where = status.get("unit") or f"worker {state.group}"
            self.request_stop(f"{where} failed: {status.get('error')}")
        elif event == "terminate":
            self.request_stop(f"{status.get('unit')} requested termination")
        elif event == "stats":
            state.stats = status.get("topics", {})

    async def _stop_workers(self) -> None:
        live = [w for w in self.workers if w.proc.returncode is None]
        for worker in live:
            try:
                worker.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        for worker in self.workers:  # after the signal: EOF alone means "the runner died"
            if worker.proc.stdin is not None and not worker.proc.stdin.is_closing():
                worker.proc.stdin.close()
        if live:
            exits = [asyncio.ensure_future(w.proc.wait()) for w in live]
            forced = asyncio.ensure_future(self._forced.wait())
            await asyncio.wait([forced, asyncio.ensure_future(asyncio.wait(exits))], timeout=self.grace,
                               return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            for worker in live:
                if worker.proc.returncode is None:
                    if self._forced.is_set():
                        log.warning("killing worker %s", worker.group)
                    else:
                        log.warning("worker %s did not stop within %.1f s; killing it", worker.group, self.grace)
                    worker.proc.kill()
            for worker in live:
                await worker.proc.wait()
        if self._watchers:  # let the watchers read the workers' last status lines
            await asyncio.wait(self._watchers, timeout=1.0 if self._forced.is_set() else self.grace)


def _components(roots: tuple[Component, ...], name: str | None, named: dict[str, Component],
                components: Mapping[str, Component] | None) -> dict[str, Component]:
    found = dict(components or {})
    for key, comp in named.items():
        if key in found:
            raise ConfigurationError(f"two components named {key}")
        found[key] = comp
    if len(roots) > 1 and name is not None:
        raise ConfigurationError("name= only applies to a single positional component")
    for comp in roots:
        key = name or type(comp).__name__.upper()
        if key in found:
            raise ConfigurationError(f"two components named {key}; pass them as keyword arguments")
        found[key] = comp
    return found


async def run_async(*roots: Component, name: str | None = None, address: Any = None,
                    token: str | None = None, duration: float | None = None, grace: float = 5.0,
                    raise_on_error: bool = True, components: Mapping[str, Component] | None = None,
                    connections: Iterable[tuple[Any, Any]] | None = None, graph_address: Any = None,
                    force_single_process: bool = False, **named: Component) -> RunResult:
    """The async form of :func:`run`, for callers already inside an event loop."""
    if graph_address is not None:
        if address is not None and address != graph_address:
            raise ConfigurationError("address= and graph_address= name the same thing; give one")
        address = graph_address
    runner = Runner(_components(roots, name, named, components), address=address, token=token, duration=duration,
                    grace=grace, connections=tuple(connections or ()), single_process=force_single_process)
    result = await runner.run()
    if raise_on_error and result.errors:
        first = result.errors[0]
        where = first.get("unit") or f"worker {first.get('group')}"
        raise RunError(f"{where} failed: {first.get('error')}", {"errors": result.errors, "result": result.topics})
    return result


def run(*roots: Component, name: str | None = None, address: Any = None, token: str | None = None,
        duration: float | None = None, grace: float = 5.0, raise_on_error: bool = True,
        components: Mapping[str, Component] | None = None, connections: Iterable[tuple[Any, Any]] | None = None,
        graph_address: Any = None, force_single_process: bool = False, **named: Component) -> RunResult:
    """Run components across worker processes until they finish (see the module doc).

    ``run(SYS=MySystem())`` names the root ``SYS``; so does ezmsg's form
    ``run(components={"SYS": MySystem()}, connections=((a.OUTPUT, "TOPIC"), ...))``, whose
    ``connections`` add edges (streams or topic strings) to the roots' own networks.
    ``address`` (or ezmsg's ``graph_address``) finds the GraphServer (one is started,
    embedded, if none answers). ``force_single_process=True`` runs every unit in one worker
    process (the runner stays a process of its own, so Ctrl+C and clean-up work as always).
    Raises RunError (after a clean shutdown) when a unit failed, unless ``raise_on_error=False``.
    """
    return asyncio.run(run_async(*roots, name=name, address=address, token=token, duration=duration,
                                 grace=grace, raise_on_error=raise_on_error, components=components,
                                 connections=connections, graph_address=graph_address,
                                 force_single_process=force_single_process, **named))
