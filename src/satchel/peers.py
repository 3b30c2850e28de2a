"""Who the client is, for per-client limits: the peer, or what a trusted proxy says.

X-Forwarded-For and Forwarded (RFC 7239) are believed only when the peer is a
trusted proxy, and then only the part that trusted proxies wrote: the list is
read from the right, skipping trusted addresses; the first other address is the
client. Whatever the client itself put at the left of the header is ignored, so
a spoofed header cannot buy a fresh bucket (transfer.sh's bypass).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """'10.0.0.1', '10.0.0.0/8', '::1' → networks; ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not an address or network: {value.strip()!r}") from exc
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(value: str) -> list[str]:
    """The for= node of each element of a Forwarded header, ports and brackets removed."""
    nodes = []
    for element in value.split(","):
        node = ""
        for pair in element.split(";"):
            name, _, raw = pair.strip().partition("=")
            if name.strip().lower() == "for":
                node = raw.strip().strip('"')
        if node.startswith("["):  # "[2001:db8::1]:4711"
            node = node[1:].partition("]")[0]
        elif node.count(":") == 1:  # "192.0.2.1:4711"
            node = node.partition(":")[0]
        nodes.append(node)
    return nodes


def is_trusted(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    """Whether the peer is one of the trusted proxies."""
    hop = _address(peer or "") if trusted else None
    return hop is not None and any(hop in net for net in trusted)


def client_address(
    peer: str | None,
    headers: Mapping[str, str],
    trusted: tuple[Network, ...],
    header: str = "x-forwarded-for",
) -> str:
    """The client's address as text; 'unknown' when the peer has none (a Unix socket)."""
    if not trusted:
        return peer or "unknown"
    hop = _address(peer or "")
    if hop is None:
        return peer or "unknown"
    if not any(hop in net for net in trusted):
        return str(hop)
    values = [v for k, v in headers.items() if k.lower() == header]
    if header == "forwarded":
        chain = [node for value in values for node in _forwarded_for(value)]
    else:
        chain = [part.strip() for value in values for part in value.split(",")]
    for entry in reversed(chain):
        address = _address(entry)
        if address is None:  # "unknown", an obfuscated node, garbage:
            break  # the proxy that wrote it is the last hop we know
        hop = address
        if not any(address in net for net in trusted):
            break
    return str(hop)
