"""The sans-IO handshake state machine, driven by two in-memory connections."""

from __future__ import annotations

import struct

import pytest

from ezmsg_console.protocol.codec import packb
from ezmsg_console.protocol.connection import ProtocolConnection, Side, State
from ezmsg_console.protocol.errors import (
    DecodeError,
    FrameTooLarge,
    LocalProtocolError,
    RemoteProtocolError,
)
from ezmsg_console.protocol.framing import HANDSHAKE_MAX_FRAME_SIZE, MAX_FRAME_SIZE, encode_frame
from ezmsg_console.protocol.messages import (
    PROTOCOL_VERSION,
    Ack,
    ErrorReply,
    Hello,
    PingRequest,
    Pong,
    Role,
    ServerHello,
    SnapshotRequest,
    Welcome,
)
from ezmsg_console.protocol.wire import Message, encode_message

NEGOTIATED = 10_000


def server_hello() -> ServerHello:
    return ServerHello(
        protocol_version=PROTOCOL_VERSION, server_id="srv", server_epoch="ep", nonce="n" * 32, auth_required=False
    )


def hello(name: str = "client") -> Hello:
    return Hello(protocol_version=PROTOCOL_VERSION, role=Role.SESSION, name=name, client_nonce="c" * 32)


def welcome(max_frame_size: int = NEGOTIATED) -> Welcome:
    return Welcome(
        protocol_version=PROTOCOL_VERSION,
        server_id="srv",
        server_epoch="ep",
        peer_id="peer-1",
        role=Role.SESSION,
        max_frame_size=max_frame_size,
    )


def raw_frame(msg: Message) -> bytes:
    """Frame a message without going through a connection's checks."""
    return encode_frame(packb(encode_message(msg)), 2**32 - 1)


def error_of_size(n: int, request_id: int | None = 7) -> tuple[ErrorReply, bytes]:
    """An ErrorReply whose msgpack body is exactly ``n`` bytes, and its frame."""
    base = len(packb(encode_message(ErrorReply(request_id, "X", "y" * 300))))
    k = 300 + n - base
    msg = ErrorReply(request_id, "X", "y" * k)
    body = packb(encode_message(msg))
    assert len(body) == n, (len(body), n)
    return msg, struct.pack(">I", n) + body


def ping_of_size(n: int, request_id: int = 1) -> tuple[Message, bytes]:
    """A non-error open-state message (an Ack with padding in an ignored field)."""
    wire = encode_message(Ack(request_id))
    wire["pad"] = ""
    k = n - len(packb(wire))
    # str header grows with the length; adjust until exact
    for extra in range(0, 6):
        wire["pad"] = "p" * (k - extra)
        if len(packb(wire)) == n:
            break
    body = packb(wire)
    assert len(body) == n
    return Ack(request_id), struct.pack(">I", n) + body


def handshake(max_frame_size: int = NEGOTIATED) -> tuple[ProtocolConnection, ProtocolConnection]:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=max_frame_size)
    cli = ProtocolConnection(Side.CLIENT)
    assert cli.receive_data(srv.send(server_hello())) == [server_hello()]
    assert srv.receive_data(cli.send(hello())) == [hello()]
    assert cli.receive_data(srv.send(welcome(max_frame_size))) == [welcome(max_frame_size)]
    return srv, cli


# -- the happy path ------------------------------------------------------------


def test_full_handshake_states() -> None:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=NEGOTIATED)
    cli = ProtocolConnection(Side.CLIENT)
    assert srv.state is State.SEND_SERVER_HELLO
    assert cli.state is State.AWAIT_SERVER_HELLO
    assert not srv.is_open and not cli.is_open

    data = srv.send(server_hello())
    assert srv.state is State.AWAIT_HELLO
    assert cli.receive_data(data) == [server_hello()]
    assert cli.state is State.SEND_HELLO

    data = cli.send(hello())
    assert cli.state is State.AWAIT_WELCOME
    assert srv.receive_data(data) == [hello()]
    assert srv.state is State.SEND_WELCOME

    data = srv.send(welcome())
    assert srv.state is State.OPEN and srv.is_open
    assert cli.receive_data(data) == [welcome()]
    assert cli.state is State.OPEN and cli.is_open
    assert cli.max_frame_size == NEGOTIATED
    assert srv.max_frame_size == NEGOTIATED


