"""Shared-secret challenge-response for the handshake (HMAC-SHA256).

The token never crosses the wire. The server's hello carries a fresh random
nonce; the client proves it knows the token by an HMAC over both nonces, its
role and its name. A captured handshake is useless later because the server's
nonce is new on every connection. The server answers with its own proof over
the same nonces, so the client knows it reached the right server.

Data links (publisher <-> subscriber sockets) use the same construction with a
per-server secret the GraphServer hands to process connections only: the
publisher sends a nonce, the subscriber answers with :func:`link_proof`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_CONTEXT = b"ezmsg-console/auth/v1"


def new_nonce() -> str:
    """A fresh 128-bit random nonce as hex."""
    return secrets.token_hex(16)


def _mac(token: str, *parts: str) -> str:
    # Each field is length-prefixed, so no two different field lists share an input.
    msg = bytearray(_CONTEXT)
    for part in parts:
        raw = part.encode("utf-8")
        msg += len(raw).to_bytes(4, "big") + raw
    return hmac.new(token.encode("utf-8"), bytes(msg), hashlib.sha256).hexdigest()


def client_proof(token: str, server_nonce: str, client_nonce: str, role: str, name: str) -> str:
    """What the client sends to prove it holds ``token``."""
    return _mac(token, "client", server_nonce, client_nonce, role, name)


def server_proof(token: str, server_nonce: str, client_nonce: str) -> str:
    """What the server sends back to prove it holds ``token`` too."""
    return _mac(token, "server", server_nonce, client_nonce)


def link_proof(secret: str, nonce: str, pub_id: str, sub_id: str) -> str:
    """What a subscriber sends a publisher to prove it holds the data-link secret, which the
    GraphServer gives to process connections only (``Welcome.data_secret``)."""
    return _mac(secret, "link", nonce, pub_id, sub_id)


def proofs_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison; a missing proof never matches."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))
