"""The one exception tree of ezmsg-console.

Every error the package raises on purpose is a :class:`ConsoleError`. Errors
that the server reports travel as an ``ErrorReply`` frame carrying a stable
``code``; the client re-raises them as the *same class* by looking the code up
in :func:`error_class_for_code`.

::

    ConsoleError                         (code CONSOLE_ERROR)
    ├── ProtocolError                    (PROTOCOL_ERROR)   the byte stream or a message is wrong
    │   ├── LocalProtocolError           we were about to send something invalid
    │   ├── RemoteProtocolError          the peer sent something invalid
    │   │   ├── FrameTooLarge            (FRAME_TOO_LARGE)  length prefix over the limit
    │   │   └── DecodeError              (DECODE_ERROR)     not msgpack, or not a known message
    │   └── VersionMismatch              (VERSION_MISMATCH) protocol versions differ
    ├── ConnectionClosed                 the connection ended (pending calls fail with it)
    │   └── ServerUnreachable            nothing answered at the address
    ├── RequestTimeout (also TimeoutError)
    ├── AuthError                        (AUTH_FAILED)
    │   └── AuthRequired                 (AUTH_REQUIRED)   a token is needed here
    ├── ConfigurationError               (CONFIGURATION)   bad address, public bind without token
    ├── RunError                         (RUN_FAILED)      a unit or worker of a run failed
    └── ServerError                      (SERVER_ERROR)    the server refused a request
        ├── InvalidRequest               (INVALID_REQUEST)
        ├── NotFound                     (NOT_FOUND)
        ├── AddressCollision             (ADDRESS_COLLISION)
        ├── CycleError                   (CYCLIC)
        ├── OwnershipConflict            (OWNERSHIP_CONFLICT)
        ├── PermissionDenied             (PERMISSION_DENIED)
        ├── SettingsValidationError      (SETTINGS_VALIDATION)
        │   ├── InvalidValue             (INVALID_VALUE)   a value does not fit its field's schema
        │   └── UnknownField             (UNKNOWN_FIELD)   the field path names no field
        ├── Conflict                     (CONFLICT)        a settings write based on a stale seq
        ├── ProcessUnavailable           (PROCESS_UNAVAILABLE)
        └── SlowConsumer                 (SLOW_CONSUMER)

Each error carries ``details``: a plain-data mapping (msgpack-safe) with the
specifics, e.g. the colliding addresses of an :class:`AddressCollision`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping


class ConsoleError(Exception):
    """Root of every error ezmsg-console raises on purpose."""

    code: ClassVar[str] = "CONSOLE_ERROR"

    def __init__(self, message: str = "", details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message


class ProtocolError(ConsoleError):
    """The byte stream or a message broke the protocol."""

    code = "PROTOCOL_ERROR"


class LocalProtocolError(ProtocolError):
    """This side was about to send something the protocol does not allow."""

    code = "LOCAL_PROTOCOL_ERROR"


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""

    code = "REMOTE_PROTOCOL_ERROR"


class FrameTooLarge(RemoteProtocolError):
    """A frame's length prefix is over the limit; detected from the header alone."""

    code = "FRAME_TOO_LARGE"


class DecodeError(RemoteProtocolError):
    """A frame body is not valid msgpack, or not a well-formed known message."""

    code = "DECODE_ERROR"


class VersionMismatch(ProtocolError):
    """Client and server speak different protocol versions."""

    code = "VERSION_MISMATCH"


class ConnectionClosed(ConsoleError):
    """The connection ended; every call still waiting on it fails with this."""

    code = "CONNECTION_CLOSED"


class ServerUnreachable(ConnectionClosed):
    """Nothing answered at the GraphServer address."""

    code = "SERVER_UNREACHABLE"


class RequestTimeout(ConsoleError, TimeoutError):
    """A request got no answer before its deadline."""

    code = "TIMEOUT"


class AuthError(ConsoleError):
    """The handshake's authentication failed."""

    code = "AUTH_FAILED"


class AuthRequired(AuthError):
    """This server (or this peer's address) needs a shared-secret token."""

    code = "AUTH_REQUIRED"


class ConfigurationError(ConsoleError):
    """A setting is unusable: a malformed address, a public bind without a token."""

    code = "CONFIGURATION"


class RunError(ConsoleError):
    """A unit raised, or a worker process died, during ``run()``; details name the units."""

    code = "RUN_FAILED"


class ServerError(ConsoleError):
    """The server refused a request; subclasses name the reason."""

    code = "SERVER_ERROR"


class InvalidRequest(ServerError):
    """The request was missing fields, wrongly typed, or not allowed now."""

    code = "INVALID_REQUEST"


class NotFound(ServerError):
    """The thing the request names does not exist."""

    code = "NOT_FOUND"


class AddressCollision(ServerError):
    """Component addresses are already registered by another session."""

    code = "ADDRESS_COLLISION"


class CycleError(ServerError):
    """The edge would close a cycle (or is a self-loop) in the topic graph."""

    code = "CYCLIC"


class OwnershipConflict(ServerError):
    """A unit is owned by a different process."""

    code = "OWNERSHIP_CONFLICT"


class PermissionDenied(ServerError):
    """The request is not allowed from this peer (e.g. SHUTDOWN from a remote host)."""

    code = "PERMISSION_DENIED"


class SettingsValidationError(ServerError):
    """A settings value does not fit its schema."""

    code = "SETTINGS_VALIDATION"


class InvalidValue(SettingsValidationError):
    """A value does not fit its field: wrong type, out of bounds, not a choice, read-only.
    ``details`` has ``field_path``, ``expected`` and ``got``."""

    code = "INVALID_VALUE"


class UnknownField(SettingsValidationError):
    """The field path names no field of the settings. ``details`` has ``field_path``."""

    code = "UNKNOWN_FIELD"


class Conflict(ServerError):
    """The settings changed since ``expected_seq``; ``details`` has ``current_seq`` and ``current_value``."""

    code = "CONFLICT"


class ProcessUnavailable(ServerError):
    """The owning process is gone or cannot be reached."""

    code = "PROCESS_UNAVAILABLE"


class SlowConsumer(ServerError):
    """The peer fell too far behind and was disconnected."""

    code = "SLOW_CONSUMER"


class TooManyConnections(ServerError):
    """The GraphServer is at its connection cap (``serve --max-connections``)."""

    code = "TOO_MANY_CONNECTIONS"


class AuthRateLimited(AuthError):
    """Too many failed handshakes from this address lately: try again later."""

    code = "AUTH_RATE_LIMITED"


def _all_subclasses(cls: type[ConsoleError]) -> list[type[ConsoleError]]:
    found: list[type[ConsoleError]] = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


def error_class_for_code(code: str) -> type[ConsoleError]:
    """The exception class for a wire error ``code``; unknown codes give ServerError."""
    for cls in _all_subclasses(ConsoleError):
        if cls.code == code:
            return cls
    return ServerError


def error_from_wire(code: str, message: str, details: Mapping[str, Any] | None) -> ConsoleError:
    """Rebuild the exception a peer reported, as the same class."""
    cls = error_class_for_code(code)
    err = cls(message, details)
    if cls is ServerError and code != ServerError.code:
        err.details.setdefault("code", code)
    return err


def wire_code(err: ConsoleError) -> str:
    """The code to send for ``err`` (a generic ServerError keeps the code it arrived with)."""
    if type(err) is ServerError and isinstance(err.details.get("code"), str):
        return str(err.details["code"])
    return err.code