def test_ping_pong_both_ways() -> None:
    srv, cli = handshake()
    # client -> server request, server -> client reply
    assert srv.receive_data(cli.send(PingRequest(request_id=1))) == [PingRequest(request_id=1)]
    pong = Pong(request_id=1, server_time=12.5, server_epoch="ep")
    assert cli.receive_data(srv.send(pong)) == [pong]
    # server -> client request (routed requests flow the other way too)
    assert cli.receive_data(srv.send(PingRequest(request_id=100))) == [PingRequest(request_id=100)]
    back = Pong(request_id=100, server_time=1.0, server_epoch="x")
    assert srv.receive_data(cli.send(back)) == [back]
    assert srv.state is State.OPEN and cli.state is State.OPEN


def test_several_messages_in_one_receive_and_byte_by_byte() -> None:
    srv, cli = handshake()
    msgs = [PingRequest(request_id=i) for i in range(1, 6)]
    data = b"".join(cli.send(m) for m in msgs)
    assert srv.receive_data(data) == msgs
    data = b"".join(cli.send(m) for m in msgs)
    got: list[Message] = []
    for i in range(len(data)):
        got.extend(srv.receive_data(data[i : i + 1]))
    assert got == msgs


def test_whole_handshake_fed_byte_by_byte() -> None:
    srv = ProtocolConnection(Side.SERVER)
    cli = ProtocolConnection(Side.CLIENT)
    data = srv.send(server_hello())
    got: list[Message] = []
    for i in range(len(data)):
        got.extend(cli.receive_data(data[i : i + 1]))
    assert got == [server_hello()]
    assert cli.state is State.SEND_HELLO


def test_open_message_kinds_free_after_open() -> None:
    srv, cli = handshake()
    # requests and replies may flow both directions once open
    assert cli.receive_data(srv.send(Ack(request_id=3))) == [Ack(request_id=3)]
    assert srv.receive_data(cli.send(Ack(request_id=4))) == [Ack(request_id=4)]
    # an ErrorReply in OPEN does not close
    err = ErrorReply(request_id=5, code="NOT_FOUND", message="nope")
    assert cli.receive_data(srv.send(err)) == [err]
    assert cli.state is State.OPEN and srv.state is State.OPEN


# -- illegal moves ---------------------------------------------------------------


def test_client_request_before_handshake_is_local_error() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    with pytest.raises(LocalProtocolError):
        cli.send(PingRequest(request_id=1))
    assert cli.state is State.AWAIT_SERVER_HELLO
    # also after ServerHello, before Welcome
    cli.receive_data(raw_frame(server_hello()))
    with pytest.raises(LocalProtocolError):
        cli.send(SnapshotRequest(request_id=2))
    cli.send(hello())
    with pytest.raises(LocalProtocolError):
        cli.send(PingRequest(request_id=3))
    assert cli.state is State.AWAIT_WELCOME


def test_client_cannot_send_hello_first_or_twice() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    with pytest.raises(LocalProtocolError):
        cli.send(hello())
    cli.receive_data(raw_frame(server_hello()))
    cli.send(hello())
    with pytest.raises(LocalProtocolError):
        cli.send(hello())


def test_client_cannot_send_server_messages() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    with pytest.raises(LocalProtocolError):
        cli.send(server_hello())
    with pytest.raises(LocalProtocolError):
        cli.send(welcome())


def test_server_must_send_server_hello_first() -> None:
    srv = ProtocolConnection(Side.SERVER)
    with pytest.raises(LocalProtocolError):
        srv.send(welcome())
    with pytest.raises(LocalProtocolError):
        srv.send(PingRequest(request_id=1))
    assert srv.state is State.SEND_SERVER_HELLO
    srv.send(server_hello())
    with pytest.raises(LocalProtocolError):
        srv.send(server_hello())
    with pytest.raises(LocalProtocolError):
        srv.send(welcome())  # no Hello yet


@pytest.mark.parametrize("sent_hello", [False, True])
def test_server_receiving_request_before_hello(sent_hello: bool) -> None:
    srv = ProtocolConnection(Side.SERVER)
    if sent_hello:
        srv.send(server_hello())
    with pytest.raises(RemoteProtocolError) as info:
        srv.receive_data(raw_frame(PingRequest(request_id=1)))
    assert not isinstance(info.value, (DecodeError, FrameTooLarge))
    assert srv.state is State.CLOSED
    assert info.value.details["kind"] == "PING"


def test_server_receiving_hello_before_sending_server_hello() -> None:
    srv = ProtocolConnection(Side.SERVER)
    with pytest.raises(RemoteProtocolError):
        srv.receive_data(raw_frame(hello()))
    assert srv.state is State.CLOSED


