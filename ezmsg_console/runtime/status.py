"""The runner <-> worker pipes: spec and commands down, status lines up.

Down (the worker's stdin): a 4-byte length and the msgpack spec, then one
command per line: ``link`` (all endpoints are registered: connect to your
publishers) and ``start`` (everyone is linked: run the units). End of file
means the runner is gone. Up (the status pipe): JSON lines ``registered``,
``ready``, ``error``, ``terminate``, ``stats`` and ``done``.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any, TextIO

from ..protocol.codec import packb, unpackb
from ..protocol.errors import ConsoleError

STATUS_FD_ENV = "EZMSG_CONSOLE_STATUS_FD"
EXIT_OK = 0
EXIT_UNIT_ERROR = 3
EXIT_STARTUP = 4
_LEN = struct.Struct(">I")


def encode_spec(spec: dict[str, Any]) -> bytes:
    body = packb(spec)
    return _LEN.pack(len(body)) + body


async def read_spec(reader: asyncio.StreamReader) -> dict[str, Any]:
    try:
        (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
        spec = unpackb(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        raise ConsoleError("the runner closed the pipe before sending the worker spec") from None
    if not isinstance(spec, dict):
        raise ConsoleError("malformed worker spec")
    return spec


class StatusPipe:
    """JSON lines to the runner (or nowhere, if there is no pipe)."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def send(self, event: str, **fields: Any) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(json.dumps({"event": event, **fields}) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            self._stream = None
