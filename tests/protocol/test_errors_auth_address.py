"""Error codes on the wire, HMAC handshake proofs, address parsing."""

from __future__ import annotations

import pytest

from ezmsg_console.protocol import errors
from ezmsg_console.protocol.address import (
    ADDRESS_ENV,
    DEFAULT_HOST,
    DEFAULT_PORT,
    TOKEN_ENV,
    Address,
    loopback_literal,
    parse_address,
    resolve_address,
    resolve_token,
)
from ezmsg_console.protocol.auth import client_proof, new_nonce, proofs_match, server_proof
from ezmsg_console.protocol.errors import (
    ConsoleError,
    ServerError,
    error_class_for_code,
    error_from_wire,
    wire_code,
)


def all_error_classes() -> list[type[ConsoleError]]:
    found = []
    stack = [ConsoleError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    # only the package's own classes (tests elsewhere might subclass)
    return [c for c in found if c.__module__ == errors.__name__]


def test_error_tree_is_complete() -> None:
    names = {c.__name__ for c in all_error_classes()}
    assert names >= {
        "ConsoleError", "ProtocolError", "LocalProtocolError", "RemoteProtocolError", "FrameTooLarge",
        "DecodeError", "VersionMismatch", "ConnectionClosed", "ServerUnreachable", "RequestTimeout",
        "AuthError", "AuthRequired", "ConfigurationError", "ServerError", "InvalidRequest", "NotFound",
        "AddressCollision", "CycleError", "OwnershipConflict", "PermissionDenied",
        "SettingsValidationError", "ProcessUnavailable", "SlowConsumer",
    }


def test_codes_are_unique() -> None:
    codes = [c.code for c in all_error_classes()]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_round_trips(cls: type[ConsoleError]) -> None:
    e = cls("something broke", {"where": ["a", 1], "n": 3})
    back = error_from_wire(wire_code(e), e.message, e.details)
    assert type(back) is cls
    assert back.message == "something broke"
    assert str(back) == "something broke"
    assert back.details == {"where": ["a", 1], "n": 3}
    assert error_class_for_code(cls.code) is cls


def test_unknown_code_gives_server_error_keeping_code() -> None:
    e = error_from_wire("QUOTA_EXCEEDED", "too many", {"limit": 5})
    assert type(e) is ServerError
    assert e.message == "too many"
    assert e.details == {"limit": 5, "code": "QUOTA_EXCEEDED"}
    # and it is passed on with the original code
    assert wire_code(e) == "QUOTA_EXCEEDED"
    again = error_from_wire(wire_code(e), e.message, e.details)
    assert type(again) is ServerError and wire_code(again) == "QUOTA_EXCEEDED"


def test_unknown_code_does_not_clobber_existing_detail() -> None:
    e = error_from_wire("WEIRD", "m", {"code": "ORIGINAL"})
    assert e.details["code"] == "ORIGINAL"


def test_plain_server_error_code() -> None:
    e = error_from_wire("SERVER_ERROR", "m", None)
    assert type(e) is ServerError
    assert e.details == {}
    assert wire_code(e) == "SERVER_ERROR"


def test_subclass_ignores_code_detail() -> None:
    e = errors.NotFound("x", {"code": "OTHER"})
    assert wire_code(e) == "NOT_FOUND"


def test_default_message_is_class_name() -> None:
    e = errors.NotFound()
    assert e.message == "NotFound" and str(e) == "NotFound"
    assert e.details == {}


def test_details_are_copied() -> None:
    d = {"a": 1}
    e = errors.InvalidRequest("m", d)
    d["a"] = 2
    assert e.details == {"a": 1}


def test_hierarchy() -> None:
    assert issubclass(errors.RequestTimeout, TimeoutError)
    assert isinstance(errors.RequestTimeout("late"), TimeoutError)
    assert issubclass(errors.FrameTooLarge, errors.RemoteProtocolError)
    assert issubclass(errors.DecodeError, errors.RemoteProtocolError)
    assert issubclass(errors.RemoteProtocolError, errors.ProtocolError)
    assert issubclass(errors.VersionMismatch, errors.ProtocolError)
    assert issubclass(errors.ServerUnreachable, errors.ConnectionClosed)
    assert issubclass(errors.AuthRequired, errors.AuthError)
    assert issubclass(errors.SlowConsumer, ServerError)
    assert not issubclass(errors.ServerError, errors.ProtocolError)
    with pytest.raises(TimeoutError):
        raise error_from_wire("TIMEOUT", "late", {})


# -- auth ------------------------------------------------------------------------

BASE = dict(token="s3cret", server_nonce="a" * 32, client_nonce="b" * 32, role="session", name="alice")


def proof(**over: str) -> str:
    args = {**BASE, **over}
    return client_proof(args["token"], args["server_nonce"], args["client_nonce"], args["role"], args["name"])


def test_client_proof_verifies() -> None:
    p = proof()
    assert isinstance(p, str) and len(p) == 64
    assert int(p, 16) >= 0  # hex
    assert proof() == p  # deterministic
    assert proofs_match(proof(), p)


@pytest.mark.parametrize(
    "field,value",
    [
        ("token", "s3cret!"),
        ("token", "S3cret"),
        ("server_nonce", "a" * 31 + "c"),
        ("client_nonce", "b" * 31 + "c"),
        ("role", "observer"),
        ("name", "alicf"),
        ("name", ""),
    ],
)
def test_client_proof_differs_when_any_input_differs(field: str, value: str) -> None:
    other = proof(**{field: value})
    assert other != proof()
    assert not proofs_match(proof(), other)


def test_field_boundaries_are_unambiguous() -> None:
    a = proof(client_nonce="c|session", role="observer", name="n")
    b = proof(client_nonce="c", role="session", name="observer|n")
    assert a != b


def test_nonces_not_interchangeable() -> None:
    swapped = proof(server_nonce=BASE["client_nonce"], client_nonce=BASE["server_nonce"])
    assert swapped != proof()


def test_server_proof_differs_from_client_proof() -> None:
    sp = server_proof(BASE["token"], BASE["server_nonce"], BASE["client_nonce"])
    assert len(sp) == 64
    assert sp != proof()
    assert proofs_match(sp, server_proof(BASE["token"], BASE["server_nonce"], BASE["client_nonce"]))
    assert not proofs_match(sp, server_proof("other", BASE["server_nonce"], BASE["client_nonce"]))
    assert not proofs_match(sp, server_proof(BASE["token"], BASE["client_nonce"], BASE["server_nonce"]))


def test_proofs_match_rejects_missing_or_wrong() -> None:
    p = proof()
    assert proofs_match(p, None) is False
    assert proofs_match(p, "") is False
    assert proofs_match(p, p[:-1]) is False
    assert proofs_match(p, p.upper()) is (p == p.upper())
    assert proofs_match(p, 123) is False  # type: ignore[arg-type]
    assert proofs_match(p, "é" * 64) is False


def test_new_nonce() -> None:
    a, b = new_nonce(), new_nonce()
    assert a != b
    assert len(a) == 32 and int(a, 16) >= 0


# -- address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("127.0.0.1:25970", Address("127.0.0.1", 25970)),
        ("host:0", Address("host", 0)),
        ("host:65535", Address("host", 65535)),
        ("  example.org:80 ", Address("example.org", 80)),
        ("[::1]:5", Address("::1", 5)),
        ("[fe80::1%eth0]:443", Address("fe80::1%eth0", 443)),
    ],
)
def test_parse_address_good(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    ["host", "h:99999", ":80", "h:x", "h:", "", "h:-1", "h:+80", "h: 80", "[::1]", "[::1]5", "[]:5", "[::1:5",
     "h:65536"],
)
def test_parse_address_bad(text: str) -> None:
    with pytest.raises(errors.ConfigurationError):
        parse_address(text)


