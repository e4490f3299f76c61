"""Workers start with glibc set up for big messages (pubsub.shm.worker_environ)."""

from __future__ import annotations

import os
import platform
import subprocess

import pytest

from ezmsg_console.protocol.errors import ConfigurationError
from ezmsg_console.pubsub.shm import GLIBC_TUNING_ENV, NT_THRESHOLD_ENV, NT_TUNABLE, worker_environ

from ..conftest import TIMEOUT

LD_SO = "/lib64/ld-linux-x86-64.so.2"
MALLOC = "glibc.malloc.mmap_threshold=0x2000000:glibc.malloc.trim_threshold=0x4000000"


def test_the_defaults_are_added_and_the_rest_kept() -> None:
    env = worker_environ({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": f"{NT_TUNABLE}=0x80000:{MALLOC}"}
    env = worker_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{NT_TUNABLE}=0x80000:{MALLOC}"


def test_a_users_own_settings_win_and_the_switches_work() -> None:
    mine = f"{NT_TUNABLE}=0x100000:glibc.malloc.trim_threshold=0"
    assert worker_environ({"GLIBC_TUNABLES": mine})["GLIBC_TUNABLES"] == \
        mine + ":glibc.malloc.mmap_threshold=0x2000000"
    assert worker_environ({NT_THRESHOLD_ENV: "0"})["GLIBC_TUNABLES"] == MALLOC
    assert worker_environ({NT_THRESHOLD_ENV: "2097152"})["GLIBC_TUNABLES"] == f"{NT_TUNABLE}=0x200000:{MALLOC}"
    assert worker_environ({NT_THRESHOLD_ENV: "16"})["GLIBC_TUNABLES"].startswith(f"{NT_TUNABLE}=0x4040:")
    assert "GLIBC_TUNABLES" not in worker_environ({GLIBC_TUNING_ENV: "0"})
    with pytest.raises(ConfigurationError, match=NT_THRESHOLD_ENV):
        worker_environ({NT_THRESHOLD_ENV: "lots"})


@pytest.mark.skipif(platform.machine() != "x86_64" or not os.path.exists(LD_SO), reason="x86-64 glibc tunables")
def test_glibc_accepts_the_settings() -> None:
    """The dynamic loader of this machine reads the tunables as we write them."""
    out = subprocess.run([LD_SO, "--list-tunables"], env=worker_environ({}), capture_output=True, text=True,
                         timeout=3 * TIMEOUT)
    if out.returncode != 0:
        pytest.skip("this glibc cannot list its tunables")
    values = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    assert values[NT_TUNABLE].split()[0] == "0x80000"
    assert values["glibc.malloc.mmap_threshold"].split()[0] == "0x2000000"
    assert values["glibc.malloc.trim_threshold"].split()[0] == "0x4000000"
