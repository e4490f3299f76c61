"""Workers start with glibc told to copy big messages with non-temporal stores (pubsub.shm.worker_environ)."""

from __future__ import annotations

import os
import platform
import subprocess

import pytest

from ezmsg_console.protocol.errors import ConfigurationError
from ezmsg_console.pubsub.shm import NT_THRESHOLD_ENV, NT_TUNABLE, worker_environ

LD_SO = "/lib64/ld-linux-x86-64.so.2"


def test_the_default_threshold_is_added_and_the_rest_kept() -> None:
    env = worker_environ({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": f"{NT_TUNABLE}=0x80000"}
    env = worker_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{NT_TUNABLE}=0x80000"


def test_a_users_own_setting_wins_and_zero_turns_it_off() -> None:
    mine = f"{NT_TUNABLE}=0x100000"
    assert worker_environ({"GLIBC_TUNABLES": mine})["GLIBC_TUNABLES"] == mine
    assert "GLIBC_TUNABLES" not in worker_environ({NT_THRESHOLD_ENV: "0"})
    assert worker_environ({NT_THRESHOLD_ENV: "2097152"})["GLIBC_TUNABLES"] == f"{NT_TUNABLE}=0x200000"
    assert worker_environ({NT_THRESHOLD_ENV: "16"})["GLIBC_TUNABLES"] == f"{NT_TUNABLE}=0x4040"  # glibc's minimum
    with pytest.raises(ConfigurationError, match=NT_THRESHOLD_ENV):
        worker_environ({NT_THRESHOLD_ENV: "lots"})


@pytest.mark.skipif(platform.machine() != "x86_64" or not os.path.exists(LD_SO), reason="an x86-64 glibc tunable")
def test_glibc_accepts_the_setting() -> None:
    """The dynamic loader of this machine reads the tunable as we write it."""
    out = subprocess.run([LD_SO, "--list-tunables"], env=worker_environ({}), capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        pytest.skip("this glibc cannot list its tunables")
    line = next(x for x in out.stdout.splitlines() if x.startswith(NT_TUNABLE + ":"))
    assert line.split()[1] == "0x80000"
