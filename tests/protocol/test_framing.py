"""Length-prefixed framing: round trip, arbitrary chunking, size limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ezmsg_console.protocol.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from ezmsg_console.protocol.framing import (
    ABSOLUTE_MAX_FRAME_SIZE,
    HANDSHAKE_MAX_FRAME_SIZE,
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    FrameDecoder,
    encode_frame,
)

from ..conftest import fuzz_examples


def header(n: int) -> bytes:
    return struct.pack(">I", n)


# -- encode / decode ---------------------------------------------------------


def test_encode_frame_layout() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert HEADER_SIZE == 4


@pytest.mark.parametrize("body", [b"", b"x", b"hello world", bytes(range(256)) * 40])
def test_round_trip_single(body: bytes) -> None:
    dec = FrameDecoder()
    assert dec.feed(encode_frame(body)) == [body]
    assert dec.buffered == 0


def test_round_trip_several_in_one_feed() -> None:
    bodies = [b"a", b"", b"bc" * 100, b"\x00\x00\x00\x05"]
    dec = FrameDecoder()
    assert dec.feed(b"".join(encode_frame(b) for b in bodies)) == bodies
    assert dec.buffered == 0


def test_partial_frame_is_buffered() -> None:
    dec = FrameDecoder()
    frame = encode_frame(b"abcdef")
    assert dec.feed(frame[:2]) == []
    assert dec.feed(frame[2:7]) == []
    assert dec.buffered == 3  # header consumed, three body bytes held
    assert dec.feed(frame[7:]) == [b"abcdef"]
    assert dec.buffered == 0


def test_feed_accepts_bytearray_and_memoryview() -> None:
    dec = FrameDecoder()
    frame = encode_frame(b"xyz")
    assert dec.feed(bytearray(frame[:3])) == []
    assert dec.feed(memoryview(frame)[3:]) == [b"xyz"]


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    data=st.data(),
)
def test_any_chunking_yields_same_bodies(bodies: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=len(stream))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert b"".join(chunks) == stream
    dec = FrameDecoder()
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(dec.feed(chunk))
    assert out == bodies
    assert dec.buffered == 0


@settings(max_examples=fuzz_examples(50), deadline=None)
@given(bodies=st.lists(st.binary(max_size=50), min_size=1, max_size=6))
def test_one_byte_chunks(bodies: list[bytes]) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    dec = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out.extend(dec.feed(stream[i : i + 1]))
    assert out == bodies


def test_add_then_next_frame() -> None:
    dec = FrameDecoder()
    dec.add(encode_frame(b"one") + encode_frame(b"two") + b"\x00")
    assert dec.next_frame() == b"one"
    assert dec.next_frame() == b"two"
    assert dec.next_frame() is None
    assert dec.buffered == 1


# -- limits ------------------------------------------------------------------


@pytest.mark.parametrize("claimed", [2**32 - 1, 2**30, MAX_FRAME_SIZE + 1])
def test_oversized_header_raises_from_header_alone(claimed: int) -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(header(claimed))  # no body at all
    assert info.value.details == {"size": claimed, "limit": MAX_FRAME_SIZE}
    assert isinstance(info.value, RemoteProtocolError)
    assert dec.buffered == 0  # nothing of the oversized frame is kept


def test_oversized_header_raises_on_fourth_byte() -> None:
    dec = FrameDecoder(max_frame_size=100)
    hdr = header(101)
    for i in range(3):
        assert dec.feed(hdr[i : i + 1]) == []
    with pytest.raises(FrameTooLarge):
        dec.feed(hdr[3:4])


def test_oversized_header_after_good_frames() -> None:
    dec = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameTooLarge):
        dec.feed(encode_frame(b"ok") + header(11))


@pytest.mark.parametrize("limit", [1, 7, HANDSHAKE_MAX_FRAME_SIZE])
def test_exact_limit_accepted_one_more_refused(limit: int) -> None:
    dec = FrameDecoder(max_frame_size=limit)
    body = b"z" * limit
    assert dec.feed(encode_frame(body, limit)) == [body]
    with pytest.raises(FrameTooLarge):
        dec.feed(header(limit + 1))


def test_default_limit_exact_accepted() -> None:
    dec = FrameDecoder()
    # header only: the exact default limit passes the header check and waits for the body
    assert dec.feed(header(MAX_FRAME_SIZE)) == []
    assert dec.buffered == 0
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(header(MAX_FRAME_SIZE + 1))


def test_decoder_stays_failed() -> None:
    dec = FrameDecoder(max_frame_size=8)
    with pytest.raises(FrameTooLarge) as first:
        dec.feed(header(9))
    # a perfectly good frame afterwards is still refused: framing is lost
    with pytest.raises(FrameTooLarge) as second:
        dec.feed(encode_frame(b"ok"))
    assert second.value is first.value
    with pytest.raises(FrameTooLarge):
        dec.next_frame()
    with pytest.raises(FrameTooLarge):
        dec.add(b"")


def test_limit_change_between_frames() -> None:
    dec = FrameDecoder(max_frame_size=4)
    dec.add(encode_frame(b"abcd") + encode_frame(b"abcdefgh"))
    assert dec.next_frame() == b"abcd"
    dec.max_frame_size = 8
    assert dec.next_frame() == b"abcdefgh"


@pytest.mark.parametrize("bad", [0, -1, ABSOLUTE_MAX_FRAME_SIZE + 1])
def test_decoder_rejects_bad_limit(bad: int) -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=bad)


def test_decoder_absolute_limit_allowed() -> None:
    dec = FrameDecoder(max_frame_size=ABSOLUTE_MAX_FRAME_SIZE)
    assert dec.feed(header(2**32 - 1)) == []  # allowed, waits for body


def test_encode_frame_refuses_over_limit() -> None:
    assert encode_frame(b"x" * 10, 10) == header(10) + b"x" * 10
    with pytest.raises(LocalProtocolError) as info:
        encode_frame(b"x" * 11, 10)
    assert info.value.details == {"size": 11, "limit": 10}
    assert not isinstance(info.value, RemoteProtocolError)


def test_encode_frame_default_limit() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(bytes(MAX_FRAME_SIZE + 1))
    assert len(encode_frame(bytes(MAX_FRAME_SIZE))) == MAX_FRAME_SIZE + 4
