"""Name resolution for GraphServer addresses: the I/O half of :mod:`ezmsg_console.protocol.address`.

The sans-IO protocol package never touches the network; the server (which peers and which bind
address to trust) and the client (how long to wait for a greeting, when to warn) both need to know
whether a host name is loopback, and ask here.
"""

from __future__ import annotations

import socket

from .protocol.address import is_loopback_ip, loopback_literal


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1, ``localhost`` and names that resolve only to those."""
    literal = loopback_literal(host)
    if literal is not None:
        return literal
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(is_loopback_ip(str(info[4][0])) for info in infos)
