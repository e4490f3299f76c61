"""GraphServer addresses: ``host:port`` text <-> (host, port), defaults and env.

Everything is read at call time; nothing is cached at import. Nothing here touches the network:
a name that only a lookup can place is left to :func:`ezmsg_console.net.is_loopback_host`.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Mapping, NamedTuple

from .errors import ConfigurationError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 25970
ADDRESS_ENV = "EZMSG_CONSOLE_ADDRESS"
TOKEN_ENV = "EZMSG_CONSOLE_TOKEN"


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``host:port`` (``[v6]:port`` for IPv6; port 0 means any free port)."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigurationError(f"bad address {text!r}: expected [host]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            raise ConfigurationError(f"bad address {text!r}: expected host:port, e.g. 127.0.0.1:25970")
    if not host:
        raise ConfigurationError(f"bad address {text!r}: the host is empty")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ConfigurationError(f"bad address {text!r}: the port must be a number from 0 to 65535")
    return Address(host, int(port_text))


def resolve_address(address: str | Address | tuple[str, int] | None = None,
                    environ: Mapping[str, str] | None = None) -> Address:
    """The address to use: the argument, else ``$EZMSG_CONSOLE_ADDRESS``, else the default."""
    if isinstance(address, tuple):
        return Address(str(address[0]), int(address[1]))
    if address:
        return parse_address(address)
    env = os.environ if environ is None else environ
    if env.get(ADDRESS_ENV):
        return parse_address(env[ADDRESS_ENV])
    return Address(DEFAULT_HOST, DEFAULT_PORT)


def resolve_token(token: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The shared secret: the argument, else ``$EZMSG_CONSOLE_TOKEN``, else None."""
    if token:
        return token
    env = os.environ if environ is None else environ
    return env.get(TOKEN_ENV) or None


def is_loopback_ip(ip: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 or ::1 (a ``%zone`` suffix is ignored); raises
    ValueError for text that is not an IP address."""
    return ipaddress.ip_address(ip.split("%")[0]).is_loopback


def loopback_literal(host: str) -> bool | None:
    """Whether ``host`` is loopback, where the text alone tells: an IP literal, or ``localhost``;
    None for any other name (only a lookup can tell)."""
    try:
        return is_loopback_ip(host)
    except ValueError:
        pass
    if host == "localhost":
        return True
    return None
