"""Who the client is: the peer, or what trusted proxies say; spoofing buys nothing."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from satchel.peers import client_address, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "::1"])


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


@pytest.mark.parametrize(
    ("peer", "sent", "expected"),
    [
        # not a proxy: headers are ignored, whatever they say
        ("203.0.113.7", [("X-Forwarded-For", "1.2.3.4")], "203.0.113.7"),
        # a trusted proxy: the address it saw
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4")], "1.2.3.4"),
        # a client's own header at the left is ignored: the rightmost untrusted entry wins
        ("10.0.0.2", [("X-Forwarded-For", "6.6.6.6, 1.2.3.4")], "1.2.3.4"),
        # a chain of trusted proxies is walked through
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4, 10.0.0.9")], "1.2.3.4"),
        # repeated headers join in order
        ("10.0.0.2", [("X-Forwarded-For", "6.6.6.6"), ("x-forwarded-for", "1.2.3.4")], "1.2.3.4"),
        # everybody trusted: the leftmost
        ("10.0.0.2", [("X-Forwarded-For", "10.1.1.1, 10.0.0.9")], "10.1.1.1"),
        # garbage the proxy passed on: the last hop known
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4, unknown")], "10.0.0.2"),
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4, nonsense, 10.0.0.9")], "10.0.0.9"),
        # a proxy that sent nothing
        ("10.0.0.2", [], "10.0.0.2"),
        # IPv6 proxy, IPv4-mapped peers
        ("::1", [("X-Forwarded-For", "2001:db8::5")], "2001:db8::5"),
        ("::ffff:10.0.0.2", [("X-Forwarded-For", "1.2.3.4")], "1.2.3.4"),
        ("::ffff:203.0.113.7", [], "203.0.113.7"),
        # no address at all (a Unix socket)
        (None, [("X-Forwarded-For", "1.2.3.4")], "unknown"),
    ],
)
def test_x_forwarded_for(peer: str | None, sent: list[tuple[str, str]], expected: str) -> None:
    assert client_address(peer, headers(*sent), PROXIES) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ('for="192.0.2.60:4711"', "192.0.2.60"),
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("For=6.6.6.6, for=192.0.2.60", "192.0.2.60"),
        ("for=192.0.2.60, for=10.0.0.3", "192.0.2.60"),
        ("for=_hidden, for=10.0.0.3", "10.0.0.3"),
        ("proto=https", "10.0.0.2"),
    ],
)
def test_forwarded(value: str, expected: str) -> None:
    sent = headers(("Forwarded", value), ("X-Forwarded-For", "6.6.6.6"))
    assert client_address("10.0.0.2", sent, PROXIES, "forwarded") == expected


def test_only_the_configured_header_counts() -> None:
    sent = headers(("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "1.2.3.4"))
    assert client_address("10.0.0.2", sent, PROXIES) == "1.2.3.4"


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("10.0.0.2", headers(("X-Forwarded-For", "1.2.3.4")), ()) == "10.0.0.2"


def test_bad_networks_are_named() -> None:
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks(["10.0.0.1", "10.0.0.0/33"])