def test_client_receiving_welcome_before_server_hello() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    with pytest.raises(RemoteProtocolError):
        cli.receive_data(raw_frame(welcome()))
    assert cli.state is State.CLOSED


def test_client_receiving_reply_before_welcome() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(raw_frame(server_hello()))
    cli.send(hello())
    with pytest.raises(RemoteProtocolError):
        cli.receive_data(raw_frame(Ack(request_id=1)))
    assert cli.state is State.CLOSED


def test_second_hello_after_open() -> None:
    srv, cli = handshake()
    with pytest.raises(RemoteProtocolError):
        srv.receive_data(raw_frame(hello("again")))
    assert srv.state is State.CLOSED
    # and the client may not send it either
    with pytest.raises(LocalProtocolError):
        cli.send(hello("again"))
    assert cli.state is State.OPEN


@pytest.mark.parametrize("msg", [server_hello(), welcome()])
def test_handshake_messages_from_server_after_open(msg: Message) -> None:
    srv, cli = handshake()
    with pytest.raises(RemoteProtocolError):
        cli.receive_data(raw_frame(msg))
    assert cli.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        srv.send(msg)


def test_messages_after_error_are_not_returned() -> None:
    srv, _ = handshake()
    data = raw_frame(PingRequest(request_id=1)) + raw_frame(hello()) + raw_frame(PingRequest(request_id=2))
    with pytest.raises(RemoteProtocolError):
        srv.receive_data(data)
    assert srv.state is State.CLOSED
    # once closed nothing more is delivered
    assert srv.receive_data(raw_frame(PingRequest(request_id=3))) == []
    with pytest.raises(LocalProtocolError):
        srv.send(Ack(request_id=1))


def test_decode_error_closes() -> None:
    srv, _ = handshake()
    with pytest.raises(DecodeError):
        srv.receive_data(encode_frame(b"\xc1"))
    assert srv.state is State.CLOSED


# -- ErrorReply during the handshake -------------------------------------------


def test_error_reply_during_handshake_closes_receiver() -> None:
    srv = ProtocolConnection(Side.SERVER)
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(srv.send(server_hello()))
    srv.receive_data(cli.send(hello()))
    err = ErrorReply(request_id=None, code="AUTH_FAILED", message="bad token")
    data = srv.send(err)
    assert srv.state is State.CLOSED
    assert cli.receive_data(data) == [err]
    assert cli.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        cli.send(PingRequest(request_id=1))
    with pytest.raises(LocalProtocolError):
        srv.send(welcome())


def test_error_reply_as_first_frame_closes_client() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    err = ErrorReply(request_id=None, code="VERSION_MISMATCH", message="v")
    # anything queued after the error in the same read is not delivered
    assert cli.receive_data(raw_frame(err) + raw_frame(server_hello())) == [err]
    assert cli.state is State.CLOSED


def test_client_error_reply_closes_server() -> None:
    srv = ProtocolConnection(Side.SERVER)
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(srv.send(server_hello()))
    err = ErrorReply(request_id=None, code="VERSION_MISMATCH", message="too new")
    assert srv.receive_data(cli.send(err)) == [err]
    assert srv.state is State.CLOSED and cli.state is State.CLOSED


def test_close() -> None:
    srv, cli = handshake()
    cli.close()
    assert cli.state is State.CLOSED and not cli.is_open
    with pytest.raises(LocalProtocolError):
        cli.send(PingRequest(request_id=1))


# -- frame limits ------------------------------------------------------------------


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT])
def test_big_frame_before_open_refused(side: Side) -> None:
    conn = ProtocolConnection(side)
    with pytest.raises(FrameTooLarge):
        conn.receive_data(struct.pack(">I", 5000))  # header alone is enough
    assert conn.state is State.CLOSED


def test_handshake_limit_exact() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    err, frame = error_of_size(HANDSHAKE_MAX_FRAME_SIZE)
    assert cli.receive_data(frame) == [err]  # exactly 4 KiB is fine
    cli = ProtocolConnection(Side.CLIENT)
    _, frame = error_of_size(HANDSHAKE_MAX_FRAME_SIZE + 1)
    with pytest.raises(FrameTooLarge):
        cli.receive_data(frame)


def test_big_frame_refused_on_server_after_server_hello() -> None:
    srv = ProtocolConnection(Side.SERVER)
    srv.send(server_hello())
    _, frame = error_of_size(5000)
    with pytest.raises(FrameTooLarge):
        srv.receive_data(frame)
    assert srv.state is State.CLOSED


