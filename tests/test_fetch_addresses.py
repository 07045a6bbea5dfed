"""worker.fetch.addresses: which addresses are public (the SSRF tables), as pure checks.

That the client refuses them before connecting is tested against real sockets in test_fetch_client.py.
"""

from __future__ import annotations

import pytest

from worker.fetch.addresses import is_public_address, non_public_reason


@pytest.mark.parametrize("ip, public", [
    ("8.8.8.8", True),
    ("93.184.216.34", True),
    ("2606:4700:4700::1111", True),
    ("2a00:1450:4001:82b::200e", True),
    ("::ffff:8.8.8.8", True),
    ("2002:0808:0808::1", True),  # 6to4 of a public address
    ("64:ff9b::808:808", True),  # NAT64 of a public address
    ("127.0.0.1", False),
    ("127.255.255.254", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("172.31.255.255", False),
    ("172.32.0.1", True),
    ("192.168.0.1", False),
    ("169.254.169.254", False),
    ("100.64.0.1", False),
    ("100.127.255.255", False),
    ("100.128.0.1", True),
    ("0.0.0.0", False),
    ("255.255.255.255", False),
    ("224.0.0.251", False),
    ("240.0.0.1", False),
    ("192.0.2.1", False),
    ("198.18.0.1", False),
    ("::1", False),
    ("::", False),
    ("fc00::1", False),
    ("fd12:3456::1", False),
    ("fe80::1", False),
    ("fe80::1%eth0", False),
    ("fec0::1", False),
    ("ff02::1", False),
    ("2001:db8::1", False),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:169.254.169.254", False),
    ("::127.0.0.1", False),  # IPv4-compatible
    ("64:ff9b::7f00:1", False),
    ("64:ff9b::a9fe:a9fe", False),
    ("64:ff9b:1::808:808", False),
    ("2002:7f00:0001::1", False),
    ("2002:c0a8:0101::1", False),
    ("[::1]", False),
    ("localhost", False),
    ("", False),
    ("not an ip", False),
])
def test_is_public_address(ip: str, public: bool) -> None:
    assert is_public_address(ip) is public


@pytest.mark.parametrize("ip, reason", [
    ("169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private, embedded 10.0.0.1"),
    ("not an ip", "not an IP address"),
    ("8.8.8.8", None),
])
def test_non_public_reason_says_why(ip: str, reason: str | None) -> None:
    assert non_public_reason(ip) == reason
