"""Leak checks for tests that run real worker processes."""

from __future__ import annotations

from typing import Iterator

import psutil
import pytest

from ezmsg_console.pubsub import shm


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail if a test leaves one of our shared-memory segments or a child process behind."""
    before = set(shm.ours())
    yield
    leaked_shm = sorted(set(shm.ours()) - before)
    children = [p for p in psutil.Process().children(recursive=True) if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]
    assert leaked_shm == [], f"shared memory left behind: {leaked_shm}"
    assert children == [], f"child processes left behind: {children}"