def test_limit_after_open_is_welcome_max_frame_size() -> None:
    srv, cli = handshake(NEGOTIATED)
    for conn in (srv, cli):
        msg, frame = ping_of_size(5000)
        assert conn.receive_data(frame) == [msg]
        msg, frame = ping_of_size(NEGOTIATED)
        assert conn.receive_data(frame) == [msg]
        _, frame = ping_of_size(NEGOTIATED + 1)
        with pytest.raises(FrameTooLarge):
            conn.receive_data(frame)
        assert conn.state is State.CLOSED


def test_client_adopts_welcome_limit_even_if_smaller() -> None:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=6000)
    cli = ProtocolConnection(Side.CLIENT, max_frame_size=MAX_FRAME_SIZE)
    cli.receive_data(srv.send(server_hello()))
    srv.receive_data(cli.send(hello()))
    cli.receive_data(srv.send(welcome(6000)))
    assert cli.max_frame_size == 6000
    _, frame = ping_of_size(6001)
    with pytest.raises(FrameTooLarge):
        cli.receive_data(frame)


def test_send_limit_follows_handshake() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(raw_frame(server_hello()))
    cli.send(hello())
    cli.receive_data(raw_frame(welcome(NEGOTIATED)))
    ok = ErrorReply(request_id=1, code="X", message="m" * (NEGOTIATED - 100))
    assert len(cli.send(ok)) <= NEGOTIATED + 4
    with pytest.raises(LocalProtocolError):
        cli.send(ErrorReply(request_id=1, code="X", message="m" * (NEGOTIATED + 1)))


def test_send_limit_before_open() -> None:
    srv = ProtocolConnection(Side.SERVER)
    srv.send(server_hello())
    with pytest.raises(LocalProtocolError):
        srv.send(ErrorReply(request_id=None, code="X", message="m" * 5000))


def test_welcome_and_big_frame_in_same_receive() -> None:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=NEGOTIATED)
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(srv.send(server_hello()))
    srv.receive_data(cli.send(hello()))
    msg, big = ping_of_size(8000)
    data = srv.send(welcome()) + big
    assert cli.receive_data(data) == [welcome(), msg]
    assert cli.state is State.OPEN


def test_welcome_and_big_frame_byte_split_at_header() -> None:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=NEGOTIATED)
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(srv.send(server_hello()))
    srv.receive_data(cli.send(hello()))
    msg, big = ping_of_size(8000)
    w = srv.send(welcome())
    # the big frame's header arrives with the Welcome, the body later
    assert cli.receive_data(w + big[:6]) == [welcome()]
    assert cli.receive_data(big[6:]) == [msg]


def test_server_hello_and_big_frame_in_same_receive_refused() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    _, big = ping_of_size(5000)
    with pytest.raises(FrameTooLarge):
        cli.receive_data(raw_frame(server_hello()) + big)
    assert cli.state is State.CLOSED


# -- refused sends change nothing ---------------------------------------------------


def test_failed_send_does_not_advance_state() -> None:
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(raw_frame(server_hello()))
    with pytest.raises(LocalProtocolError):
        cli.send(hello(name="x" * 5000))  # over the 4 KiB handshake limit
    assert cli.state is State.SEND_HELLO  # nothing was sent, so still SEND_HELLO


def test_server_refuses_to_send_welcome_the_client_cannot_read() -> None:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=MAX_FRAME_SIZE)
    srv.send(server_hello())
    srv.receive_data(raw_frame(hello()))
    big_welcome = Welcome(
        protocol_version=PROTOCOL_VERSION,
        server_id="s" * 5000,
        server_epoch="ep",
        peer_id="p",
        role=Role.SESSION,
        max_frame_size=MAX_FRAME_SIZE,
    )
    # the client's decoder is still at the 4 KiB handshake limit when this arrives
    with pytest.raises(LocalProtocolError):
        srv.send(big_welcome)
    assert srv.state is State.SEND_WELCOME
    # a normal Welcome still goes out afterwards
    srv.send(welcome(MAX_FRAME_SIZE))
    assert srv.state is State.OPEN


