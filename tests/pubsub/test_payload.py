"""The data-plane payload codec: round trips, layout, alignment, copy semantics, hostile input."""

from __future__ import annotations

import dataclasses
import enum
import mmap
import pickle
import struct
from typing import Any, Optional

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ezmsg_console.protocol.errors import DecodeError, LocalProtocolError
from ezmsg_console.pubsub import payload
from ezmsg_console.pubsub.payload import Encoded, decode, encode, to_bytes, type_name, types_for, write_into

from ..conftest import fuzz_examples

FUZZ = settings(max_examples=fuzz_examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass(frozen=True)
class Inner:
    gain: float
    data: np.ndarray


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    items: list[Inner]
    maybe: Optional[Inner] = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    derived: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.derived = len(self.items)


@dataclasses.dataclass
class Node:
    value: int
    child: Optional[Node] = None


def roundtrip(msg: Any, **kw: Any) -> Any:
    enc = encode(msg)
    raw = to_bytes(enc)
    assert len(raw) == enc.nbytes
    return decode(raw, **kw)


def same_array(a: np.ndarray, b: np.ndarray) -> None:
    assert isinstance(b, np.ndarray)
    assert b.dtype == a.dtype and b.dtype.str == a.dtype.str
    assert b.shape == a.shape
    assert np.ascontiguousarray(a).tobytes() == b.tobytes()


def msgpack_payload(body: bytes, lens: tuple[int, ...] = (), data: bytes = b"") -> bytes:
    """A hand-made tag-4 payload: buffer table + body, then ``data`` at the first aligned offset."""
    meta = struct.pack(f"<I{len(lens)}Q", len(lens), *lens) + body
    head = struct.pack("<IB", len(meta), payload.TAG_MSGPACK) + meta
    return head + bytes(-len(head) % 64) + data


def fast_payload(meta: bytes, data: bytes) -> bytes:
    """A hand-made tag-1 (bare ndarray) payload: ``meta`` then ``data`` at the first aligned offset."""
    head = struct.pack("<IB", len(meta), payload.TAG_NDARRAY) + meta
    return head + bytes(-len(head) % 64) + data


def array_meta(dtype: str, shape: tuple[int, ...]) -> bytes:
    ds = dtype.encode()
    return struct.pack(f"<B{len(ds)}sB{len(shape)}Q", len(ds), ds, len(shape), *shape)


# -- round trips ----------------------------------------------------------------

DTYPES = ["?", "i1", "u1", "<i2", ">i2", "<u4", "<i8", ">u8", "<f2", "<f4", ">f4", "<f8", ">f8",
          "<c8", "<c16", ">c16", "<M8[ns]", "<m8[s]", "|S5", "<U3", "|V4", "<f16"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (7,), (2, 3, 4)])
def test_array_roundtrip_all_dtypes_and_shapes(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    arr = raw.view(dtype).reshape(shape) if raw.size else np.zeros(shape, dtype)
    enc = encode(arr)
    assert enc.header[4] == payload.TAG_NDARRAY  # the fast path, no msgpack
    for copy in (True, False):
        out = decode(to_bytes(enc), copy=copy)
        same_array(arr, out)
        assert out.flags.writeable is copy
    same_array(arr, roundtrip({"x": [arr]})["x"][0])  # and nested, via msgpack


@given(hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(endianness="?"), hnp.unsigned_integer_dtypes(endianness="?"),
                    hnp.floating_dtypes(endianness="?"), hnp.complex_number_dtypes(endianness="?"),
                    hnp.boolean_dtypes(), hnp.datetime64_dtypes(endianness="?"),
                    hnp.byte_string_dtypes(min_len=1), hnp.unicode_string_dtypes(min_len=1)),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)))
@settings(max_examples=fuzz_examples(100), deadline=None)
def test_array_roundtrip_hypothesis(arr: np.ndarray) -> None:
    same_array(arr, roundtrip(arr))
    same_array(arr, roundtrip([1, {"a": arr}], copy=False)[1]["a"])


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=40) | st.binary(min_size=1024, max_size=1500),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)


@given(plain)
@settings(max_examples=fuzz_examples(150), deadline=None)
def test_plain_data_roundtrip_hypothesis(msg: Any) -> None:
    assert roundtrip(msg) == msg
    assert roundtrip(msg, copy=False) == msg


