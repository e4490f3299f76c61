"""The unit model: streams, handler decorators, ``Unit`` and ``Collection``.

::

    class Gain(Unit):
        SETTINGS = GainSettings
        INPUT = InputStream(np.ndarray)
        OUTPUT = OutputStream(np.ndarray)
        INPUT_SETTINGS = InputStream(GainSettings)     # dynamic settings

        @subscriber(INPUT)
        @publisher(OUTPUT)
        async def on_data(self, msg):
            yield self.OUTPUT, msg * self.SETTINGS.gain

A publisher handler is an async generator yielding ``(stream, message)``
pairs (or, with exactly one output, a coroutine returning the message). A
unit with an ``INPUT_SETTINGS`` input has *dynamic settings*: a message there
replaces ``self.SETTINGS`` (then the hook ``on_settings(old, new)`` runs, if the
unit defines a plain method by that name; a ``@subscriber`` handler is never
called as the hook, whatever its name). Without a ``SETTINGS`` class, the
dataclass that ``INPUT_SETTINGS`` carries types the settings.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import sys
from typing import Any, Callable, Iterable, Iterator

from ..protocol.errors import ConfigurationError
from .state import new_state

SETTINGS_STREAM = "INPUT_SETTINGS"

HANDLER_MARKS = ("__ezc_subscribes__", "__ezc_publishes__", "__ezc_task__", "__ezc_thread__")
"""Attributes the decorators set: a method with one is a handler the worker runs."""


class Complete(Exception):
    """Raise in a handler: this task is finished (the unit completes when all its tasks have)."""


class NormalTermination(Exception):
    """Raise in a handler: stop the whole run, cleanly."""


class _Stream:
    def __init__(self, msg_type: Any = Any) -> None:
        self.msg_type = msg_type
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return BoundStream(instance, self)

    def options(self) -> dict[str, Any]:
        raise NotImplementedError


class InputStream(_Stream):
    """A unit input. ``leaky`` subscribers keep at most ``max_queue`` messages, dropping the oldest.

    With ``zero_copy`` (the default) arrays from shared memory reach the
    handler as read-only views of the publisher's buffer; keeping one past
    the handler is safe but holds that buffer (a warning says so). With
    ``zero_copy=False`` every message is copied on arrival.
    """

    def __init__(self, msg_type: Any = Any, leaky: bool = False, max_queue: int | None = None,
                 zero_copy: bool = True) -> None:
        super().__init__(msg_type)
        if max_queue is not None and max_queue < 1:
            raise ConfigurationError("max_queue must be >= 1")
        self.leaky = leaky
        self.max_queue = max_queue
        self.zero_copy = zero_copy

    def options(self) -> dict[str, Any]:
        return {"leaky": self.leaky, "max_queue": self.max_queue, "zero_copy": self.zero_copy}


class OutputStream(_Stream):
    """A unit output with a ring of ``num_buffers`` slots of ``buf_size`` bytes."""

    def __init__(self, msg_type: Any = Any, num_buffers: int = 32, buf_size: int = 64 * 1024,
                 force_tcp: bool = False) -> None:
        super().__init__(msg_type)
        if num_buffers < 1 or buf_size < 1024:
            raise ConfigurationError("an OutputStream needs num_buffers >= 1 and buf_size >= 1024")
        self.num_buffers = num_buffers
        self.buf_size = buf_size
        self.force_tcp = force_tcp

    def options(self) -> dict[str, Any]:
        return {"num_buffers": self.num_buffers, "buf_size": self.buf_size, "force_tcp": self.force_tcp}


class BoundStream:
    """A stream of a particular component instance; ``topic`` once addresses are set."""

    __slots__ = ("component", "stream")

    def __init__(self, component: Any, stream: _Stream) -> None:
        self.component = component
        self.stream = stream

    @property
    def topic(self) -> str:
        address = self.component.address
        if not address:
            raise ConfigurationError(f"{type(self.component).__name__} has no address yet (is it part of the run?)")
        return f"{address}/{self.stream.name}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoundStream) and other.component is self.component and other.stream is self.stream

    def __hash__(self) -> int:
        return hash((id(self.component), id(self.stream)))


def subscriber(stream: InputStream) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark an async method as the handler of every message on ``stream``."""
    if not isinstance(stream, InputStream):
        raise ConfigurationError("@subscriber takes an InputStream")

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__ezc_subscribes__ = stream  # type: ignore[attr-defined]
        return fn
    return mark


