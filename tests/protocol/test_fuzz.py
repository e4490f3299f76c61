"""Hostile input: random bytes, random msgpack, truncation, length lies, pickles.

The contract: whatever arrives, the sans-IO layer only ever raises a
ProtocolError subclass (or returns messages) -- never a TypeError, KeyError,
RecursionError, ... -- and never executes anything.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import pickle
import pickletools
import struct
import types
import typing
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ezmsg_console.protocol import catalog
from ezmsg_console.protocol.codec import packb, unpackb
from ezmsg_console.protocol.connection import ProtocolConnection, Side, State
from ezmsg_console.protocol.errors import DecodeError, ProtocolError, RemoteProtocolError
from ezmsg_console.protocol.framing import encode_frame
from ezmsg_console.protocol.graph import (
    ComponentMetadata,
    ComponentType,
    GraphMetadata,
    TopologyEvent,
    TopologyEventType,
)
from ezmsg_console.protocol.messages import (
    PROTOCOL_VERSION,
    ErrorReply,
    Hello,
    PingRequest,
    RegisterMetadata,
    Role,
    ServerHello,
    StreamEvent,
    StreamKind,
    Welcome,
)
from ezmsg_console.protocol.wire import Message, decode_message, encode_message

from ..conftest import fuzz_examples

FUZZ = settings(max_examples=fuzz_examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])

SERVER_HELLO = ServerHello(PROTOCOL_VERSION, "srv", "ep", "n" * 32, False)
HELLO = Hello(PROTOCOL_VERSION, Role.SESSION, "fuzzer", "c" * 32)
WELCOME = Welcome(PROTOCOL_VERSION, "srv", "ep", "peer", Role.SESSION, 64 * 1024)


def frame(msg: Message) -> bytes:
    return encode_frame(packb(encode_message(msg)))


def open_pair() -> tuple[ProtocolConnection, ProtocolConnection]:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=64 * 1024)
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(srv.send(SERVER_HELLO))
    srv.receive_data(cli.send(HELLO))
    cli.receive_data(srv.send(WELCOME))
    assert srv.is_open and cli.is_open
    return srv, cli


def make_conn(side: Side, stage: str) -> ProtocolConnection:
    if stage == "open":
        srv, cli = open_pair()
        return srv if side is Side.SERVER else cli
    conn = ProtocolConnection(side)
    if stage == "mid" and side is Side.SERVER:
        conn.send(SERVER_HELLO)
    elif stage == "mid":
        conn.receive_data(frame(SERVER_HELLO))
    return conn


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])] if data else [b""]


def feed_all(conn: ProtocolConnection, chunks: list[bytes]) -> list[Message]:
    """Feed chunks; only RemoteProtocolError may escape, and it closes the connection."""
    out: list[Message] = []
    for chunk in chunks:
        try:
            out.extend(conn.receive_data(chunk))
        except RemoteProtocolError:
            assert conn.state is State.CLOSED
            return out
        except Exception as exc:  # pragma: no cover - this is the failure being hunted
            pytest.fail(f"receive_data raised {type(exc).__name__}: {exc!r}")
    return out


# -- strategies --------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
plain_data = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
KIND_NAMES = sorted(catalog.KINDS)


def _typed(tp: Any) -> st.SearchStrategy[Any]:
    """Wire data that (mostly) fits annotation ``tp``."""
    if tp is Any:
        return plain_data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_typed(a) for a in args])
    if origin in (list, tuple):
        return st.lists(_typed(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), _typed(args[1]), max_size=3)
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(2**63), 2**63 - 1)
    if tp is float:
        return st.floats(allow_nan=False) | st.integers(-100, 100)
    if tp is str:
        return st.sampled_from(["A", "A/B", "A/B/C", "", "A//B"]) | st.text(max_size=8)
    if tp is bytes:
        return st.binary(max_size=8)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from([m.value for m in tp]) | st.text(max_size=4)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if issubclass(tp, Message):
            subs = [c for c in catalog.KINDS.values() if issubclass(c, tp)]
            return st.sampled_from(subs).flatmap(lambda c: st.deferred(lambda: _dataclass_map(c)))
        return st.deferred(lambda: _dataclass_map(tp))
    raise AssertionError(f"no strategy for {tp!r}")


def _dataclass_map(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if getattr(cls, "KIND", ""):
            out["kind"] = cls.KIND
        for name, tp in fields.items():
            roll = draw(st.integers(0, 19))
            if roll == 0:
                continue  # field missing
            out[name] = draw(plain_data) if roll == 1 else draw(_typed(tp))  # 1 in 20: wrong shape
        return out

    return build()


kind_shaped_maps = st.sampled_from([catalog.KINDS[k] for k in KIND_NAMES]).flatmap(_dataclass_map)


msgpack_bodies = plain_data | kind_shaped_maps


# -- (a) random bytes in random chunkings ---------------------------------------------


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT])
@pytest.mark.parametrize("stage", ["fresh", "mid", "open"])
@FUZZ
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=30))
def test_random_bytes_only_protocol_errors(side: Side, stage: str, data: bytes, cuts: list[int]) -> None:
    conn = make_conn(side, stage)
    feed_all(conn, chunked(data, cuts))


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT])
@pytest.mark.parametrize("stage", ["fresh", "mid", "open"])
@FUZZ
@given(bodies=st.lists(st.binary(max_size=120), min_size=1, max_size=4),
       cuts=st.lists(st.integers(0, 600), max_size=10))
def test_random_frame_bodies_only_protocol_errors(
    side: Side, stage: str, bodies: list[bytes], cuts: list[int]
) -> None:
    conn = make_conn(side, stage)
    data = b"".join(encode_frame(b) for b in bodies)
    feed_all(conn, chunked(data, cuts))


# -- (b) valid frames of random msgpack ------------------------------------------------


@FUZZ
@given(value=msgpack_bodies)
def test_random_msgpack_decode_message(value: Any) -> None:
    body = msgpack.packb(value, use_bin_type=True)
    try:
        msg = decode_message(unpackb(body))
    except DecodeError:
        return
    except Exception as exc:  # pragma: no cover
        pytest.fail(f"decode_message raised {type(exc).__name__}: {exc!r}")
    assert isinstance(msg, Message)
    assert type(msg) in catalog.KINDS.values()
    # a message that decoded re-encodes (it is well-typed)
    again = decode_message(unpackb(packb(encode_message(msg))))
    assert type(again) is type(msg)


@pytest.mark.parametrize("side,stage", [(Side.SERVER, "open"), (Side.CLIENT, "open"), (Side.SERVER, "fresh")])
@settings(max_examples=fuzz_examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(msgpack_bodies, min_size=1, max_size=3))
def test_random_msgpack_frames_to_connection(side: Side, stage: str, values: list[Any]) -> None:
    conn = make_conn(side, stage)
    data = b"".join(encode_frame(msgpack.packb(v, use_bin_type=True), 2**32 - 1) for v in values)
    for msg in feed_all(conn, [data]):
        assert isinstance(msg, Message)


def test_kind_shaped_strategy_sometimes_decodes() -> None:
    """Control: the map strategy does reach successful decodes, so (b) tests both paths."""
    wire = {"kind": "PING", "request_id": 1}
    assert decode_message(unpackb(msgpack.packb(wire))) == PingRequest(1)


# -- (c) truncated valid frames ----------------------------------------------------

VALID = [
    PingRequest(request_id=77),
    ErrorReply(request_id=None, code="NOT_FOUND", message="gone", details={"a": [1, 2]}),
    RegisterMetadata(
        request_id=3,
        metadata=GraphMetadata(
            components=(ComponentMetadata(address="A/B", name="B", component_type=ComponentType.UNIT),)
        ),
    ),
    StreamEvent(
        stream_id="s",
        stream=StreamKind.TOPOLOGY,
        seq=5,
        event=TopologyEvent(seq=5, event_type=TopologyEventType.GRAPH_CHANGED, timestamp=1.5, changed_topics=("x",)),
    ),
]


@FUZZ
@given(index=st.integers(0, len(VALID) - 1), data=st.data())
def test_truncated_frame_waits_until_completed(index: int, data: st.DataObject) -> None:
    srv, _ = open_pair()
    msg = VALID[index]
    raw = frame(msg)
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert srv.receive_data(raw[:cut]) == []
    assert srv.state is State.OPEN
    rest = raw[cut:]
    split = data.draw(st.integers(0, len(rest) - 1))
    if split:
        assert srv.receive_data(rest[:split]) == []
    assert srv.receive_data(rest[split:]) == [msg]
    assert srv.state is State.OPEN


# -- (d) length lies -------------------------------------------------------------


@FUZZ
@given(index=st.integers(0, len(VALID) - 1), extra=st.integers(1, 5000))
def test_header_claiming_more_yields_nothing(index: int, extra: int) -> None:
    srv, _ = open_pair()
    body = packb(encode_message(VALID[index]))
    assert srv.receive_data(struct.pack(">I", len(body) + extra) + body) == []
    assert srv.state is State.OPEN
    # completing the claimed length turns it into one (bad) frame: decode error, not silence
    with pytest.raises(DecodeError):
        srv.receive_data(b"\x00" * extra)
    assert srv.state is State.CLOSED


@FUZZ
@given(index=st.integers(0, len(VALID) - 1), data=st.data())
def test_header_claiming_fewer_is_protocol_error(index: int, data: st.DataObject) -> None:
    srv, _ = open_pair()
    body = packb(encode_message(VALID[index]))
    short = data.draw(st.integers(0, len(body) - 1))
    stream = struct.pack(">I", short) + body + frame(PingRequest(request_id=1))
    try:
        srv.receive_data(stream)
    except ProtocolError as exc:
        assert isinstance(exc, RemoteProtocolError)
    else:  # pragma: no cover
        pytest.fail("a truncated msgpack body was accepted")
    assert srv.state is State.CLOSED


# -- (e) pickle payloads are inert ----------------------------------------------------


class _OpenFile:
    """Unpickling this would call open(path, 'w') and create the sentinel file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