@pytest.mark.parametrize("msg,expected", [
    (None, None), (True, True), (0, 0), (-(2**63), -(2**63)), (2**64 - 1, 2**64 - 1), (1.5, 1.5),
    ("héllo", "héllo"), (b"", b""), (b"ab", b"ab"), (b"z" * 5000, b"z" * 5000),
    (bytearray(b"xy"), b"xy"), (memoryview(b"q" * 3000), b"q" * 3000), (bytearray(2000), bytes(2000)),
    (memoryview(np.arange(600, dtype="<f4")), np.arange(600, dtype="<f4").tobytes()),
    (memoryview(b"abcdef")[::2], b"ace"), ((1, (2, 3)), [1, [2, 3]]),
    ({"a": 1, "b": [1.0, 2.0]}, {"a": 1, "b": [1.0, 2.0]}),
    (np.float32(2.5), 2.5), (np.int64(-3), -3), (np.bool_(True), True), (np.str_("s"), "s"),
    (Color.RED, "red"), (Color.BLUE, 2), (Level.LOW, 1), ({"k": [Color.BLUE, {"e": Level.LOW}]}, {"k": [2, {"e": 1}]}),
    ([b"s" * 1500, [b"t" * 2000]], [b"s" * 1500, [b"t" * 2000]]),
])
def test_plain_roundtrip_examples(msg: Any, expected: Any) -> None:
    out = roundtrip(msg)
    assert out == expected and type(out) is type(expected)


def test_dataclass_rebuilt_with_types_for() -> None:
    a, b = np.arange(6, dtype="<f4").reshape(2, 3), np.ones((2, 2), dtype=">i8")
    msg = Outer("o", Inner(0.5, a), [Inner(1.0, b), Inner(2.0, a[:, ::2])], meta={"x": Inner(3.0, a)})
    types = types_for(Outer)
    assert types == {type_name(Outer): Outer, type_name(Inner): Inner}
    assert type_name(Outer) == f"{__name__}.Outer"
    for copy in (True, False):
        out = roundtrip(msg, types=types, copy=copy)
        assert type(out) is Outer and type(out.inner) is Inner and out.derived == 2
        assert out.name == "o" and out.maybe is None and out.inner.gain == 0.5
        same_array(a, out.inner.data)
        same_array(b, out.items[0].data)
        same_array(a[:, ::2], out.items[1].data)
        assert type(out.meta["x"]) is Inner  # dataclasses anywhere, not only in typed fields
    plain_out = roundtrip(msg)
    assert plain_out["__type__"] == type_name(Outer) and "derived" not in plain_out
    assert plain_out["inner"]["__type__"] == type_name(Inner)
    assert plain_out["items"][1]["gain"] == 2.0
    same_array(a, plain_out["inner"]["data"])
    partial = roundtrip(msg, types={type_name(Inner): Inner})
    assert type(partial) is dict and type(partial["inner"]) is Inner


def test_user_dict_with_type_key_stays_a_dict() -> None:
    msg = {"__type__": type_name(Inner), "gain": 1.0, "data": np.zeros(2)}
    out = roundtrip(msg, types=types_for(Inner))
    assert type(out) is dict and out["__type__"] == type_name(Inner)


def test_recursive_dataclass_and_types_for_typing_constructs() -> None:
    out = roundtrip(Node(1, Node(2, Node(3))), types=types_for(Node))
    assert out == Node(1, Node(2, Node(3)))
    assert types_for(Optional[Outer]) == types_for(list[Outer]) == types_for(dict[str, Outer | None])
    assert set(types_for(Optional[Outer])) == {type_name(Outer), type_name(Inner)}
    for tp in (Any, np.ndarray, int, list[int], Optional[str], "Outer", None):
        assert types_for(tp) == {}


def test_rebuild_failure_is_decode_error() -> None:
    raw = to_bytes(encode(Inner(1.0, np.zeros(1))))
    with pytest.raises(DecodeError):
        decode(raw, types={type_name(Inner): Node})  # wrong fields for this class


# -- layout, write_into, alignment, copy semantics ------------------------------

SAMPLES: list[Any] = [
    np.arange(64, dtype=np.uint8), np.arange(1000, dtype="<f8").reshape(10, 100), b"x" * 3000, b"tiny",
    {"a": np.arange(5), "b": [np.zeros((3, 3), ">f4"), b"y" * 2000], "c": "s"}, [1, 2.0, None, "x"],
    Outer("n", Inner(1.0, np.ones(7)), []), np.zeros((0, 4)), np.float64(1.0), np.array(3.0),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=range(len(SAMPLES)))
