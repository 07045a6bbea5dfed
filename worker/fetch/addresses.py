"""Which addresses may be fetched from: the SSRF tables and their one check.

The client vets the address it actually connects to, on every hop, after resolving
the name itself (worker/fetch/client.py); this module only says which addresses are
not public and why.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["is_public_address", "non_public_reason"]


def _networks(table: list[tuple[str, str]]) -> tuple[tuple[Any, str], ...]:
    return tuple((ipaddress.ip_network(net), why) for net, why in table)


_V4_NOT_PUBLIC = _networks([
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared CGNAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
])

_V6_NOT_PUBLIC = _networks([
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/8", "reserved"),  # after the mapped forms are unwrapped: IPv4-compatible, SIIT, ...
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments"),  # Teredo among them: its client address is hidden
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "SRv6 SIDs"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
])

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def non_public_reason(ip: str) -> str | None:
    """Why ``ip`` is not a public unicast address, or None when it is one."""
    text = ip.strip().strip("[]").split("%", 1)[0]  # a zone id only ever comes with link-local
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "not an IP address"
    if isinstance(address, ipaddress.IPv6Address):
        # Forms that carry an IPv4 address reach that address: judge it instead.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = non_public_reason(str(embedded))
            return None if reason is None else f"{reason}, embedded {embedded}"
        table = _V6_NOT_PUBLIC
    else:
        table = _V4_NOT_PUBLIC
    for network, why in table:
        if address in network:
            return why
    # Belt and braces: whatever the standard library knows to be non-global.
    if not address.is_global or address.is_multicast:
        return "not global"
    return None


def is_public_address(ip: str) -> bool:
    """True when ``ip`` (IPv4 or IPv6 text) is a public unicast address safe to fetch from.

    Loopback, private, link-local (the cloud metadata service among them), CGNAT,
    multicast, unspecified, reserved, documentation, unique-local and site-local
    addresses are not public, nor are IPv4-mapped, 6to4 and NAT64 forms of them.
    Text that is not an IP address is not public either.
    """
    return non_public_reason(ip) is None
