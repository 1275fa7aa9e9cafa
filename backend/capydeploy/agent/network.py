"""The addresses of this device that a hub on the LAN can use."""

from __future__ import annotations

import ipaddress

import ifaddr


def lan_addresses(bound_host: str) -> list[str]:
    """IPv4 addresses a hub can reach us at: the bound one, or every non-loopback one for 0.0.0.0."""
    if bound_host not in ("", "0.0.0.0", "::"):  # noqa: S104
        return [bound_host]
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue  # IPv6 entries are tuples; hubs are told IPv4 addresses.
            address = ipaddress.ip_address(ip.ip)
            if address.is_loopback or address.is_link_local or address.is_unspecified:
                continue
            found.append(ip.ip)
    return sorted(set(found)) or ["127.0.0.1"]
