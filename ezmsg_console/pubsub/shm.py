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
    _posixshmem = None  # type: ignore[assignment]

PREFIX = "ezc_"
SHM_DIR = "/dev/shm"

NT_THRESHOLD_ENV = "EZMSG_CONSOLE_NT_THRESHOLD"
"""Bytes from which a worker's memcpy uses non-temporal stores; ``0`` leaves glibc's own choice."""
DEFAULT_NT_THRESHOLD = 512 * 1024
NT_TUNABLE = "glibc.cpu.x86_non_temporal_threshold"
GLIBC_MIN_NT_THRESHOLD = 0x4040  # glibc ignores smaller values


def worker_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for a new worker process, with glibc told to copy big buffers around the cache.

    Writing a 1 MiB message into a shared-memory slot with ordinary stores
    pulls source and destination through the core's caches (2 MiB here) and
    evicts the interpreter's own working set: the Python code that runs next
    (encoding, the header, the event loop) then runs from memory, several
    times slower. With non-temporal stores from :data:`DEFAULT_NT_THRESHOLD`
    bytes the destination bypasses the cache; on this project's 2-core VM a
    1 MiB publish went from ~120 to ~96 us and throughput rose ~40 %
    (``benchmarks/pubsub.py``). glibc reads the setting only when a process
    starts, so it is given to workers through their environment. Messages
    under the threshold are unaffected. ``EZMSG_CONSOLE_NT_THRESHOLD=0``
    turns this off; a threshold already in ``GLIBC_TUNABLES`` is kept.
    """
    env = dict(environ)
    raw = env.get(NT_THRESHOLD_ENV, "").strip()
    try:
        threshold = int(raw, 0) if raw else DEFAULT_NT_THRESHOLD
    except ValueError:
        raise ConfigurationError(f"{NT_THRESHOLD_ENV} must be a byte count (or 0 to turn it off), "
                                 f"not {raw!r}") from None
    if threshold <= 0:
        return env
    threshold = max(threshold, GLIBC_MIN_NT_THRESHOLD)
    tunables = env.get("GLIBC_TUNABLES", "")
    if NT_TUNABLE + "=" in tunables:
        return env
    setting = f"{NT_TUNABLE}={threshold:#x}"
    env["GLIBC_TUNABLES"] = f"{tunables}:{setting}" if tunables else setting
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