class _SystemCall:
    """Unpickling this would run a shell command creating the sentinel file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def evil_payloads(tmp_path: Path) -> tuple[list[bytes], list[Path]]:
    sentinels = [tmp_path / "pwned-open", tmp_path / "pwned-system"]
    payloads = []
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        payloads.append(pickle.dumps(_OpenFile(str(sentinels[0])), protocol=proto))
        payloads.append(pickle.dumps(_SystemCall(str(sentinels[1])), protocol=proto))
    return payloads, sentinels


def test_pickle_payload_is_real_and_inert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payloads, sentinels = evil_payloads(tmp_path)
    for p in payloads:
        # control (without executing): every payload does carry a REDUCE call
        ops = {op.name for op, _, _ in pickletools.genops(p)}
        assert "REDUCE" in ops

    calls: list[str] = []

    def trap(name: str) -> Any:
        def _trap(*a: Any, **k: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"pickle.{name} was called")

        return _trap

    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, trap(name))

    for p in payloads:
        # straight through the codec
        with pytest.raises(DecodeError):
            decode_message(unpackb(p))
        # framed, to every kind of connection
        for side in (Side.SERVER, Side.CLIENT):
            for stage in ("fresh", "open"):
                conn = make_conn(side, stage)
                with pytest.raises(DecodeError):
                    conn.receive_data(encode_frame(p))
                assert conn.state is State.CLOSED
        # unframed: the pickle's first bytes become a length header
        conn = make_conn(Side.SERVER, "open")
        try:
            conn.receive_data(p)
        except ProtocolError:
            pass
        # as opaque bytes inside a valid message, it stays opaque bytes
        srv, cli = open_pair()
        carrier = ErrorReply(request_id=1, code="X", message="m", details={"blob": p})
        (got,) = cli.receive_data(srv.send(carrier))
        assert got.details["blob"] == p and isinstance(got.details["blob"], bytes)

    assert calls == []
    for s in sentinels:
        assert not s.exists()
