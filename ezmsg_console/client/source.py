"""Graph sources: the one interface the console and the headless tools read a graph through.

Two kinds of GraphServer can be watched. Ours (``native``) is reached with
:class:`~ezmsg_console.client.context.GraphContext`; an upstream ezmsg 3.9
GraphServer (``ezmsg``) with :class:`ezmsg_console.ezmsg_backend.source.EzmsgSource`,
which uses upstream's own GraphContext and translates every answer into this
project's types. Both satisfy :class:`GraphSource`, so every tab and every
export format works on either.

:func:`probe` tells which kind answers at an address without disturbing it:
it connects, sends nothing, and reads the greeting both kinds send first
(ours a SERVER_HELLO frame, upstream's its version).
:func:`locate` applies the console's search order (an explicit address, else
ours, else ezmsg's, else nothing: the caller may start an embedded demo) and
:func:`make_source` makes the right one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
from typing import Any, Generator, Mapping, Protocol, runtime_checkable

from ..net import is_loopback_host
from ..protocol.address import DEFAULT_HOST, Address, parse_address, resolve_address
from ..protocol.errors import (ConfigurationError, ConsoleError, RemoteProtocolError, RequestTimeout,
                              ServerUnreachable)
from ..protocol.graph import GraphSnapshot
from ..protocol.greeting import GREETING_READ, GreetingKind, classify_greeting
from ..protocol.profiling import (ProcessProfilingSnapshot, ProfilingError, ProfilingStreamControl,
                                  ProfilingTraceControl)
from ..protocol.settings import SettingsEventsReply, SettingsState

EZMSG_ADDRESS_ENV = "EZMSG_GRAPHSERVER_ADDR"
"""Where upstream ezmsg looks for its GraphServer (we look there too)."""
EZMSG_DEFAULT_PORT = 25978
EZMSG_EXTRA_HINT = "pip install 'ezmsg-console[ezmsg]'"
LOOPBACK_GREETING_WAIT = 1.0
"""How long a loopback server may take to greet (both kinds greet at once; only a silent service waits it out)."""
REMOTE_GREETING_WAIT = 2.0


class Backend(str, enum.Enum):
    NATIVE = "native"
    EZMSG = "ezmsg"


@runtime_checkable
class Subscription(Protocol):
    """A push stream: ``next(timeout)`` gives an event, a StreamGap, or None once it ended.
    Awaiting it opens it (and gives it back)."""

    def __await__(self) -> Generator[Any, None, Subscription]: ...

    async def next(self, timeout: float | None = 5.0) -> Any: ...

    async def close(self, timeout: float = 2.0) -> None: ...


@runtime_checkable
class GraphSource(Protocol):
    """What a console needs from a GraphServer connection (answers in this project's types)."""

    backend: str
    address: Any

    @property
    def server_epoch(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    @property
    def server_label(self) -> str: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def wait_disconnected(self) -> None: ...

    async def snapshot(self, timeout: float | None = None) -> GraphSnapshot: ...

    async def settings_snapshot(self, timeout: float | None = None) -> tuple[SettingsState, ...]: ...

    async def settings_events(self, after_seq: int = 0, timeout: float | None = None) -> SettingsEventsReply: ...

    def subscribe_topology_events(self, after_seq: int | None = 0, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> Subscription: ...

    def subscribe_settings_events(self, after_seq: int | None = 0, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> Subscription: ...

    def subscribe_profiling_trace(self, control: ProfilingStreamControl | None = None, *, max_queue: int = 1024,
                                  timeout: float | None = None) -> Subscription: ...

    async def update_setting(self, component_address: str, field_path: str, value: Any, *,
                             expected_seq: int | None = None, timeout: float = 2.0) -> dict[str, Any]: ...

    async def process_ping(self, unit_address: str, *, timeout: float = 2.0) -> dict[str, Any]: ...

    async def process_stats(self, unit_address: str, *, timeout: float = 2.0) -> dict[str, Any]: ...

    async def process_profiling_snapshot(self, unit_address: str, *,
                                         timeout: float = 2.0) -> ProcessProfilingSnapshot: ...

    async def process_set_profiling_trace(self, unit_address: str, control: ProfilingTraceControl, *,
                                          timeout: float = 2.0) -> dict[str, Any]: ...

    async def profiling_snapshot_all(self, *, timeout_per_process: float = 1.0
                                     ) -> dict[str, ProcessProfilingSnapshot | ProfilingError]: ...


class NotAGraphServer(ServerUnreachable):
    """Something answers at the address, but it is not a GraphServer of either kind."""


class EzmsgExtraMissing(ConfigurationError):
    """The ezmsg backend was needed but the ``[ezmsg]`` extra is not installed."""


def ezmsg_address(environ: Mapping[str, str] | None = None) -> Address:
    """Upstream's GraphServer address: ``$EZMSG_GRAPHSERVER_ADDR`` or 127.0.0.1:25978."""
    env = os.environ if environ is None else environ
    text = env.get(EZMSG_ADDRESS_ENV)
    return parse_address(text) if text else Address(DEFAULT_HOST, EZMSG_DEFAULT_PORT)


def ezmsg_available() -> bool:
    """Whether the ``[ezmsg]`` extra is installed (looked up without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("ezmsg.core.graphcontext") is not None
    except (ImportError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What answered at ``address``: ``backend`` None means nothing usable (``reason`` says why)."""

    address: Address
    backend: Backend | None
    version: str = ""
    reason: str = ""  # why nothing usable answered ("unreachable" when nothing did)
    detail: str = ""  # the OS error, or why a GraphServer that answered refused us


async def probe(address: Address, token: str | None = None, timeout: float = 1.0) -> ProbeResult:
    """Which GraphServer answers at ``address``: ours (its SERVER_HELLO), ezmsg (its version
    greeting), something else, or nothing. Sends nothing: both kinds speak first (a silent
    service is then offered our handshake)."""
    wait = LOOPBACK_GREETING_WAIT if is_loopback_host(address.host) else REMOTE_GREETING_WAIT
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address.host, address.port), timeout)
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
        return ProbeResult(address, None, reason="unreachable", detail=str(exc) or type(exc).__name__)
    data = b""
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(wait, timeout)
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(GREETING_READ - len(data)), left)
            except (asyncio.TimeoutError, TimeoutError):
                break
            if not chunk:
                if not data:
                    return ProbeResult(address, None, reason="closed the connection without a word")
                break
            data += chunk
            if classify_greeting(data).kind is not GreetingKind.INCOMPLETE:
                break
    except OSError as exc:
        return ProbeResult(address, None, reason=f"the connection failed ({exc})")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    greeting = classify_greeting(data)
    if greeting.kind is GreetingKind.EZMSG:
        return ProbeResult(address, Backend.EZMSG, greeting.version)
    if greeting.kind is GreetingKind.NATIVE:  # a refused token or version is said when connecting
        return ProbeResult(address, Backend.NATIVE)
    if greeting.kind is not GreetingKind.SILENT:
        return ProbeResult(address, None, reason="it sent something that is not a GraphServer greeting")
    return await _native_handshake(address, token, timeout)


async def _native_handshake(address: Address, token: str | None, timeout: float) -> ProbeResult:
    from .context import GraphContext

    try:
        async with GraphContext(address, token=token, timeout=timeout, name="ezmsg-console probe"):
            pass
    except ServerUnreachable as exc:  # the connection itself failed
        return ProbeResult(address, None, reason="unreachable", detail=str(exc))
    except OSError:
        return ProbeResult(address, None, reason="it does not answer the GraphServer handshake")
    except (RequestTimeout, RemoteProtocolError, asyncio.TimeoutError, TimeoutError):
        return ProbeResult(address, None, reason="it does not answer the GraphServer handshake")
    except ConsoleError as exc:  # a GraphServer that refuses us (token, version): said again when connecting
        return ProbeResult(address, Backend.NATIVE, detail=str(exc))
    return ProbeResult(address, Backend.NATIVE)


def make_source(backend: Backend | str, address: Address, *, token: str | None = None,
                name: str = "ezmsg-console", timeout: float = 5.0, version: str = "") -> Any:
    """An unopened GraphSource of ``backend`` for ``address``."""
    if Backend(backend) is Backend.NATIVE:
        from .context import GraphContext

        return GraphContext(address, token=token, name=name, timeout=timeout)
    if not ezmsg_available():
        raise EzmsgExtraMissing(f"an ezmsg GraphServer{f' {version}' if version else ''} answers at {address}; "
                                f"to attach to it: {EZMSG_EXTRA_HINT}", {"address": str(address)})
    from ..ezmsg_backend.source import EzmsgSource

    return EzmsgSource(address, name=name, timeout=timeout, version=version)


def not_a_graph_server(result: ProbeResult) -> ServerUnreachable:
    if result.reason == "unreachable":
        text = result.detail if result.detail.startswith("no GraphServer") else \
            f"no GraphServer answered at {result.address} ({result.detail})"
        return ServerUnreachable(text, {"address": str(result.address)})
    return NotAGraphServer(f"{result.address} is not a GraphServer: {result.reason}",
                           {"address": str(result.address), "reason": result.reason})


PICKLE_WARNING = ("{address} is an ezmsg GraphServer on another host: its wire format is pickle without "
                  "authentication, so attach only to a server you trust")


@dataclasses.dataclass(frozen=True)
class Located:
    """Where the console should look: ``backend`` None means nobody answers at ``address``
    (the caller may start an embedded GraphServer there). ``warnings`` are one-liners to show."""

    address: Address
    backend: Backend | None
    version: str = ""
    warnings: tuple[str, ...] = ()
    detail: str = ""  # why nobody answers (the connect error), when ``backend`` is None

    @property
    def label(self) -> str:
        if self.backend is Backend.EZMSG:
            return f"ezmsg {self.version}".strip()
        return self.backend.value if self.backend is not None else "nothing"


async def locate(address: Any = None, token: str | None = None, backend: Backend | str | None = None, *,
                 timeout: float = 1.0, environ: Mapping[str, str] | None = None) -> Located:
    """Find the GraphServer to attach to.

    * ``backend`` given: that kind only, at ``address`` (or that kind's default address).
    * ``address`` given: whichever kind answers there.
    * neither: ours at ``$EZMSG_CONSOLE_ADDRESS`` (default 127.0.0.1:25970) if it answers,
      else ezmsg's at ``$EZMSG_GRAPHSERVER_ADDR`` (default 127.0.0.1:25978) if it answers.

    Something that answers but is no GraphServer raises :class:`NotAGraphServer`; a
    GraphServer of the other kind than ``backend`` raises ConfigurationError. An ezmsg
    server found without the ``[ezmsg]`` extra raises :class:`EzmsgExtraMissing`.
    """
    forced = Backend(backend) if backend else None
    if forced is Backend.EZMSG and not address:
        first = ezmsg_address(environ)
    else:
        first = resolve_address(address, environ)
    found = await probe(first, token, timeout)
    if found.backend is None and found.reason != "unreachable":
        raise not_a_graph_server(found)
    if found.backend is None and forced is None and not address:
        fallback = ezmsg_address(environ)
        if fallback != first:
            other = await probe(fallback, token, timeout)
            if other.backend is not None:
                found = other
    if forced is not None and found.backend is not None and found.backend is not forced:
        other_kind = "an ezmsg" if found.backend is Backend.EZMSG else "an ezmsg-console"
        raise ConfigurationError(f"{found.address} is {other_kind} GraphServer, not {forced.value}: drop "
                                 f"--backend {forced.value} (or use --backend {found.backend.value})",
                                 {"address": str(found.address)})
    if found.backend is None:
        return Located(first, None, detail=found.detail)
    warnings: tuple[str, ...] = ()
    if found.backend is Backend.EZMSG:
        if not ezmsg_available():
            raise EzmsgExtraMissing(f"an ezmsg GraphServer {found.version} answers at {found.address}; to attach "
                                    f"to it: {EZMSG_EXTRA_HINT}", {"address": str(found.address)})
        if not is_loopback_host(found.address.host):
            warnings = (PICKLE_WARNING.format(address=found.address),)
    return Located(found.address, found.backend, found.version, warnings)
