"""Why a connection to a GraphServer failed, in words an operator can act on."""

from __future__ import annotations

from ..protocol.errors import (
    AuthError,
    AuthRateLimited,
    AuthRequired,
    ConfigurationError,
    ConsoleError,
    ServerUnreachable,
    TooManyConnections,
    VersionMismatch,
)
from .source import NotAGraphServer

__all__ = ["connect_failure"]


def connect_failure(exc: BaseException) -> str:
    """Why a connection attempt failed, in a few words an operator can act on."""
    message = str(exc.message if isinstance(exc, ConsoleError) else exc) or type(exc).__name__
    if isinstance(exc, AuthRateLimited):
        return f"too many failed attempts: {message}"
    if isinstance(exc, AuthRequired):
        return "needs a token (--token or $EZMSG_CONSOLE_TOKEN)"
    if isinstance(exc, AuthError):
        return f"authentication: {message}"
    if isinstance(exc, NotAGraphServer):
        return f"not a GraphServer ({exc.details.get('reason', message)})"
    if isinstance(exc, TooManyConnections):
        return "the server is full (its --max-connections)"
    if isinstance(exc, VersionMismatch):
        return f"incompatible server: {message}"
    if isinstance(exc, ServerUnreachable):
        lowered = message.lower()
        if "refused" in lowered or "errno 111" in lowered or "connect call failed" in lowered:
            return "refused: nothing listens there"
        if "timed out" in lowered or "no answer within" in lowered or "timeout" in lowered:
            return "unreachable: no answer"
        if "name or service" in lowered or "nodename" in lowered or "resolve" in lowered:
            return "unknown host"
        return "unreachable"
    if isinstance(exc, (ValueError, ConfigurationError)):
        return f"bad address: {message}"
    return message
