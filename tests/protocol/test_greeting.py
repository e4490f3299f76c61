"""Telling our GraphServer's and an upstream ezmsg GraphServer's greetings from anything else."""

from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.codec import packb
from ezmsg_console.protocol.framing import encode_frame
from ezmsg_console.protocol.wire import encode_message
from ezmsg_console.protocol.greeting import GreetingKind, classify_greeting


def greeting(text: bytes) -> bytes:
    return len(text).to_bytes(8, "little") + text


def test_ezmsg_greeting_whole_and_in_pieces() -> None:
    data = greeting(b"3.9.0")
    assert classify_greeting(data) == (GreetingKind.EZMSG, "3.9.0")
    for cut in range(1, len(data)):
        assert classify_greeting(data[:cut]).kind is GreetingKind.INCOMPLETE
    assert classify_greeting(b"").kind is GreetingKind.SILENT


def test_other_services_are_not_taken_for_a_graph_server() -> None:
    for data in (b"HTTP/1.1 400 Bad Request\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", greeting(b"not a version!"),
                 (1000).to_bytes(8, "little") + b"x" * 20, greeting(b"\xff\xfe")):
        assert classify_greeting(data).kind is GreetingKind.OTHER, data


def test_our_server_hello_whole_and_in_pieces() -> None:
    hello = m.ServerHello(protocol_version=1, server_id="a" * 32, server_epoch="b" * 32, nonce="c" * 43,
                          auth_required=True)
    data = encode_frame(packb(encode_message(hello)))
    assert classify_greeting(data[:72]).kind is GreetingKind.NATIVE
    for cut in range(1, 23):
        assert classify_greeting(data[:cut]).kind is GreetingKind.INCOMPLETE, cut
    other = encode_frame(packb(encode_message(m.Hello(protocol_version=1, role=m.Role.SESSION, name="x",
                                                      client_nonce="n"))))
    assert classify_greeting(other[:72]).kind is GreetingKind.OTHER  # a frame, but not a SERVER_HELLO