def test_parse_address_unicode_digit_is_configuration_error() -> None:
    with pytest.raises(errors.ConfigurationError):
        parse_address("h:²")


def test_address_str() -> None:
    assert str(Address("127.0.0.1", 80)) == "127.0.0.1:80"
    assert str(Address("::1", 5)) == "[::1]:5"
    assert parse_address(str(Address("::1", 5))) == Address("::1", 5)


def test_resolve_address_precedence() -> None:
    env = {ADDRESS_ENV: "envhost:1234"}
    assert resolve_address("arg:1", environ=env) == Address("arg", 1)
    assert resolve_address(Address("t", 2), environ=env) == Address("t", 2)
    assert resolve_address(("tup", "3"), environ=env) == Address("tup", 3)  # type: ignore[arg-type]
    assert resolve_address(None, environ=env) == Address("envhost", 1234)
    assert resolve_address("", environ=env) == Address("envhost", 1234)
    assert resolve_address(None, environ={}) == Address(DEFAULT_HOST, DEFAULT_PORT)
    assert resolve_address(None, environ={ADDRESS_ENV: ""}) == Address(DEFAULT_HOST, DEFAULT_PORT)
    with pytest.raises(errors.ConfigurationError):
        resolve_address(None, environ={ADDRESS_ENV: "nonsense"})


def test_resolve_address_reads_os_environ_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADDRESS_ENV, "fromenv:4321")
    assert resolve_address() == Address("fromenv", 4321)
    monkeypatch.delenv(ADDRESS_ENV)
    assert resolve_address() == Address(DEFAULT_HOST, DEFAULT_PORT)


def test_resolve_token() -> None:
    assert resolve_token("arg", environ={TOKEN_ENV: "env"}) == "arg"
    assert resolve_token(None, environ={TOKEN_ENV: "env"}) == "env"
    assert resolve_token("", environ={TOKEN_ENV: "env"}) == "env"
    assert resolve_token(None, environ={}) is None
    assert resolve_token(None, environ={TOKEN_ENV: ""}) is None


@pytest.mark.parametrize(
    "host,expected",
    [
        ("127.0.0.1", True),
        ("127.5.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("::", False),
        ("192.168.1.1", False),
        ("fe80::1%eth0", False),
    ],
)
def test_loopback_literal(host: str, expected: bool) -> None:
    assert loopback_literal(host) is expected


def test_loopback_literal_leaves_names_to_a_lookup() -> None:
    assert loopback_literal("graph.example") is None
