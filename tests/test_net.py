"""is_loopback_host: literals without a lookup, names by what they resolve to."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from ezmsg_console import net


def _resolving_to(*ips: str) -> Any:
    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if not ips:
            raise socket.gaierror(socket.EAI_NONAME, "no such name")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0)) for ip in ips]
    return getaddrinfo


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("10.0.0.1", False), ("fe80::1%eth0", False)])
def test_literals_need_no_lookup(host: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net.socket, "getaddrinfo", _resolving_to())  # a lookup would answer "no such name"
    assert net.is_loopback_host(host) is expected


@pytest.mark.parametrize(("ips", "expected"), [(("127.0.0.1",), True), (("127.0.1.1", "::1"), True),
                                               (("127.0.0.1", "192.168.1.5"), False), ((), False)])
def test_names_are_loopback_only_if_every_address_is(ips: tuple[str, ...], expected: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net.socket, "getaddrinfo", _resolving_to(*ips))
    assert net.is_loopback_host("graph.example") is expected
