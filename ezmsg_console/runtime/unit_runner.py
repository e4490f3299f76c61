"""Runs one unit inside a worker: its publishers, subscribers and handler tasks.

Each input stream with handlers gets one subscriber; a consumer task passes
every message to the stream's handlers in order, publishes what they yield,
and only then acknowledges the message (so backpressure reaches upstream).
Publisher-only handlers run as tasks until their generator ends. An
``INPUT_SETTINGS`` message first replaces ``unit.SETTINGS`` (and calls
``on_settings(old, new)``), then reaches any user handler of that stream.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any, Awaitable, Callable

from ..protocol.errors import ConfigurationError
from ..pubsub.host import EndpointHost
from ..pubsub.publisher import Publisher
from ..pubsub.spans import bind_subscriber
from ..pubsub.subscriber import Subscriber
from ..settings.values import from_plain
from .unit import SETTINGS_STREAM, BoundStream, Complete, InputStream, OutputStream, Unit

log = logging.getLogger(__name__)


class UnitRunner:
    """The live state of one unit in a worker process."""

    def __init__(self, unit: Unit, host: EndpointHost) -> None:
        self.unit = unit
        self.host = host
        self.address = unit.address
        self.publishers: dict[str, Publisher] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._producers: list[Callable[..., Any]] = []
        self._threads: list[Callable[..., Any]] = []  # @main / @thread: blocking, each in a thread
        self.tasks: list[asyncio.Task[None]] = []
        self.settings_hook: Callable[[Unit, Any], Awaitable[None]] | None = None

    async def setup(self) -> None:
        """Create and register every endpoint (before any handler runs)."""
        cls = type(self.unit)
        streams = cls.streams()
        for name, stream in streams.items():
            if isinstance(stream, OutputStream):
                self.publishers[name] = await self.host.publisher(
                    f"{self.address}/{name}", num_buffers=stream.num_buffers, buf_size=stream.buf_size,
                    force_tcp=stream.force_tcp)
        for _name, fn in cls.handlers():
            subscribes = getattr(fn, "__ezc_subscribes__", None)
            for out in getattr(fn, "__ezc_publishes__", ()):
                if out.name not in self.publishers:
                    raise ConfigurationError(f"{self.address}: {fn.__name__} publishes on {out.name}, "
                                             "which is not an OutputStream of this unit")
            if getattr(fn, "__ezc_thread__", None):
                self._threads.append(fn)
            elif subscribes is None:
                if not (inspect.isasyncgenfunction(fn) or getattr(fn, "__ezc_task__", False)):
                    raise ConfigurationError(f"{self.address}: publisher {fn.__name__} must be an async generator")
                self._producers.append(fn)
            else:
                self._handlers.setdefault(subscribes.name, []).append(fn)
        if cls.has_dynamic_settings():
            self._handlers.setdefault(SETTINGS_STREAM, [])
        for name in self._handlers:
            stream = streams[name]
            assert isinstance(stream, InputStream)
            self.subscribers[name] = await self.host.subscriber(
                f"{self.address}/{name}", msg_type=stream.msg_type, leaky=stream.leaky, max_queue=stream.max_queue,
                zero_copy=stream.zero_copy and name != SETTINGS_STREAM)

    def start(self, on_exit: Callable[[UnitRunner, asyncio.Task[None]], None]) -> None:
        for name, sub in self.subscribers.items():
            self.tasks.append(asyncio.create_task(self._consume(name, sub), name=f"{self.address}/{name}"))
        for fn in self._producers:
            self.tasks.append(asyncio.create_task(self._produce(fn), name=f"{self.address}:{fn.__name__}"))
        for fn in self._threads:
            self.tasks.append(asyncio.create_task(self._in_thread(fn), name=f"{self.address}:{fn.__name__}"))
        for task in self.tasks:
            task.add_done_callback(lambda t: on_exit(self, t))

    @property
    def complete(self) -> bool:
        return all(t.done() for t in self.tasks)

    async def _emit(self, fn: Callable[..., Any], result: Any) -> None:
        """Publish what a handler produced: an async generator's (stream, msg) pairs, or a return value."""
        if inspect.isasyncgen(result):
            async for item in result:
                await self._publish_item(fn, item)
        elif inspect.isawaitable(result):
            value = await result
            outputs: tuple[OutputStream, ...] = getattr(fn, "__ezc_publishes__", ())
            if value is not None and len(outputs) == 1:
                await self.publishers[outputs[0].name].broadcast(value)

    async def _publish_item(self, fn: Callable[..., Any], item: Any) -> None:
        try:
            stream, msg = item
        except (TypeError, ValueError):
            raise ConfigurationError(f"{self.address}: {fn.__name__} must yield (stream, message) pairs") from None
        if isinstance(stream, BoundStream):
            stream = stream.stream
        pub = self.publishers.get(getattr(stream, "name", ""))
        if pub is None or stream not in getattr(fn, "__ezc_publishes__", ()):
            raise ConfigurationError(f"{self.address}: {fn.__name__} yielded to {getattr(stream, 'name', stream)!r}, "
                                     "which it does not declare with @publisher")
        await pub.broadcast(msg)

    async def _produce(self, fn: Callable[..., Any]) -> None:
        try:
            await self._emit(fn, fn(self.unit))
        except Complete:
            pass

    async def _in_thread(self, fn: Callable[..., Any]) -> None:
        """Run a blocking @main/@thread function in a daemon thread; done when it returns (a
        cancelled wait leaves the thread to end with the process: it cannot be interrupted)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if not done.done():
                done.set_result(None) if error is None else done.set_exception(error)

        def body() -> None:
            error: BaseException | None = None
            try:
                fn(self.unit)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop: the unit's error (or Complete)
                error = exc
            try:
                loop.call_soon_threadsafe(settle, error)
            except RuntimeError:  # the worker's loop is gone: the run ended while this ran
                pass

        threading.Thread(target=body, name=f"{self.address}:{fn.__name__}", daemon=True).start()
        try:
            await done
        except Complete:
            pass

    async def _consume(self, name: str, sub: Subscriber) -> None:
        handlers = self._handlers[name]
        is_settings = name == SETTINGS_STREAM
        bind_subscriber(sub)  # profile_span() in these handlers times their message (this task's context only)
        try:
            while True:
                delivery = await sub.recv_delivery()
                try:
                    msg = delivery.msg
                    if is_settings:
                        await self._apply_settings(msg)
                    for fn in handlers:
                        await self._emit(fn, fn(self.unit, msg))
                except BaseException:
                    delivery.release()  # stopping: the traceback still refers to the message
                    raise
                msg = None  # so done() can see whether a handler kept the message
                delivery.done()
        except Complete:
            pass

    async def _apply_settings(self, msg: Any) -> None:
        settings_type = type(self.unit).settings_type()
        new = msg if settings_type is None or isinstance(msg, settings_type) else from_plain(settings_type, msg)
        old = self.unit.settings_value
        self.unit.SETTINGS = new
        hook = getattr(self.unit, "on_settings", None)
        if callable(hook) and not hasattr(hook, "__ezc_subscribes__"):  # a handler by that name is not the hook
            result = hook(old, new)
            if inspect.isawaitable(result):
                await result
        if self.settings_hook is not None:
            await self.settings_hook(self.unit, new)

    async def stop(self) -> None:
        """Cancel the handler tasks and run the unit's shutdown hook."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            result = self.unit.shutdown()
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, 5.0)
        except Exception:  # noqa: BLE001 - report and continue shutting down
            log.exception("%s: shutdown() raised", self.address)
