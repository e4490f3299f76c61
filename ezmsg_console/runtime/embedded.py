"""An embedded GraphServer and demo pipeline, run in background threads of this process.

The console starts one when no GraphServer answers, so its first run shows a
real, live pipeline; headless commands do the same. :meth:`EmbeddedDemo.stop`
stops the pipeline (workers exit, shared memory is unlinked), then the server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ..protocol.address import Address
from ..protocol.errors import ConsoleError
from .runner import Runner, RunResult

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0


class EmbeddedDemo:
    """``start()`` returns the address of a GraphServer with the demo pipeline running on it."""

    def __init__(self, address: Any = "127.0.0.1:0", *, token: str | None = None) -> None:
        self.requested = address
        self.token = token
        self.address: Address | None = None
        self.server: Any = None
        self.runner: Runner | None = None
        self.result: RunResult | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.failure: str | None = None
        """Why the demo pipeline could not start or stopped failing (the console shows it)."""

    def start(self, with_pipeline: bool = True, timeout: float = START_TIMEOUT) -> Address:
        from ..server import GraphServer

        self.server = GraphServer(self.requested, token=self.token)
        self.address = self.server.start_in_thread(timeout)
        if with_pipeline:
            self._start_pipeline(self.address)
        return self.address

    @property
    def bound_address(self) -> Address:
        """The address the started GraphServer listens on."""
        if self.address is None:
            raise RuntimeError("the embedded demo has not been started")
        return self.address

    @classmethod
    def start_anywhere(cls, address: Address, token: str | None = None,
                       timeout: float = START_TIMEOUT) -> EmbeddedDemo:
        """Started on ``address`` if it can be bound, else on a free port of the same host."""
        demo = cls(address, token=token)
        try:
            demo.start(timeout=timeout)
        except (ConsoleError, OSError) as exc:
            log.info("cannot listen on %s (%s); using a free port", address, exc)
            demo.stop()
            demo = cls(Address(address.host, 0), token=token)
            demo.start(timeout=timeout)
        return demo

    def start_pipeline_only(self) -> Address:
        """Run the demo pipeline on the GraphServer already answering at the requested address."""
        from ..protocol.address import resolve_address

        self.address = resolve_address(self.requested)
        self._start_pipeline(self.address)
        return self.address

    def _start_pipeline(self, address: Address) -> None:
        from .demo import ROOT_NAME, DemoPipeline

        self.runner = Runner({ROOT_NAME: DemoPipeline()}, address=str(address), token=self.token)
        self._thread = threading.Thread(target=self._run_pipeline, name="ezmsg-console-demo", daemon=True)
        self._thread.start()

    def _run_pipeline(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._started.set()
        try:
            assert self.runner is not None
            self.result = loop.run_until_complete(self.runner.run())
            if not self.result.ok and self.result.errors:
                first = self.result.errors[0]
                self.failure = f"{first.get('unit') or 'worker ' + str(first.get('group'))}: {first.get('error')}"
        except (ConsoleError, OSError) as exc:
            log.error("the embedded demo pipeline failed: %s", exc)
            self.failure = str(exc)
        finally:
            loop.close()

    @property
    def pipeline_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the pipeline (and wait for its workers), then the server. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._started.wait(timeout)
            loop, runner = self._loop, self.runner
            if loop is not None and runner is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(runner.request_stop, "console closed")
                except RuntimeError:
                    pass  # the loop already finished
            thread.join(timeout)
        server, self.server = self.server, None
        if server is not None:
            server.stop_thread()
