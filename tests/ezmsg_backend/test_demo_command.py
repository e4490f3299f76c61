"""``ezmsg-console demo --ezmsg --headless``: a real ezmsg GraphServer and pipeline, summed up, all cleaned up."""

from __future__ import annotations

import re
import subprocess
import sys

import psutil
import pytest

from ..conftest import TIMEOUT, free_address
from .conftest import cleanup_shm, ezmsg_shm_segments

pytest.importorskip("ezmsg")


def test_headless_ezmsg_demo_runs_reports_and_cleans_up() -> None:
    before = ezmsg_shm_segments()
    address = free_address()
    result = subprocess.run([sys.executable, "-m", "ezmsg_console", "demo", "--ezmsg", "--headless", "--duration",
                             "2", "--address", address], capture_output=True, text=True, timeout=6 * TIMEOUT,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"GraphServer at {address}" in result.stdout and f"ezmsg-console --address {address}" in result.stdout
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.startswith("DEMO/")}
    assert set(rows) >= {"DEMO/GEN/OUTPUT", "DEMO/FILTER/OUTPUT", "DEMO/STATS/OUTPUT"}, result.stdout
    messages, rate, size = rows["DEMO/GEN/OUTPUT"]
    assert int(messages) > 0 and float(rate) > 0 and size == "n/a"
    port = address.rsplit(":", 1)[1]
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or ())
        if re.search(rf"--address \S*:{port}\b", cmdline) and proc.status() != psutil.STATUS_ZOMBIE:
            left.append(cmdline)
    assert left == []
    assert cleanup_shm(before, "the ezmsg demo command") == []