def test_sizes_and_write_into_offsets(msg: Any) -> None:
    enc = encode(msg)
    assert isinstance(enc, Encoded)
    raw = to_bytes(enc)
    assert len(raw) == enc.nbytes
    assert len(enc.header) == 5 + struct.unpack_from("<I", raw)[0]
    expected = roundtrip(msg)
    for offset in (0, 1, 7, 64, 100):
        dest = bytearray(b"\xff" * (offset + enc.nbytes + 33))  # garbage around, trailing bytes ignored
        assert write_into(enc, memoryview(dest)[offset:]) == enc.nbytes
        assert bytes(dest[offset : offset + enc.nbytes]) == raw  # padding is zeroed
        out = decode(memoryview(dest)[offset:])
        if isinstance(expected, np.ndarray):
            same_array(expected, out)
        else:
            assert repr(out) == repr(expected)
    assert write_into(enc, bytearray(enc.nbytes)) == enc.nbytes  # bytearray destinations work too


def test_mmap_alignment_and_views() -> None:
    a, b = np.arange(1001, dtype="<f4"), np.arange(30, dtype=">i2").reshape(5, 6)[:, ::2]
    mm = mmap.mmap(-1, 1 << 16)
    try:
        for msg in (a, {"first": b"z" * 1500, "a": a, "nested": [b, a[::3]]}):
            enc = encode(msg)
            mv = memoryview(mm)
            write_into(enc, mv)
            out = decode(mv, copy=False)
            arrays = [out] if isinstance(out, np.ndarray) else [out["a"], *out["nested"]]
            for arr in arrays:
                assert arr.ctypes.data % 64 == 0
                assert not arr.flags.writeable and not arr.flags.owndata
            assert not np.isinf(arrays[-1][-1])
            mm[enc.nbytes - 4 : enc.nbytes] = b"\x00\x00\x80\x7f"  # the last float32 -> +inf
            assert np.isinf(arrays[-1][-1])  # the view reflects the shared memory
            del out, arrays, arr, mv
    finally:
        mm.close()


def test_buffer_kinds_for_src_and_dest() -> None:
    arr = np.arange(40, dtype="<f8")
    enc = encode({"a": arr, "s": "x"})
    mm = mmap.mmap(-1, 4096)
    try:
        assert write_into(enc, mm) == enc.nbytes  # any writable buffer, not only memoryviews
        assert decode(mm)["s"] == "x"  # and any readable one
        floats = np.zeros(512, dtype="<f8")
        write_into(enc, memoryview(floats))  # non-"B" formats are viewed as bytes
        np.testing.assert_array_equal(decode(memoryview(floats))["a"], arr)
        np.testing.assert_array_equal(decode(floats.reshape(8, 64))["a"], arr)
        sub = arr.view(np.recarray)
        same_array(arr, roundtrip(sub))  # ndarray subclasses travel as plain ndarrays
    finally:
        mm.close()


def test_copy_true_is_independent_and_writable() -> None:
    arr = np.arange(100, dtype="<i4")
    for msg in (arr, {"a": arr}):
        src = bytearray(to_bytes(encode(msg)))
        out = decode(src, copy=True)
        out = out if isinstance(out, np.ndarray) else out["a"]
        src[:] = bytes(len(src))
        np.testing.assert_array_equal(out, arr)
        assert out.flags.writeable and out.flags.owndata
        out[0] = 42
        assert out[0] == 42


def test_copy_false_is_read_only_view_of_src() -> None:
    arr = np.arange(16, dtype="<u2")
    enc = encode(arr)
    src = bytearray(to_bytes(enc))
    out = decode(src, copy=False)
    with pytest.raises(ValueError):
        out[0] = 1
    src[enc.offsets[0] : enc.offsets[0] + 2] = b"\x07\x00"
    assert out[0] == 7


def test_encoded_buffers_are_not_copied_until_write() -> None:
    arr = np.zeros(10, dtype="<f8")
    enc = encode(arr)
    arr[3] = 9.0
    assert decode(to_bytes(enc))[3] == 9.0


