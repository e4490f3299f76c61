"""Telling an upstream ezmsg GraphServer's greeting from anything else."""

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
