"""The client's address: the socket peer, or what trusted proxies say in X-Forwarded-For."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from multidict import MultiMapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_hop(text: str) -> Address | None:
    """One X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`; None if none of these."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ClientIp:
    """Resolves the address a client is limited by.

    X-Forwarded-For is believed only when the socket peer is a trusted proxy. Then the list is read from
    the right, each hop appended by the proxy that received the connection: the right-most address that
    is not a trusted proxy is the client. Everything left of it was written by that client and is
    ignored, so a spoofed header neither resets nor changes anyone's budget. If a trusted proxy wrote
    something that is not an address, the last good hop (a proxy) stands in for the client.

    IPv6 clients are limited per /64, the block one subscriber usually gets: otherwise each of the 2^64
    addresses a single host can take would have a budget of its own.
    """

    def __init__(self, trusted: Sequence[Network]) -> None:
        self.trusted = tuple(trusted)
        # Few distinct addresses are hot at once; parsing them costs more than the cache lookup.
        self._is_trusted = functools.lru_cache(maxsize=4096)(self._check_trusted)
        self.key = functools.lru_cache(maxsize=65536)(_client_key)

    def _check_trusted(self, address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(parsed in network for network in self.trusted)

    def resolve(self, peer: str | None, headers: MultiMapping[str]) -> str:
        """The client key for a connection from `peer` with these request headers (a multidict)."""
        return self.key(self.address(peer, headers))

    def address(self, peer: str | None, headers: MultiMapping[str]) -> str:
        """The client's address (what the access log shows), by the rules above."""
        peer = peer or ""
        if not self.trusted or not self._is_trusted(peer):
            return peer
        client = peer
        hops = [hop for value in headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
        for hop in reversed(hops):
            address = parse_hop(hop)
            if address is None:
                break
            client = str(address)
            if not self._is_trusted(client):
                break
        return client


def _client_key(address: str) -> str:
    """IPv4 as is; IPv6 as its /64 (an IPv4-mapped IPv6 address as the IPv4 address)."""
    if ":" not in address:
        return address
    try:
        parsed = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((parsed, 64), strict=False))
