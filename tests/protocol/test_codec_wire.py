"""Codec (msgpack + ndarray ext) and typed wire decoding."""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import numpy as np
import pytest

from ezmsg_console.protocol import catalog, endpoints, graph, messages, process, profiling, settings
from ezmsg_console.protocol.codec import EXT_NDARRAY, packb, unpackb
from ezmsg_console.protocol.errors import (
    ConsoleError,
    DecodeError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from ezmsg_console.protocol.graph import (
    PublisherInfo,
    SubscriberInfo,
    ComponentMetadata,
    ComponentType,
    EdgeOwners,
    EdgeRef,
    GraphMetadata,
    GraphSnapshot,
    ProcessInfo,
    SessionInfo,
    StreamDirection,
    StreamMetadata,
    TopologyEvent,
    TopologyEventType,
)
from ezmsg_console.protocol.messages import Role, StreamKind
from ezmsg_console.protocol.wire import Message, decode_message, encode_message, from_wire, known_kinds, to_wire

# -- one example of every kind ------------------------------------------------

METADATA = GraphMetadata(
    components=(
        ComponentMetadata(
            address="SYS",
            name="SYS",
            component_type=ComponentType.COLLECTION,
            python_type="pkg.System",
            children=("SYS/GEN", "SYS/LOG"),
        ),
        ComponentMetadata(
            address="SYS/GEN",
            name="GEN",
            component_type=ComponentType.UNIT,
            python_type="pkg.Generator",
            streams=(
                StreamMetadata(
                    name="OUTPUT",
                    direction=StreamDirection.OUTPUT,
                    topic="SYS/GEN/OUTPUT",
                    msg_type="numpy.ndarray",
                    options={"leaky": True, "max_queue": 8},
                ),
                StreamMetadata(name="INPUT", direction=StreamDirection.INPUT, topic="SYS/GEN/INPUT"),
            ),
            settings_type="pkg.GenSettings",
            initial_settings={"rate": 10.5, "channels": [1, 2, 3], "name": "gen"},
            settings_schema={"type": "object", "properties": {"rate": {"type": "number"}}},
            dynamic_settings=True,
        ),
        ComponentMetadata(address="SYS/LOG", name="LOG", component_type=ComponentType.UNIT),
    )
)

TOPOLOGY_EVENT = TopologyEvent(
    seq=42,
    event_type=TopologyEventType.PROCESS_CHANGED,
    timestamp=1712345678.25,
    changed_topics=("SYS/GEN/OUTPUT", "SYS/LOG/INPUT"),
    source_session_id="sess-1",
    source_process_id="proc-9",
    server_epoch="epoch-abc",
)

PUBLISHER = PublisherInfo(
    pub_id="pub-1", topic="SYS/GEN/OUTPUT", peer_id="proc-9", host_id="box:boot:4026531840", hostname="box",
    pid=1234, unix_address="\x00ezc-abc", tcp_host="127.0.0.1", tcp_port=40123, num_buffers=8,
    buf_size=1 << 20, force_tcp=True,
)
SUBSCRIBER = SubscriberInfo(
    sub_id="sub-1", topic="SYS/LOG/INPUT", peer_id="proc-10", host_id="box:boot:4026531840", hostname="box",
    pid=1235, leaky=True, max_queue=4,
)

SETTINGS_VALUE = settings.SettingsSnapshotValue(
    structured_value={"gain": 2.0, "mode": "fast"}, repr_value={"gain": 2.0, "mode": "fast"},
    settings_schema={"provider": "dataclass", "settings_type": "m.S", "fields": []},
)
SETTINGS_EVENT = settings.SettingsChangedEvent(
    seq=9, event_type=settings.SettingsEventType.SETTINGS_UPDATED, component_address="SYS/A", timestamp=3.25,
    value=SETTINGS_VALUE, source_session_id="sess-1", source_process_id="proc-9", server_epoch="ep",
)

SNAPSHOT = GraphSnapshot(
    server_id="srv-1",
    server_epoch="epoch-abc",
    topology_seq=17,
    timestamp=1712345678.5,
    graph={"SYS/GEN/OUTPUT": ("SYS/LOG/INPUT", "X/IN"), "SYS/LOG/INPUT": ()},
    edge_owners=(
        EdgeOwners(from_topic="SYS/GEN/OUTPUT", to_topic="SYS/LOG/INPUT", owners=("persistent", "sess-1")),
        EdgeOwners(from_topic="SYS/GEN/OUTPUT", to_topic="X/IN", owners=("sess-2",)),
    ),
    sessions=(
        SessionInfo(
            session_id="sess-1",
            name="my session",
            role="session",
            peer_address="127.0.0.1:40000",
            connected_since=1712340000.0,
            edges=(EdgeRef(from_topic="SYS/GEN/OUTPUT", to_topic="SYS/LOG/INPUT"),),
            metadata=METADATA,
        ),
        SessionInfo(
            session_id="sess-2",
            name="other",
            role="observer",
            peer_address="[::1]:40001",
            connected_since=1712340001.5,
        ),
    ),
    processes=(
        ProcessInfo(process_id="proc-9", pid=1234, host="box", units=("SYS/GEN",), connected_since=3.5),
        ProcessInfo(process_id="proc-10", pid=None, host=None, units=(), connected_since=4.0),
    ),
    publishers=(PUBLISHER,),
    subscribers=(SUBSCRIBER,),
)

TRACE_BATCH = profiling.ProfilingTraceBatch(
    process_id="proc-9", pid=1234, host="box",
    samples=(
        profiling.ProfilingTraceSample(timestamp_mono_ns=10**15, endpoint_id="pub-1", topic="SYS/GEN/OUTPUT",
                                       metric="publish_delta_ns", value_ns=5000, channel_kind="SHM", sample_seq=7),
        profiling.ProfilingTraceSample(timestamp_mono_ns=10**15 + 9, endpoint_id="sub-1", topic="SYS/LOG/INPUT",
                                       metric="handler_ns", value_ns=123, channel_kind="TCP", sample_seq=7),
    ),
    dropped=3, tracing=True, timestamp_wall_s=1712345679.5, gap_from=11, gap_to=20,
)
TRACE_BATCH_2 = profiling.ProfilingTraceBatch(process_id="proc-10", pid=-1, host="", samples=(), dropped=1,
                                              tracing=True, timestamp_wall_s=2.5, gap_from=1, gap_to=4)

EXAMPLES: dict[str, Message] = {
    "SERVER_HELLO": messages.ServerHello(
        protocol_version=7, server_id="srv-1", server_epoch="ep", nonce="ab" * 16, auth_required=True
    ),
    "HELLO": messages.Hello(
        protocol_version=7, role=Role.PROCESS, name="worker", client_nonce="cd" * 16, auth="f00d" * 16
    ),
    "WELCOME": messages.Welcome(
        protocol_version=7,
        server_id="srv-1",
        server_epoch="ep",
        peer_id="peer-3",
        role=Role.PROCESS,
        max_frame_size=123456,
        server_proof="beef" * 16,
        data_secret="5ec2" * 16,
    ),
    "PING": messages.PingRequest(request_id=11),
    "SYNC": messages.SyncRequest(request_id=12),
    "SESSION_REGISTER": messages.RegisterMetadata(request_id=13, metadata=METADATA),
    "CONNECT": messages.ConnectEdge(request_id=14, from_topic="A/OUT", to_topic="B/IN", persistent=True),
    "DISCONNECT": messages.DisconnectEdge(request_id=15, from_topic="A/OUT", to_topic="B/IN", persistent=True),
    "SESSION_CLEAR": messages.ClearSession(request_id=16),
    "SNAPSHOT": messages.SnapshotRequest(request_id=17),
    "SUBSCRIBE": messages.Subscribe(request_id=18, stream=StreamKind.TOPOLOGY, after_seq=-1),
    "UNSUBSCRIBE": messages.Unsubscribe(request_id=19, stream_id="st-1"),
    "SHUTDOWN": messages.ShutdownRequest(request_id=20),
    "ACK": messages.Ack(request_id=21),
    "PONG": messages.Pong(request_id=22, server_time=1712345678.125, server_epoch="ep"),
    "SNAPSHOT_REPLY": messages.SnapshotReply(request_id=23, snapshot=SNAPSHOT),
    "SUBSCRIBED": messages.Subscribed(request_id=24, stream_id="st-2", stream=StreamKind.TOPOLOGY, current_seq=99),
    "ERROR": messages.ErrorReply(
        request_id=25,
        code="ADDRESS_COLLISION",
        message="taken",
        details={"addresses": ["A", "B"], "nested": {"n": 1, "b": b"\x00\xff"}, "none": None},
    ),
    "STREAM_EVENT": messages.StreamEvent(stream_id="st-2", stream=StreamKind.TOPOLOGY, seq=42, event=TOPOLOGY_EVENT),
    "STREAM_GAP": messages.StreamGap(
        stream_id="st-2", stream=StreamKind.TOPOLOGY, from_seq=3, to_seq=9, reason="overflow"
    ),
    "STREAM_CLOSED": messages.StreamClosed(stream_id="st-2", stream=StreamKind.TOPOLOGY, reason="shutdown"),
    "TOPOLOGY_EVENT": TOPOLOGY_EVENT,
    "REGISTER_PUBLISHER": endpoints.RegisterPublisher(request_id=31, info=PUBLISHER),
    "REGISTER_SUBSCRIBER": endpoints.RegisterSubscriber(request_id=32, info=SUBSCRIBER),
    "UNREGISTER_ENDPOINT": endpoints.UnregisterEndpoint(request_id=33, endpoint_id="pub-1"),
    "ROUTES_UPDATE": endpoints.RoutesUpdate(sub_id="sub-1", publishers=(PUBLISHER,)),
    "PROCESS_REGISTER": process.ProcessRegister(request_id=41, pid=77, host="box", units=("SYS/A", "SYS/B")),
    "PROCESS_UPDATE_OWNERSHIP": process.ProcessUpdateOwnership(request_id=42, added_units=("SYS/C",),
                                                               removed_units=("SYS/A",)),
    "PROCESS_REQUEST": process.ProcessRequest(request_id=43, unit_address="SYS/A", operation="ECHO",
                                              payload={"x": [1, 2.5, None]}, timeout=0.5, expected_seq=9),
    "PROCESS_CONTROL_RESPONSE": process.ProcessControlResponse(request_id=43, ok=False, payload=[0],
                                                               error="boom", error_code="HANDLER_ERROR",
                                                               process_id="proc-9", details={"a": 1}),
    "PROCESS_ROUTE_REQUEST": process.RoutedRequest(route_id="r-1", unit_address="SYS/A", operation="PING",
                                                   payload=b"\x00", source_session_id="sess-1", timeout=1.5),
    "SETTINGS_EVENT": SETTINGS_EVENT,
    "PROCESS_SETTINGS_UPDATE": settings.ProcessSettingsUpdate(request_id=51, component_address="SYS/A",
                                                              value=SETTINGS_VALUE, timestamp=12.5),
    "SETTINGS_SNAPSHOT": settings.SettingsSnapshotRequest(request_id=52),
    "SETTINGS_SNAPSHOT_REPLY": settings.SettingsSnapshotReply(
        request_id=52, last_seq=9,
        states=(settings.SettingsState("SYS/A", SETTINGS_VALUE, "sess-1", "proc-9", 9),)),
    "SETTINGS_EVENTS": settings.SettingsEventsRequest(request_id=53, after_seq=4),
    "SETTINGS_EVENTS_REPLY": settings.SettingsEventsReply(request_id=53, events=(SETTINGS_EVENT,), last_seq=9,
                                                          gap_from=1, gap_to=3),
    "PROCESS_ROUTE_RESPONSE": process.RoutedResponse(route_id="r-1", ok=False, payload={"pong": True}, error="e",
                                                     error_code="X", details={"k": "v"}),
    "PROCESS_PROFILING_TRACE_UPDATE": profiling.ProcessProfilingTraceUpdate(batch=TRACE_BATCH),
    "PROFILING_SUBSCRIBE": profiling.ProfilingSubscribe(
        request_id=61, control=profiling.ProfilingStreamControl(interval=0.25, max_samples=64,
                                                                process_ids=("proc-9", "proc-10"),
                                                                include_empty_batches=True)),
    "PROFILING_TRACE_EVENT": profiling.ProfilingTraceEvent(seq=12, timestamp_wall_s=1712345679.75,
                                                           batches=(TRACE_BATCH, TRACE_BATCH_2)),
}


def round_trip(msg: Message) -> Message:
    return decode_message(unpackb(packb(encode_message(msg))))


def test_examples_cover_every_kind() -> None:
    assert set(EXAMPLES) == set(catalog.KINDS)
    assert set(known_kinds()) == set(catalog.KINDS)
    for kind, msg in EXAMPLES.items():
        assert type(msg) is catalog.KINDS[kind]
        assert msg.KIND == kind


@pytest.mark.parametrize("kind", sorted(catalog.KINDS))
def test_every_kind_round_trips(kind: str) -> None:
    msg = EXAMPLES[kind]
    back = round_trip(msg)
    assert type(back) is type(msg)
    assert back == msg


def test_examples_use_non_default_values() -> None:
    import dataclasses

    for kind, msg in EXAMPLES.items():
        for f in dataclasses.fields(msg):
            if f.default is not dataclasses.MISSING:
                assert getattr(msg, f.name) != f.default, (kind, f.name)
            elif f.default_factory is not dataclasses.MISSING:
                assert getattr(msg, f.name) != f.default_factory(), (kind, f.name)


def test_wire_map_shape() -> None:
    wire = encode_message(EXAMPLES["STREAM_EVENT"])
    assert wire["kind"] == "STREAM_EVENT"
    assert wire["stream"] == "topology"
    assert wire["event"]["kind"] == "TOPOLOGY_EVENT"
    assert wire["event"]["event_type"] == "PROCESS_CHANGED"
    assert wire["event"]["changed_topics"] == ["SYS/GEN/OUTPUT", "SYS/LOG/INPUT"]
    comp = encode_message(EXAMPLES["SESSION_REGISTER"])["metadata"]["components"][1]
    assert "kind" not in comp  # plain dataclasses carry no tag
    assert comp["component_type"] == "unit"
    assert comp["streams"][0]["direction"] == "output"


def test_decoded_types() -> None:
    back = round_trip(EXAMPLES["SNAPSHOT_REPLY"])
    assert isinstance(back, messages.SnapshotReply)
    snap = back.snapshot
    assert isinstance(snap.graph["SYS/GEN/OUTPUT"], tuple)
    assert isinstance(snap.sessions[0].metadata, GraphMetadata)
    assert snap.sessions[0].metadata.components[1].component_type is ComponentType.UNIT
    assert snap.sessions[0].metadata.components[1].streams[0].direction is StreamDirection.OUTPUT
    assert snap.edges == [("SYS/GEN/OUTPUT", "SYS/LOG/INPUT"), ("SYS/GEN/OUTPUT", "X/IN")]
    assert snap.session("sess-2").metadata is None
    ev = round_trip(EXAMPLES["STREAM_EVENT"])
    assert isinstance(ev.event, TopologyEvent)
    assert ev.event.event_type is TopologyEventType.PROCESS_CHANGED


def test_int_accepted_for_float_field() -> None:
    wire = encode_message(messages.Pong(request_id=1, server_time=5.0, server_epoch="e"))
    wire["server_time"] = 5
    back = decode_message(unpackb(packb(wire)))
    assert back.server_time == 5.0 and isinstance(back.server_time, float)


def test_encode_message_refuses_non_messages() -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(SNAPSHOT)  # a plain dataclass, not a tagged message
    with pytest.raises(LocalProtocolError):
        encode_message({"kind": "PING", "request_id": 1})  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode_message(messages.Request(request_id=1))  # base class has no KIND


def test_packb_refuses_unencodable() -> None:
    with pytest.raises(LocalProtocolError):
        packb({"x": object()})
    with pytest.raises(LocalProtocolError):
        packb(2**70)
    assert unpackb(packb({"s": {3, 1, 2}})) == {"s": [1, 2, 3]}
    assert unpackb(packb(np.float32(1.5))) == 1.5
    assert unpackb(packb(np.int64(7))) == 7


# -- numpy arrays --------------------------------------------------------------

ARRAYS = {
    "float32-2d": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "int16": np.array([-32768, -1, 0, 1, 32767], dtype=np.int16),
    "bool": np.array([[True, False], [False, True]]),
    "complex64": np.array([1 + 2j, -3.5j, 0], dtype=np.complex64),
    "zero-size": np.zeros((0, 5), dtype=np.float64),
    "non-contiguous": np.arange(60, dtype=np.int32).reshape(6, 10)[::2, 1::3],
    "fortran": np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
    "big-endian": np.array([1, 256, 65536], dtype=">i4"),
    "datetime": np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[D]"),
    "unicode": np.array(["ab", "xyz"]),
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_ndarray_round_trip(name: str) -> None:
    arr = ARRAYS[name]
    back = unpackb(packb({"data": arr, "other": [1, arr]}))
    for got in (back["data"], back["other"][1]):
        assert isinstance(got, np.ndarray)
        assert got.dtype == arr.dtype
        assert got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


def test_zero_dim_ndarray_keeps_shape() -> None:
    arr = np.array(3.25, dtype=np.float64)
    back = unpackb(packb(arr))
    assert back.shape == ()
    assert back.dtype == arr.dtype
    assert back[()] == 3.25


def test_zero_dim_non_contiguous_view_keeps_shape() -> None:
    arr = np.arange(10, dtype=np.int16)[::3][1, ...]  # 0-d view of a strided array
    back = unpackb(packb(arr))
    assert back.shape == () and back.dtype == np.int16 and int(back) == 3


def test_non_contiguous_example_really_is() -> None:
    assert not ARRAYS["non-contiguous"].flags.c_contiguous
    assert ARRAYS["non-contiguous"].shape == (3, 3)


def test_ndarray_is_ext_type() -> None:
    raw = msgpack.unpackb(packb(np.array([1, 2], dtype=np.int8)), raw=False)
    assert isinstance(raw, msgpack.ExtType)
    assert raw.code == EXT_NDARRAY


def test_object_dtype_refused_on_encode() -> None:
    with pytest.raises(LocalProtocolError):
        packb(np.array([1, "a", None], dtype=object))
    with pytest.raises(LocalProtocolError):
        packb({"x": np.zeros(2, dtype=[("a", "i4"), ("b", "O")])})


def _ext(dtype_str: str, shape: list[Any], payload: bytes, code: int = EXT_NDARRAY) -> bytes:
    header = msgpack.packb([dtype_str, shape], use_bin_type=True)
    return msgpack.packb(msgpack.ExtType(code, header + payload), use_bin_type=True)


def test_forged_ext_well_formed_control() -> None:
    # the forging helper produces something that does decode when honest
    got = unpackb(_ext("<i4", [2], np.array([5, 6], dtype="<i4").tobytes()))
    np.testing.assert_array_equal(got, [5, 6])


@pytest.mark.parametrize("dtype_str", ["|O", "O", "<O8"])
def test_forged_object_dtype_refused_on_decode(dtype_str: str) -> None:
    with pytest.raises(DecodeError):
        unpackb(_ext(dtype_str, [1], b"\x00" * 8))


def test_forged_structured_object_dtype_refused() -> None:
    # dtype strings naming a structured dtype are not accepted either way
    with pytest.raises(DecodeError):
        unpackb(_ext("[('a', 'O')]", [1], b"\x00" * 8))


@pytest.mark.parametrize(
    "dtype_str,shape,nbytes",
    [
        ("<i4", [3], 8),
        ("<i4", [3], 16),
        ("<f8", [2, 2], 31),
        ("<f8", [0], 8),
        ("|b1", [], 0),
    ],
)
def test_ext_length_mismatch_refused(dtype_str: str, shape: list[int], nbytes: int) -> None:
    with pytest.raises(DecodeError):
        unpackb(_ext(dtype_str, shape, b"\x01" * nbytes))


@pytest.mark.parametrize(
    "body",
    [
        _ext("<i4", [-1], b""),
        _ext("<i4", [1.5], b"\x00" * 4),
        _ext("<i4", ["2"], b"\x00" * 8),
        _ext("not-a-dtype", [1], b"\x00"),
        msgpack.packb(msgpack.ExtType(EXT_NDARRAY, b"")),
        msgpack.packb(msgpack.ExtType(EXT_NDARRAY, b"\xc1")),
        msgpack.packb(msgpack.ExtType(EXT_NDARRAY, msgpack.packb({"a": 1}))),
        msgpack.packb(msgpack.ExtType(EXT_NDARRAY, msgpack.packb(["<i4", 3]))),
        _ext("<i4", [2**40, 2**40], b""),
    ],
)
def test_malformed_ext_header_refused(body: bytes) -> None:
    with pytest.raises(DecodeError):
        unpackb(body)


@pytest.mark.parametrize("code", [0, 2, 5, 127])
def test_unknown_ext_code_refused(code: int) -> None:
    with pytest.raises(DecodeError):
        unpackb(msgpack.packb({"x": msgpack.ExtType(code, b"payload")}))


@pytest.mark.parametrize("raw", [b"\xd4\xfb\x00", b"\xc7\x02\x80ab"])  # fixext1 type -5, ext8 type -128
def test_negative_ext_code_refused(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        unpackb(raw)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",  # never-used byte
        b"\x92\x01",  # truncated array
        b"\x01\x02",  # extra data
        msgpack.packb({1: "int key"}),
        msgpack.packb({None: 1}),
        msgpack.packb([{1.5: 1}]),
    ],
)
def test_unpackb_malformed(body: bytes) -> None:
    with pytest.raises(DecodeError):
        unpackb(body)


# -- wrong-shaped but valid msgpack ------------------------------------------


def wire_of(kind: str) -> dict[str, Any]:
    return copy.deepcopy(encode_message(EXAMPLES[kind]))


def _set(d: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    target: Any = d
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    return d


def _del(d: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    target: Any = d
    for p in path[:-1]:
        target = target[p]
    del target[path[-1]]
    return d


COMP = ("metadata", "components", 1)
SNAP_COMP = ("snapshot", "sessions", 0, "metadata", "components", 1)

BAD_WIRE: dict[str, Any] = {
    "not a map": [1, 2, 3],
    "not a map (str)": "PING",
    "not a map (nil)": None,
    "missing kind": _del(wire_of("PING"), ("kind",)),
    "kind not str": _set(wire_of("PING"), ("kind",), 1),
    "unknown kind": _set(wire_of("PING"), ("kind",), "PINGG"),
    "base class kind": _set(wire_of("PING"), ("kind",), ""),
    "missing request_id": _del(wire_of("PING"), ("request_id",)),
    "missing nested field": _del(wire_of("SESSION_REGISTER"), (*COMP, "name")),
    "missing event seq": _del(wire_of("STREAM_EVENT"), ("event", "seq")),
    "str for int": _set(wire_of("PING"), ("request_id",), "11"),
    "bool for int": _set(wire_of("PING"), ("request_id",), True),
    "float for int": _set(wire_of("PING"), ("request_id",), 1.0),
    "nil for int": _set(wire_of("PING"), ("request_id",), None),
    "int for str": _set(wire_of("UNSUBSCRIBE"), ("stream_id",), 5),
    "bytes for str": _set(wire_of("UNSUBSCRIBE"), ("stream_id",), b"st"),
    "int for bool": _set(wire_of("CONNECT"), ("persistent",), 1),
    "str for float": _set(wire_of("PONG"), ("server_time",), "1.5"),
    "bool for float": _set(wire_of("PONG"), ("server_time",), False),
    "list for map": _set(wire_of("SESSION_REGISTER"), ("metadata",), []),
    "list for details map": _set(wire_of("ERROR"), ("details",), [["a", 1]]),
    "map for list": _set(wire_of("SESSION_REGISTER"), ("metadata", "components"), {}),
    "str for list": _set(wire_of("STREAM_EVENT"), ("event", "changed_topics"), "abc"),
    "int in str tuple": _set(wire_of("STREAM_EVENT"), ("event", "changed_topics", 0), 3),
    "int for nested str": _set(wire_of("SESSION_REGISTER"), (*COMP, "name"), 3),
    "int for nested children": _set(wire_of("SESSION_REGISTER"), (*COMP, "children"), 3),
    "map for stream metadata": _set(wire_of("SESSION_REGISTER"), (*COMP, "streams", 0), "OUTPUT"),
    "bad stream options": _set(wire_of("SESSION_REGISTER"), (*COMP, "streams", 0, "options"), [1]),
    "deep wrong type in snapshot": _set(wire_of("SNAPSHOT_REPLY"), (*SNAP_COMP, "dynamic_settings"), "yes"),
    "bad graph value": _set(wire_of("SNAPSHOT_REPLY"), ("snapshot", "graph", "SYS/GEN/OUTPUT"), [1]),
    "bad pid": _set(wire_of("SNAPSHOT_REPLY"), ("snapshot", "processes", 0, "pid"), "1234"),
    "invalid role": _set(wire_of("HELLO"), ("role",), "admin"),
    "role wrong type": _set(wire_of("HELLO"), ("role",), ["session"]),
    "role unhashable map": _set(wire_of("HELLO"), ("role",), {"a": 1}),
    "invalid stream kind": _set(wire_of("SUBSCRIBE"), ("stream",), "TOPOLOGY"),
    "invalid component type": _set(wire_of("SESSION_REGISTER"), (*COMP, "component_type"), "widget"),
    "invalid direction": _set(wire_of("SESSION_REGISTER"), (*COMP, "streams", 0, "direction"), 1),
    "invalid event type": _set(wire_of("STREAM_EVENT"), ("event", "event_type"), "NOPE"),
    "event not an Event kind": _set(wire_of("STREAM_EVENT"), ("event",), {"kind": "PING", "request_id": 1}),
    "event without kind": _del(wire_of("STREAM_EVENT"), ("event", "kind")),
    "duplicate component addresses": _set(
        wire_of("SESSION_REGISTER"), ("metadata", "components", 2, "address"), "SYS/GEN"
    ),
    "empty component address": _set(wire_of("SESSION_REGISTER"), (*COMP, "address"), ""),
    "empty address segment": _set(wire_of("SESSION_REGISTER"), (*COMP, "address"), "A//B"),
    "trailing slash address": _set(wire_of("SESSION_REGISTER"), (*COMP, "address"), "A/"),
    "padded address": _set(wire_of("SESSION_REGISTER"), (*COMP, "address"), " A"),
    "bad address inside snapshot": _set(wire_of("SNAPSHOT_REPLY"), (*SNAP_COMP, "address"), "A//B"),
    "non-str key in dict field": _set(wire_of("SNAPSHOT_REPLY"), ("snapshot", "graph"), {b"k": []}),
    "trace columns disagree": _set(wire_of("PROCESS_PROFILING_TRACE_UPDATE"), ("batch", "seqs"), b"\0" * 8),
    "trace index past its table": _set(wire_of("PROFILING_TRACE_EVENT"), ("batches", 0, "metric_index"), b"\0\7"),
    "trace column not bin": _set(wire_of("PROCESS_PROFILING_TRACE_UPDATE"), ("batch", "timestamps"), [1, 2]),
}


def test_bad_wire_controls_are_valid() -> None:
    # each mutation starts from a map that does decode
    for kind in EXAMPLES:
        assert decode_message(wire_of(kind)) == EXAMPLES[kind]


@pytest.mark.parametrize("case", sorted(BAD_WIRE))
def test_wrong_shape_is_decode_error(case: str) -> None:
    data = BAD_WIRE[case]
    # through the real codec, so the data is exactly what a peer could send
    body = msgpack.packb(data, use_bin_type=True)
    with pytest.raises(DecodeError) as info:
        decode_message(unpackb(body))
    err = info.value
    assert isinstance(err, RemoteProtocolError)
    assert isinstance(err, ProtocolError)
    assert isinstance(err, ConsoleError)
    assert type(err) is DecodeError


def test_decode_error_names_path() -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(_set(wire_of("SESSION_REGISTER"), (*COMP, "name"), 3))
    assert info.value.details["path"] == "metadata.components[1].name"
    assert info.value.details["expected"] == "str"
    assert info.value.details["got"] == "int"
    with pytest.raises(DecodeError) as info:
        decode_message(_del(wire_of("PING"), ("request_id",)))
    assert info.value.details["path"] == "request_id"


def test_unknown_kind_details() -> None:
    with pytest.raises(DecodeError) as info:
        decode_message({"kind": "EXEC", "cmd": "rm -rf /"})
    assert info.value.details["kind"] == "EXEC"


def test_extra_fields_ignored() -> None:
    wire = wire_of("PING")
    wire["unexpected"] = {"anything": [1, 2]}
    assert decode_message(wire) == EXAMPLES["PING"]


def test_optional_fields_default_when_absent() -> None:
    wire = wire_of("CONNECT")
    del wire["persistent"]
    assert decode_message(wire) == messages.ConnectEdge(request_id=14, from_topic="A/OUT", to_topic="B/IN")


def test_graph_metadata_validation_direct() -> None:
    comp = ComponentMetadata(address="A", name="A", component_type=ComponentType.UNIT)
    with pytest.raises(ValueError):
        GraphMetadata(components=(comp, comp))
    for bad in ("", "A//B", "/A", "A/", " A", "A "):
        with pytest.raises(ValueError):
            ComponentMetadata(address=bad, name="x", component_type=ComponentType.UNIT)
    assert graph.validate_address("A/B/C") == "A/B/C"
    assert GraphMetadata(components=(comp,)).addresses == ["A"]


# -- deep nesting ------------------------------------------------------------------


def _error_reply_with_nested_details(depth: int) -> bytes:
    """Raw msgpack of an ErrorReply whose ``details['a']`` is ``depth`` nested lists."""
    head = msgpack.packb({"kind": "ERROR", "request_id": None, "code": "X", "message": "m"})
    assert head[0] == 0x84
    return (
        bytes([0x85])
        + head[1:]
        + msgpack.packb("details")
        + b"\x81"
        + msgpack.packb("a")
        + b"\x91" * depth
        + b"\xc0"
    )


def test_nested_body_control_decodes() -> None:
    msg = decode_message(unpackb(_error_reply_with_nested_details(3)))
    assert msg == messages.ErrorReply(request_id=None, code="X", message="m", details={"a": [[[None]]]})
    assert round_trip(msg) == msg


def test_nesting_beyond_unpacker_limit_is_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_message(unpackb(_error_reply_with_nested_details(5000)))


@pytest.mark.parametrize("depth", [31, 32, 33, 300, 900])
def test_free_form_nesting_is_bounded_so_whatever_decodes_re_encodes(depth: int) -> None:
    from ezmsg_console.protocol.wire import MAX_FREE_FORM_DEPTH

    body = _error_reply_with_nested_details(depth)
    if depth > MAX_FREE_FORM_DEPTH:  # details["a"] is the free-form value
        with pytest.raises(DecodeError, match="nested deeper"):
            decode_message(unpackb(body))
        return
    msg = decode_message(unpackb(body))
    assert decode_message(unpackb(packb(encode_message(msg)))) == msg


# -- profiling snapshots: the timing sample fields ----------------------------------


def _sampled_snapshot(**timing: Any) -> profiling.ProcessProfilingSnapshot:
    hist = profiling.HistogramSnapshot(count=40, sum_ns=4000, p50_ns=90.0, p90_ns=120.0, p99_ns=150.0,
                                       max_ns=160.0, bucket_indices=(20, 21), bucket_counts=(30, 10))
    sub = profiling.SubscriberProfile("sub-1", "A/IN", 4000, 0, 0, "LOCAL", handler_ns=hist, latency_ns=hist,
                                      **timing)
    return profiling.ProcessProfilingSnapshot(
        process_id="p", pid=1, host="h", timestamp_mono_ns=5, timestamp_wall_s=6.0, window_seconds=1.0,
        histograms_enabled=True, histogram_edges_ns=(0, 10), subscribers=(sub,))


def test_timing_sample_fields_round_trip_through_msgpack() -> None:
    snap = _sampled_snapshot(timed_messages_total=40, timed_messages_window=12, timing_sample_k=100)
    raw = unpackb(packb(to_wire(snap)))
    sub = raw["subscribers"][0]
    assert (sub["timed_messages_total"], sub["timed_messages_window"], sub["timing_sample_k"]) == (40, 12, 100)
    back = from_wire(profiling.ProcessProfilingSnapshot, raw)
    assert back == snap and back.subscribers[0].timing_sample_k == 100


def test_a_snapshot_from_an_older_peer_decodes_with_timing_unreported() -> None:
    raw = unpackb(packb(to_wire(_sampled_snapshot(timed_messages_total=40, timed_messages_window=12,
                                                       timing_sample_k=100))))
    for name in ("timed_messages_total", "timed_messages_window", "timing_sample_k"):
        del raw["subscribers"][0][name]  # what a process from before sampling sends
    sub = from_wire(profiling.ProcessProfilingSnapshot, raw).subscribers[0]
    assert (sub.timed_messages_total, sub.timed_messages_window, sub.timing_sample_k) == (None, None, 1)
    assert sub == _sampled_snapshot().subscribers[0]
