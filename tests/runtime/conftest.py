"""Leak checks for tests that run real worker processes."""

from __future__ import annotations

import contextlib
import uuid
from typing import Iterator

import psutil
import pytest

from ezmsg_console.pubsub import shm
from ezmsg_console.runtime.runner import RUN_TAG_PREFIX_ENV
from ezmsg_console.server import GraphServer

from ..conftest import TIMEOUT


@contextlib.contextmanager
def threaded_server() -> Iterator[str]:
    """A GraphServer on a free 127.0.0.1 port in a thread of this process, with no address or
    token taken from the environment; yields its address and stops it on exit."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EZMSG_CONSOLE_ADDRESS", raising=False)
        mp.delenv("EZMSG_CONSOLE_TOKEN", raising=False)
        server = GraphServer("127.0.0.1:0")
        address = server.start_in_thread(TIMEOUT)
        try:
            yield address
        finally:
            server.stop_thread()


@pytest.fixture
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail if a test leaves one of our shared-memory segments or a child process behind.

    Runs started by the test tag their segments with a prefix unique to it,
    so other activity on the machine cannot confuse the check.
    """
    prefix = f"t{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(RUN_TAG_PREFIX_ENV, prefix)
    yield
    leaked_shm = shm.ours(prefix)
    children = [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    assert leaked_shm == [], f"shared memory left behind: {leaked_shm}"
    assert children == [], f"child processes left behind: {children}"