def publisher(stream: OutputStream) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark an async generator (or handler) as publishing on ``stream``."""
    if not isinstance(stream, OutputStream):
        raise ConfigurationError("@publisher takes an OutputStream")

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        outputs = list(getattr(fn, "__ezc_publishes__", ()))
        outputs.append(stream)
        fn.__ezc_publishes__ = tuple(outputs)  # type: ignore[attr-defined]
        return fn
    return mark


def _class_slot(cls: type, name: str) -> type | None:
    """The class assigned to ``name`` (``SETTINGS = X``), or annotated (``SETTINGS: X``), nearest first."""
    for klass in cls.__mro__:
        value = klass.__dict__.get(name)
        if isinstance(value, type):
            return value
        hint = inspect.get_annotations(klass).get(name)
        if isinstance(hint, str):  # ``from __future__ import annotations``: the name, in the class's module
            hint = getattr(sys.modules.get(klass.__module__), hint, None)
        if isinstance(hint, type) and hint is not Any:  # (the base classes' own ``SETTINGS: Any``)
            return hint
    return None


class Component:
    """Common base of units and collections: settings and an address."""

    SETTINGS: Any = None

    def __init__(self, settings: Any = None) -> None:
        self.address = ""
        settings_type = type(self).settings_type()
        if settings is None and settings_type is not None:
            try:
                settings = settings_type()
            except TypeError:
                settings = None  # required fields: must be applied before the run
        if settings is not None:
            self.SETTINGS = settings

    @classmethod
    def settings_type(cls) -> type | None:
        """The ``SETTINGS`` class; without one, the dataclass an ``INPUT_SETTINGS`` stream carries
        (a unit with dynamic settings and no ``SETTINGS`` is still typed by what it accepts)."""
        found = _class_slot(cls, "SETTINGS")
        if found is not None:
            return found
        stream = cls.streams().get(SETTINGS_STREAM)
        msg_type = getattr(stream, "msg_type", None)
        if isinstance(stream, InputStream) and isinstance(msg_type, type) and dataclasses.is_dataclass(msg_type):
            return msg_type
        return None

    def apply_settings(self, settings: Any) -> None:
        """Replace this component's settings (before the run starts)."""
        expected = type(self).settings_type()
        if expected is not None and not isinstance(settings, expected):
            raise ConfigurationError(
                f"{type(self).__name__} expects {expected.__name__} settings, got {type(settings).__name__}")
        self.SETTINGS = settings

    @property
    def settings_value(self) -> Any:
        value = self.__dict__.get("SETTINGS")
        return value

    @classmethod
    def streams(cls) -> dict[str, _Stream]:
        found: dict[str, _Stream] = {}
        for klass in reversed(cls.__mro__):
            for name, value in klass.__dict__.items():
                if isinstance(value, _Stream):
                    found[name] = value
        return found


class Unit(Component):
    """A leaf component: runs in exactly one worker process.

    ``STATE = SomeState`` (a :class:`~ezmsg_console.runtime.state.State`) gives each instance its
    own ``self.STATE``."""

    STATE: Any = None

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        state_type = type(self).state_type()
        if state_type is not None:
            self.STATE = new_state(state_type)

    @classmethod
    def state_type(cls) -> type | None:
        return _class_slot(cls, "STATE")

    @classmethod
    def handlers(cls) -> Iterator[tuple[str, Callable[..., Any]]]:
        seen: set[str] = set()
        for klass in cls.__mro__:
            for name, value in klass.__dict__.items():
                if name in seen or not callable(value):
                    continue
                if any(hasattr(value, mark) for mark in HANDLER_MARKS):
                    seen.add(name)
                    yield name, value

    @classmethod
    def has_dynamic_settings(cls) -> bool:
        return isinstance(cls.streams().get(SETTINGS_STREAM), InputStream)

    async def initialize(self) -> None:
        """Runs once in the worker before any handler."""

    async def shutdown(self) -> None:
        """Runs once in the worker when the unit stops (also after an error)."""


class Collection(Component):
    """Composes units and collections, wires their streams, groups them into processes.

    Components are the instance's (or class's) attributes that are units or
    collections. Override :meth:`configure` to apply settings to children,
    :meth:`network` to return ``(from, to)`` stream pairs (bound streams or
    topic strings), and :meth:`process_components` to name the children that
    each run in their own worker process (the rest share one).
    """

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        for name, value in self._class_components():
            self.__dict__[name] = copy.deepcopy(value)  # class-level templates: each instance its own

    @classmethod
    def _class_components(cls) -> list[tuple[str, Component]]:
        found: dict[str, Component] = {}
        for klass in reversed(cls.__mro__):
            for name, value in klass.__dict__.items():
                if isinstance(value, Component):
                    found[name] = value
        return list(found.items())

    def components(self) -> dict[str, Component]:
        return {name: value for name, value in vars(self).items() if isinstance(value, Component)}

    def configure(self) -> None:
        """Apply settings to children (runs before the network is read)."""

    def network(self) -> Iterable[tuple[Any, Any]]:
        return ()

    def process_components(self) -> Iterable[Component]:
        return ()
