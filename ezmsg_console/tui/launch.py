"""Start-up of the console: find the GraphServer (ours or ezmsg's), or start an embedded one with the demo."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from ..client.source import Backend, Located, locate
from ..protocol.address import Address, resolve_address, resolve_token
from ..protocol.errors import ConfigurationError, ServerUnreachable

PROBE_TIMEOUT = 1.0


@dataclasses.dataclass
class Target:
    address: Address
    token: str | None
    embedded: Any = None  # an EmbeddedDemo this process started (stop it when done)
    backend: Backend = Backend.NATIVE
    version: str = ""
    warnings: tuple[str, ...] = ()


def find_or_embed(address: Any = None, token: str | None = None, *, embed: bool = True,
                  demo: bool = False, backend: str | None = None) -> Target:
    """The GraphServer to show, searched as :func:`~ezmsg_console.client.source.locate` does
    (``address``, else ours at $EZMSG_CONSOLE_ADDRESS/25970, else ezmsg's at
    $EZMSG_GRAPHSERVER_ADDR/25978). With nobody answering: an embedded GraphServer (on
    our address if it is free, else any free port) with the demo pipeline, if ``embed``;
    otherwise ServerUnreachable. ``demo`` runs the demo even when one of our servers
    answers (on that server)."""
    from ..runtime.embedded import EmbeddedDemo

    token = resolve_token(token)
    found: Located = asyncio.run(locate(address, token, backend, timeout=PROBE_TIMEOUT))
    if found.backend is Backend.EZMSG:
        if demo:
            raise ConfigurationError(f"--demo runs ezmsg-console's demo pipeline, which cannot join the ezmsg "
                                     f"GraphServer at {found.address}; for an ezmsg demo run "
                                     f"'ezmsg-console demo --ezmsg'")
        return Target(found.address, token, backend=Backend.EZMSG, version=found.version, warnings=found.warnings)
    if found.backend is Backend.NATIVE:
        if not demo:
            return Target(found.address, token)
        embedded = EmbeddedDemo(found.address, token=token)
        embedded.start_pipeline_only()
        return Target(found.address, token, embedded)
    if backend == Backend.EZMSG.value:
        raise ServerUnreachable(f"no ezmsg GraphServer answers at {found.address}", {"address": str(found.address)})
    if not embed:
        raise ServerUnreachable(f"no GraphServer answers at {found.address} (and --no-embed was given)",
                                {"address": str(found.address)})
    embedded = EmbeddedDemo.start_anywhere(resolve_address(found.address), token)
    return Target(embedded.bound_address, token, embedded)
