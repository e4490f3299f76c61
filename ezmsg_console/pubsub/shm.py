"""POSIX shared-memory segments, named so that nothing of ours can leak.

Every segment is named ``ezc_<run>_<unique>``: ``<run>`` is chosen by the
runner (or per process when there is none), so the runner can sweep whatever
a crashed worker left behind with :func:`sweep`. Segments are created and
unlinked explicitly; we do not use :mod:`multiprocessing.shared_memory`,
whose resource tracker unlinks segments from the wrong process.
"""

from __future__ import annotations

import mmap
import os
import uuid
from typing import Mapping

from ..protocol.errors import ConfigurationError

try:  # CPython's own binding of shm_open/shm_unlink (used by multiprocessing)
    import _posixshmem
except ImportError:  # pragma: no cover - non-POSIX platforms
    _posixshmem = None

PREFIX = "ezc_"
SHM_DIR = "/dev/shm"

NT_THRESHOLD_ENV = "EZMSG_CONSOLE_NT_THRESHOLD"
"""Bytes from which a worker's memcpy uses non-temporal stores; ``0`` leaves glibc's own choice."""
GLIBC_TUNING_ENV = "EZMSG_CONSOLE_GLIBC_TUNING"
"""``0``: start workers with glibc's defaults (none of :func:`worker_environ`'s settings)."""
DEFAULT_NT_THRESHOLD = 512 * 1024
NT_TUNABLE = "glibc.cpu.x86_non_temporal_threshold"
GLIBC_MIN_NT_THRESHOLD = 0x4040  # glibc ignores smaller values
MALLOC_TUNABLES = (("glibc.malloc.mmap_threshold", 32 * 1024 * 1024),
                   ("glibc.malloc.trim_threshold", 64 * 1024 * 1024))


def worker_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for a new worker process, with glibc set up for streams of big messages.

    glibc reads these settings (``GLIBC_TUNABLES``) only when a process
    starts, so they are given to workers through their environment:

    * ``glibc.cpu.x86_non_temporal_threshold`` = 512 KiB: writing a 1 MiB
      message into a shared-memory slot with ordinary stores pulls source and
      destination through the core's caches and evicts the interpreter's own
      working set, so the Python code that runs next is several times slower.
      With non-temporal stores the destination bypasses the cache: on this
      project's 2-core VM a 1 MiB publish went from ~120 to ~96 us, and
      throughput rose ~40 % (``benchmarks/pubsub.py``);
    * ``glibc.malloc.mmap_threshold`` = 32 MiB and ``trim_threshold`` = 64 MiB:
      a subscriber that copies messages out (leaky, or ``zero_copy=False``)
      allocates a fresh array per message. By default glibc may serve each
      one with new pages from the kernel (a page fault per 4 KiB, ~500 us per
      MiB here) and hand them back on free; with these, freed memory (up to
      64 MiB) is kept and reused: 1 MiB copy-out went from ~2,100 to ~8,800
      messages/s.

    A setting already in ``GLIBC_TUNABLES`` is kept. ``EZMSG_CONSOLE_NT_THRESHOLD=BYTES``
    changes the first (``0``: leave it), ``EZMSG_CONSOLE_GLIBC_TUNING=0`` adds none.
    Other C libraries ignore the variable.
    """
    env = dict(environ)
    if env.get(GLIBC_TUNING_ENV, "").strip() == "0":
        return env
    raw = env.get(NT_THRESHOLD_ENV, "").strip()
    try:
        threshold = int(raw, 0) if raw else DEFAULT_NT_THRESHOLD
    except ValueError:
        raise ConfigurationError(f"{NT_THRESHOLD_ENV} must be a byte count (or 0 to turn it off), "
                                 f"not {raw!r}") from None
    wanted = list(MALLOC_TUNABLES)
    if threshold > 0:
        wanted.insert(0, (NT_TUNABLE, max(threshold, GLIBC_MIN_NT_THRESHOLD)))
    tunables = env.get("GLIBC_TUNABLES", "")
    present = {item.split("=", 1)[0] for item in tunables.split(":") if item}
    added = [f"{name}={value:#x}" for name, value in wanted if name not in present]
    if added:
        env["GLIBC_TUNABLES"] = ":".join(([tunables] if tunables else []) + added)
    return env


def new_name(run_tag: str) -> str:
    """A fresh segment name belonging to ``run_tag``."""
    return f"{PREFIX}{run_tag}_{uuid.uuid4().hex[:16]}"


class Segment:
    """A mapped shared-memory segment; ``buf`` is a writable memoryview of it."""

    def __init__(self, name: str, size: int, *, create: bool) -> None:
        if _posixshmem is None:  # pragma: no cover
            raise OSError("POSIX shared memory is not available on this platform")
        self.name = name
        self.owner = create
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = _posixshmem.shm_open("/" + name, flags, mode=0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            else:
                size = os.fstat(fd).st_size
            self.size = size
            self._mmap = mmap.mmap(fd, size)
        except BaseException:
            if create:
                _unlink(name)
            raise
        finally:
            os.close(fd)
        self.buf = memoryview(self._mmap)

    def close(self) -> None:
        """Unmap (and unlink, if we created it). Safe to call twice."""
        buf, self.buf = self.buf, memoryview(b"")
        buf.release()
        try:
            self._mmap.close()
        except BufferError:
            pass  # a view is still exported somewhere; the mapping goes with it
        if self.owner:
            self.owner = False
            _unlink(self.name)


def _unlink(name: str) -> None:
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        pass


def ours(run_tag: str | None = None) -> list[str]:
    """Names of existing segments of ours (of runs whose tag starts with ``run_tag``, if given)."""
    prefix = PREFIX if run_tag is None else f"{PREFIX}{run_tag}"
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(prefix))
    except FileNotFoundError:  # pragma: no cover - no /dev/shm on this platform
        return []


def sweep(run_tag: str) -> list[str]:
    """Unlink every segment a run left behind; returns their names."""
    names = ours(run_tag + "_")
    for name in names:
        _unlink(name)
    return names
