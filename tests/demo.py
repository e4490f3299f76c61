"""The demo pipeline on an embedded GraphServer, for test modules that need a live system."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Iterator

import pytest

from ezmsg_console.client.context import GraphContext
from ezmsg_console.export.document import wait_pipeline_ready
from ezmsg_console.pubsub import shm
from ezmsg_console.runtime.embedded import EmbeddedDemo
from ezmsg_console.runtime.runner import RUN_TAG_PREFIX_ENV

from .conftest import TIMEOUT


async def _ready(address: object) -> None:
    async with GraphContext(address, timeout=TIMEOUT, name="tests") as ctx:
        assert await wait_pipeline_ready(ctx, 3 * TIMEOUT), "the demo pipeline did not come up"


@contextlib.contextmanager
def running_demo() -> Iterator[EmbeddedDemo]:
    """Start the demo (port 0, its own run-tag prefix), wait until data flows on every edge,
    and on exit stop it and check that it left no shared memory behind."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RUN_TAG_PREFIX_ENV, f"t{uuid.uuid4().hex[:6]}")
        mp.delenv("EZMSG_CONSOLE_ADDRESS", raising=False)
        mp.delenv("EZMSG_CONSOLE_TOKEN", raising=False)
        embedded = EmbeddedDemo("127.0.0.1:0")
        embedded.start()
    try:
        asyncio.run(_ready(embedded.address))
        yield embedded
    finally:
        run_tag = embedded.runner.run_tag if embedded.runner else None
        embedded.stop()
        if run_tag:
            assert shm.ours(run_tag + "_") == [], "the demo left shared memory behind"
