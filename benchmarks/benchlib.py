"""Helpers shared by the benchmark scripts: standard library only.

``upstream_ezmsg_pubsub.py`` runs in a separate virtual environment without
ezmsg_console, so nothing here may import the package (or numpy).
Child processes: the parent starts a script's ``--role`` child with
:func:`spawn`, reads its JSON event lines with :func:`expect`, tells it
``go`` on stdin, and :func:`reap` s it; a child whose stdin closes early
(the parent died) exits at once, so no benchmark process is ever orphaned.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

KIB, MIB = 1024, 1024 * 1024
UPSTREAM_PYTHON_ENV = "EZMSG_CONSOLE_UPSTREAM_PYTHON"
DEFAULT_UPSTREAM_PYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                       "ezmsg-venv", "bin", "python")
"""``ezmsg-venv`` beside the checkout (see benchmarks/UPSTREAM.md)."""


def upstream_python() -> str:
    """The interpreter that has upstream ezmsg: ``$EZMSG_CONSOLE_UPSTREAM_PYTHON``, else
    :data:`DEFAULT_UPSTREAM_PYTHON`."""
    return os.environ.get(UPSTREAM_PYTHON_ENV) or DEFAULT_UPSTREAM_PYTHON


def pct(samples: list[int], q: float) -> float | None:
    """Nearest-rank percentile, in us, of samples in ns."""
    if not samples:
        return None
    s = sorted(samples)
    idx = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[idx] / 1000.0


def label(nbytes: int) -> str:
    if nbytes >= MIB and nbytes % MIB == 0:
        return f"{nbytes // MIB} MiB"
    if nbytes >= KIB and nbytes % KIB == 0:
        return f"{nbytes // KIB} KiB"
    return f"{nbytes} B"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_cpu() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine so far (/proc/stat), None off Linux.
    Busy excludes steal: steal is time a virtual CPU wanted to run but the hypervisor ran
    something else, which shows up as stalls nobody on this machine caused."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / tick, (f[7] if len(f) > 7 else 0) / tick


def emit(obj: dict) -> None:
    """A child's event line to the parent."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class StdinControl:
    """In a child: reads the parent's commands; EOF on stdin (parent gone) ends the process,
    after ``on_orphan`` (e.g. removing the run's shared memory)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_orphan: Callable[[], Any] | None = None) -> None:
        self.loop = loop
        self.on_orphan = on_orphan
        self.go = asyncio.Event()
        self.finished = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                self.loop.call_soon_threadsafe(self.go.set)
        if not self.finished:
            try:
                if self.on_orphan is not None:
                    self.on_orphan()
            finally:
                os._exit(3)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    lines: queue.Queue[dict | None]
    errfile: Any

    def stderr_tail(self, n: int = 3000) -> str:
        try:
            self.errfile.flush()
            self.errfile.seek(0)
            return self.errfile.read()[-n:]
        except (OSError, ValueError):  # closed, or not readable any more
            return ""


def spawn(script: str, name: str, role: str, cfg: dict, registry: list[Child] | None = None,
          env: dict[str, str] | None = None) -> Child:
    """Start ``script --role ROLE --cfg JSON`` with this interpreter (and ``env``, default: ours);
    its JSON lines go to ``lines``."""
    errfile = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - the Child owns it
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(script), "--role", role, "--cfg", json.dumps(cfg)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile, text=True, bufsize=1, env=env,
    )
    lines: queue.Queue[dict | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                try:
                    lines.put(json.loads(line))
                except json.JSONDecodeError:
                    pass
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    child = Child(name, proc, lines, errfile)
    if registry is not None:
        registry.append(child)
    return child


def expect(child: Child, event: str, timeout: float) -> dict:
    try:
        msg = child.lines.get(timeout=timeout)
    except queue.Empty:
        raise RuntimeError(f"{child.name}: no '{event}' within {timeout:.0f}s\n{child.stderr_tail()}") from None
    if msg is None or msg.get("event") != event:
        raise RuntimeError(f"{child.name}: expected '{event}', got {msg!r}\n{child.stderr_tail()}")
    return msg


def reap(children: list[Child], timeout: float) -> list[str]:
    """Wait for children to exit; kill any that do not. Returns the problems seen."""
    problems = []
    deadline = time.monotonic() + timeout
    for c in children:
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()
            problems.append(f"{c.name} did not exit by itself (killed)")
    for c in children:
        tail = c.stderr_tail(1500).strip()
        if c.proc.returncode != 0:
            problems.append(f"{c.name} exited with {c.proc.returncode}" + (f": ...{tail[-600:]}" if tail else ""))
        elif tail:
            problems.append(f"{c.name} wrote to stderr: ...{tail[-600:]}")
        if c.proc.stdin:
            try:
                c.proc.stdin.close()
            except OSError:
                pass
        c.errfile.close()
    return problems


def report_cleanup(children: list[Child], strays: list[str], left: list[str], new_other: list[str],
                   run_tag: str, who: str) -> None:
    """Print what a benchmark run left behind: processes (``children`` not reaped, ``strays``),
    this run's shared-memory segments (``left``, already removed by the caller) and other
    ``ezc_`` segments that appeared meanwhile (``new_other``). ``who`` names the scripts."""
    unreaped = [c.name for c in children if c.proc.poll() is None]
    if strays or unreaped:
        print(f"processes: LEFT BEHIND: {strays + unreaped}")
    else:
        print(f"processes: all {len(children)} benchmark child processes exited and were reaped; "
              f"no stray --role process of {who} is running")
    if left:
        print(f"/dev/shm: LEFTOVER ezc_ segment(s) of this run (now removed): {left}")
    else:
        print(f"/dev/shm: no ezc_ segment of this run (ezc_{run_tag}_*) is left over")
    if new_other:
        print(f"/dev/shm: note: {len(new_other)} other ezc_ segment(s) appeared during the run, not ours "
              f"(another process on this machine?): {new_other[:5]}")


def cmdline(pid: int | str) -> str:
    """A process's command line (empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent_pid(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def stray_processes(script: str, run_tag: str, upstream_script: str) -> list[str]:
    """Benchmark children still alive: ``script``'s (this run's tag in their command line)
    and orphaned upstream children (a ``--role`` process of ``upstream_script`` whose parent
    is not that script any more). Other, concurrent benchmark runs are not counted."""
    me, upstream = os.path.basename(script), os.path.basename(upstream_script)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        cmd = cmdline(pid)
        if "--role" not in cmd:
            continue
        if me in cmd and f'"run_tag": "{run_tag}"' in cmd:
            found.append(f"{pid}: {cmd[:100]}")
        elif upstream in cmd and upstream not in cmdline(parent_pid(pid)):
            found.append(f"{pid} (orphan): {cmd[:100]}")
    return found


def finish_run(script: str, upstream_script: str, children: list[Child], run_tag: str,
               shm_before: set[str], who: str) -> None:
    """At the end of a run: find stray processes, remove this run's leftover shared memory
    and print both (:func:`report_cleanup`). ``shm_before``: our segments at the start."""
    from ezmsg_console.pubsub import shm  # not at import: the upstream scripts use this module too

    strays = stray_processes(script, run_tag, upstream_script)
    left = shm.ours(run_tag)
    new_other = sorted(set(shm.ours()) - shm_before - set(left))
    if left:
        shm.sweep(run_tag)
    report_cleanup(children, strays, left, new_other, run_tag, who)


def run_parent(parent: Callable[[], int], children: list[Child],
               interrupts: tuple[type[BaseException], ...]) -> int:
    """Run a benchmark's parent; on Ctrl+C (or one of ``interrupts``, which may carry a
    ``signum``) kill and reap every child first, and exit 128 + the signal number."""
    try:
        return parent()
    except (KeyboardInterrupt, *interrupts) as exc:
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait()
        print("interrupted; child processes reaped", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", 2))