def test_welcome_exactly_at_handshake_limit_is_sent_and_read() -> None:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=MAX_FRAME_SIZE)
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(srv.send(server_hello()))
    srv.receive_data(cli.send(hello()))
    def padded(pad: int) -> Welcome:
        return Welcome(
            protocol_version=PROTOCOL_VERSION,
            server_id="srv",
            server_epoch="ep",
            peer_id="peer-1" + "p" * pad,
            role=Role.SESSION,
            max_frame_size=MAX_FRAME_SIZE,
        )

    pad = HANDSHAKE_MAX_FRAME_SIZE - len(packb(encode_message(padded(0))))
    while len(packb(encode_message(padded(pad)))) > HANDSHAKE_MAX_FRAME_SIZE:
        pad -= 1  # the str header grows past 255 bytes
    w = padded(pad)
    data = srv.send(w)
    assert len(data) == HANDSHAKE_MAX_FRAME_SIZE + 4
    assert cli.receive_data(data) == [w]
    assert cli.is_open


def test_refused_error_reply_during_handshake_keeps_state() -> None:
    srv = ProtocolConnection(Side.SERVER)
    srv.send(server_hello())
    with pytest.raises(LocalProtocolError):
        srv.send(ErrorReply(request_id=None, code="X", message="m" * 5000))
    assert srv.state is State.AWAIT_HELLO


# -- chunks: messages over the frame limit ---------------------------------------


def _big(request_id: int, size: int) -> Message:
    from ezmsg_console.protocol.messages import ConnectEdge

    return ConnectEdge(request_id, "src", "x" * size)


def test_a_message_over_the_frame_limit_travels_in_chunks_both_ways() -> None:
    srv, cli = handshake()  # 10,000-byte frames
    big = _big(1, 35_000)
    frames = cli.send_frames(big)
    assert len(frames) == 4 and all(len(f) <= NEGOTIATED + 4 for f in frames)
    assert all(f[4] == 0xC1 for f in frames)
    got = []
    for frame in frames:  # in arbitrary pieces, as a socket delivers them
        for piece in (frame[:7], frame[7:]):
            got += srv.receive_data(piece)
    assert got == [big]
    reply = srv.send_frames(_big(2, 25_000))
    assert [m for f in reply for m in cli.receive_data(f)] == [_big(2, 25_000)]
    (plain,) = cli.send_frames(PingRequest(3))  # a small message stays one plain frame
    assert plain[4] != 0xC1 and srv.receive_data(plain) == [PingRequest(3)]


def test_chunks_of_two_messages_may_interleave_with_other_frames() -> None:
    srv, cli = handshake()
    a, b = cli.send_frames(_big(1, 15_000)), cli.send_frames(_big(2, 15_000))
    ping = cli.send(PingRequest(3))
    got = [m for f in (a[0], b[0], ping, a[1], b[1]) for m in srv.receive_data(f)]
    assert got == [PingRequest(3), _big(1, 15_000), _big(2, 15_000)]


def test_a_chunked_message_over_the_message_limit_is_refused_and_closes() -> None:
    srv = ProtocolConnection(Side.SERVER, max_frame_size=NEGOTIATED, max_message_size=20_000)
    cli = ProtocolConnection(Side.CLIENT)
    cli.receive_data(srv.send(server_hello()))
    srv.receive_data(cli.send(hello()))
    cli.receive_data(srv.send(welcome()))
    frames = cli.send_frames(_big(1, 30_000))
    with pytest.raises(FrameTooLarge, match="over the 20000-byte limit"):
        for frame in frames:
            srv.receive_data(frame)
    assert srv.state is State.CLOSED
    with pytest.raises(LocalProtocolError, match="message limit"):  # and a sender refuses to send one
        srv_side = ProtocolConnection(Side.SERVER, max_frame_size=NEGOTIATED, max_message_size=20_000)
        peer = ProtocolConnection(Side.CLIENT)
        peer.receive_data(srv_side.send(server_hello()))
        srv_side.receive_data(peer.send(hello()))
        srv_side.send(welcome())
        srv_side.send_frames(_big(1, 30_000))


def test_bad_chunk_sequences_are_protocol_errors() -> None:
    srv, cli = handshake()
    frames = cli.send_frames(_big(1, 25_000))
    with pytest.raises(RemoteProtocolError, match="out of order"):
        srv.receive_data(frames[0] + frames[2])
    srv, cli = handshake()
    with pytest.raises(RemoteProtocolError, match="unknown message"):
        srv.receive_data(cli.send_frames(_big(1, 25_000))[1])
    early = ProtocolConnection(Side.SERVER)
    early.send(server_hello())
    with pytest.raises(DecodeError, match="before the handshake"):
        early.receive_data(encode_frame(struct.pack(">BBII", 0xC1, 1, 1, 0) + b"x"))
