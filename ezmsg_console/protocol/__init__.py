"""Sans-IO wire protocol: frames, codec, messages, handshake state machine, errors.

Imports only the standard library and msgpack (numpy lazily, for array
payloads). No sockets, asyncio or threads live here.
"""

from __future__ import annotations

from . import catalog, errors, graph, messages
from .address import Address, parse_address, resolve_address, resolve_token
from .connection import ProtocolConnection, Side, State
from .framing import HANDSHAKE_MAX_FRAME_SIZE, MAX_FRAME_SIZE, FrameDecoder, encode_frame
from .messages import PROTOCOL_VERSION, Role, StreamKind
from .wire import Message, decode_message, encode_message

__all__ = [
    "Address",
    "FrameDecoder",
    "HANDSHAKE_MAX_FRAME_SIZE",
    "MAX_FRAME_SIZE",
    "Message",
    "PROTOCOL_VERSION",
    "ProtocolConnection",
    "Role",
    "Side",
    "State",
    "StreamKind",
    "catalog",
    "decode_message",
    "encode_frame",
    "encode_message",
    "errors",
    "graph",
    "messages",
    "parse_address",
    "resolve_address",
    "resolve_token",
]
