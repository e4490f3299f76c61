"""Start-up of the console: find the GraphServer, or start an embedded one with the demo."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from ..client.context import server_answers
from ..protocol.address import Address, resolve_address, resolve_token
from ..protocol.errors import ServerUnreachable

PROBE_TIMEOUT = 1.0


@dataclasses.dataclass
class Target:
    address: Address
    token: str | None
    embedded: Any = None  # an EmbeddedDemo this process started (stop it when done)


def find_or_embed(address: Any = None, token: str | None = None, *, embed: bool = True,
                  demo: bool = False) -> Target:
    """The GraphServer to show. With nobody answering at ``address``: an embedded
    GraphServer (on that address if it is free, else any free port) with the demo
    pipeline, if ``embed``; otherwise ServerUnreachable. ``demo`` runs the demo
    even when a server answers (on that server)."""
    from ..runtime.embedded import EmbeddedDemo

    resolved = resolve_address(address)
    token = resolve_token(token)
    if asyncio.run(server_answers(resolved, token, PROBE_TIMEOUT)):
        if not demo:
            return Target(resolved, token)
        embedded = EmbeddedDemo(resolved, token=token)
        embedded.start_pipeline_only()
        return Target(resolved, token, embedded)
    if not embed:
        raise ServerUnreachable(f"no GraphServer answers at {resolved} (and --no-embed was given)",
                                {"address": str(resolved)})
    embedded = EmbeddedDemo.start_anywhere(resolved, token)
    return Target(embedded.address, token, embedded)