def test_non_contiguous_inputs() -> None:
    base = np.arange(60, dtype="<f8").reshape(3, 4, 5)
    for view in (base[:, ::2, 1:], base.T, np.asfortranarray(base), base[::-1], base[..., 2]):
        out = roundtrip(view)
        np.testing.assert_array_equal(out, view)
        assert out.flags.c_contiguous and out.shape == view.shape


def test_zero_d_and_zero_size() -> None:
    for arr in (np.array(5, dtype="<i8"), np.array(True), np.zeros((0,), "<f4"), np.zeros((2, 0, 3), ">c8")):
        for copy in (True, False):
            out = roundtrip(arr, copy=copy)
            same_array(arr, out)
            assert out.ndim == arr.ndim


def test_small_message_overhead() -> None:
    enc = encode(np.zeros(64, dtype=np.uint8))
    assert len(enc.header) < 64  # prefix + dtype + shape fit before the first aligned offset
    assert enc.offsets == [64] and enc.nbytes == 128
    assert len(to_bytes(encode(b"x" * 64))) == 64 + 5
    assert len(to_bytes(encode({"a": 1, "b": [1.0, 2.0]}))) < 40


def test_write_into_refuses_small_or_read_only_destination() -> None:
    enc = encode(np.zeros(100))
    with pytest.raises(LocalProtocolError):
        write_into(enc, memoryview(bytearray(enc.nbytes - 1)))
    with pytest.raises(LocalProtocolError):
        write_into(enc, memoryview(bytes(enc.nbytes)))


# -- refusals -------------------------------------------------------------------


def nested(depth: int) -> Any:
    msg: Any = 1
    for _ in range(depth):
        msg = [msg]
    return msg


@pytest.mark.parametrize("msg", [
    np.array([object()], dtype=object), {"a": np.array([1, None])}, {1, 2}, frozenset(), 2**70, -(2**64),
    [2**64], nested(100), {1: "int key"}, object(), len, 1 + 2j, np.complex64(1),
    np.zeros(2, dtype=[("a", "<f4")]), np.ma.masked_array([1, 2], mask=[0, 1]), np.empty(3, np.dtype("V0")), Color,
])
def test_refused_messages(msg: Any) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(msg)
    assert str(info.value)


def test_depth_limit_boundary() -> None:
    assert roundtrip(nested(payload.MAX_DEPTH)) == nested(payload.MAX_DEPTH)
    with pytest.raises(LocalProtocolError):
        encode(nested(payload.MAX_DEPTH + 1))
    with pytest.raises(LocalProtocolError, match="set"):
        encode({"ok": [1, {"bad": {3}}]})


def nested_dicts(depth: int) -> Any:
    msg: Any = 1
    for _ in range(depth):
        msg = {"k": msg}
    return msg


# -- hostile input --------------------------------------------------------------


class Boom:
    executed = False

    def __reduce__(self) -> Any:
        return (setattr, (Boom, "executed", True))


