"""CPU, memory and uptime of a process on this host, read from ``/proc`` (Linux).

ezmsg 3.9's process stats carry only pid, host and units; for processes on the
console's own host the operating system knows the rest. Elsewhere (another
host, or no ``/proc``) nothing is added, and the console shows "n/a".
"""

from __future__ import annotations

import os
import time
from typing import Any


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


class CpuMeter:
    """CPU percent between two reads of the same pid (the first read of a pid reports none)."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (monotonic time, cpu seconds)
        self._ticks = _clock_ticks()
        self._boot = _boot_time()

    def read(self, pid: int) -> dict[str, Any]:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{pid}/statm") as fh:
                rss_pages = int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            self._last.pop(pid, None)
            return {}
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        try:
            cpu = (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime
            started = int(fields[19]) / self._ticks
        except (IndexError, ValueError):
            return {}
        now = time.monotonic()
        out: dict[str, Any] = {"memory_rss_bytes": rss_pages * os.sysconf("SC_PAGE_SIZE")}
        if self._boot is not None:
            out["uptime_s"] = max(0.0, time.time() - (self._boot + started))
        last = self._last.get(pid)
        self._last[pid] = (now, cpu)
        if last is not None and now > last[0]:
            out["cpu_percent"] = 100.0 * (cpu - last[1]) / (now - last[0])
        return out