BAD: dict[str, bytes] = {
    "empty": b"",
    "short prefix": b"\x01\x00",
    "header past end": struct.pack("<IB", 100, 1) + b"\x00" * 10,
    "unknown tag": struct.pack("<IB", 0, 9),
    "bad dtype O": fast_payload(array_meta("|O8", ()), bytes(64)),
    "bad dtype alias": fast_payload(array_meta("a5", (1,)), bytes(64)),
    "non-canonical dtype": fast_payload(array_meta("|f8", (1,)), bytes(64)),
    "structured dtype": fast_payload(array_meta("i4,f8", ()), bytes(64)),
    "zero itemsize": fast_payload(array_meta("|S0", (4,)), bytes(64)),
    "dtype not ascii": fast_payload(array_meta("<\xff4", (1,)), bytes(64)),
    "dtype bad unit": fast_payload(array_meta("<M8[xyz]", (1,)), bytes(64)),
    "huge array": fast_payload(array_meta("<f8", (2**40,)), bytes(64)),
    "huge dims": fast_payload(array_meta("<f8", (0, 2**63, 2**63)), bytes(64)),
    "huge zero-size dims": fast_payload(array_meta("<f8", (0, 2**61, 2**61)), bytes(64)),
    "ndim too large": fast_payload(b"\x03<f8\xff", bytes(4000)),
    "shape truncated": fast_payload(array_meta("<f8", (1, 2))[:-3], bytes(64)),
    "array header too long": fast_payload(array_meta("<f8", (1,)) + b"\x00", bytes(64)),
    "truncated array data": fast_payload(array_meta("<f8", (8,)), bytes(63)),
    "bytes length lie": struct.pack("<IBQ", 8, 3, 2**64 - 1) + bytes(100),
    "bytes header size": struct.pack("<IBI", 4, 3, 5),
    "buffer table lie": struct.pack("<IBI", 4, 4, 2**32 - 1),
    "buffer length lie": msgpack_payload(msgpack.packb(None), (2**63,)),
    "index out of range": msgpack_payload(msgpack.packb(msgpack.ExtType(2, struct.pack("<I", 1))), (3,), b"abc"),
    "index used twice": msgpack_payload(msgpack.packb([msgpack.ExtType(2, b"\0\0\0\0")] * 2), (3,), b"abc"),
    "unreferenced buffer": msgpack_payload(msgpack.packb(1), (3,), b"abc"),
    "array vs buffer size": msgpack_payload(
        msgpack.packb(msgpack.ExtType(1, b"\0\0\0\0" + array_meta("<f8", (2,)))), (8,), bytes(8)),
    "short ext": msgpack_payload(msgpack.packb(msgpack.ExtType(1, b"\0\0"))),
    "unknown ext": msgpack_payload(msgpack.packb(msgpack.ExtType(7, b"x"))),
    "timestamp ext": msgpack_payload(msgpack.packb(msgpack.Timestamp(1, 0))),
    "int map key": msgpack_payload(msgpack.packb({1: 2})),
    "bytes map key": msgpack_payload(msgpack.packb({b"k": 2}, use_bin_type=True)),
    "type key not str": msgpack_payload(msgpack.packb({b"__type__": 5}, use_bin_type=True)),
    "deep": msgpack_payload(msgpack.packb(nested(100))),
    "deep dicts": msgpack_payload(msgpack.packb(nested_dicts(70))),
    "invalid utf8": msgpack_payload(b"\xa2\xff\xfe"),
    "trailing msgpack": msgpack_payload(msgpack.packb(1) + msgpack.packb(2)),
    "truncated msgpack": msgpack_payload(b"\x92\x01"),
    "pickle": pickle.dumps(Boom()),
    "pickle protocol 0": pickle.dumps({"a": 1}, protocol=0),
}


@pytest.mark.parametrize("name", list(BAD))
def test_hostile_inputs_raise_decode_error(name: str, recwarn: pytest.WarningsRecorder) -> None:
    for src in (BAD[name], bytearray(BAD[name]), memoryview(BAD[name])):
        for copy in (True, False):
            with pytest.raises(DecodeError):
                decode(src, copy=copy, types=types_for(Outer))
    assert not Boom.executed
    assert [str(w.message) for w in recwarn] == []  # junk dtype strings never even reach numpy


def test_hand_made_payload_helper_is_valid() -> None:
    """The BAD entries above differ from valid payloads only in the lie they tell."""
    assert decode(msgpack_payload(msgpack.packb(msgpack.ExtType(2, b"\0\0\0\0")), (3,), b"abc")) == b"abc"
    assert decode(msgpack_payload(msgpack.packb(nested(64)))) == nested(64)
    np.testing.assert_array_equal(decode(fast_payload(array_meta("<f8", (8,)), bytes(64))), np.zeros(8))
    assert decode(fast_payload(array_meta("<M8[us]", (1,)), bytes(8))).dtype == np.dtype("<M8[us]")
    assert decode(msgpack_payload(msgpack.packb(nested_dicts(64)))) == nested_dicts(64)


def checked_decode(src: bytes) -> None:
    try:
        decode(src, copy=False, types=types_for(Outer))
        decode(src, copy=True)
    except DecodeError:
        pass


@given(st.binary(max_size=300))
@FUZZ
def test_fuzz_random_bytes(src: bytes) -> None:
    checked_decode(src)
    checked_decode(struct.pack("<IB", len(src), 4) + src)  # random msgpack-tagged metadata
    checked_decode(struct.pack("<IB", len(src), 1) + src)  # random array metadata


VALID = [to_bytes(encode(m)) for m in SAMPLES]


@given(st.data())
@FUZZ
def test_fuzz_truncations_and_bit_flips(data: st.DataObject) -> None:
    raw = bytearray(data.draw(st.sampled_from(VALID)))
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        decode(raw[:cut])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, min(len(raw), 200) - 1))  # flips land in the metadata
        raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    checked_decode(bytes(raw))
