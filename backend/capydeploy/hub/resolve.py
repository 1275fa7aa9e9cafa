"""Turn an AGENT argument into an address: host, host:port, ws:// URL, or an advertised mDNS name.

The rule, in order (every step async; nothing blocks the loop):

1. A `ws://` URL, an IP literal (`192.168.1.20`, `[fe80::1]:9999`) or a dotted host name
   (`deck.lan`, `steamdeck.local:9999`) is used as typed: no lookup here, the connection
   resolves it. Exception: a `*.local` name the system resolver cannot resolve (Linux without
   nss-mdns) is looked up by mDNS, as a host name.
2. A single-label host name (`steamdeck`, `localhost:9999`) is tried with the system resolver
   first (at most `DNS_TIMEOUT` seconds); if that finds it, it is used as typed.
3. Anything else (text with spaces or other characters a host name cannot hold, or a single
   label the resolver does not know) is taken as the name an Agent advertises, or its agent id,
   and looked up by mDNS (case-insensitive; `mdns_timeout` seconds). The advertised port wins
   over a port typed after such a name.
4. Nothing found: `ValueError` saying so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence

from ..protocol.constants import DEFAULT_PORT
from .address import AgentAddress, parse_agent_address

# zeroconf and .discovery are imported only when a name is looked up by mDNS: an IP address or a
# host name never pays for them (start-up time of every CLI command, tests/cli/test_cli_imports.py).

DNS_TIMEOUT = 2.0
MDNS_TIMEOUT = 3.0

_TYPED_PORT = re.compile(r":\d{1,5}$")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?)(?::(?P<port>\d{1,5}))?$")


async def resolve_agent(
    text: str,
    *,
    mdns_timeout: float = MDNS_TIMEOUT,
    dns_timeout: float = DNS_TIMEOUT,
    interfaces: Sequence[str] | None = None,
) -> AgentAddress:
    text = text.strip()
    if not text:
        raise ValueError("empty agent address")
    if text.count(":") > 1 and _is_ip_literal(text):
        return AgentAddress(text, DEFAULT_PORT)  # a bare IPv6 address: its colons are not a port
    if "://" in text or text.startswith("[") or _is_ip_literal(text):
        return parse_agent_address(text)
    match = _HOST_PORT.match(text)
    if match is not None:
        host = match["host"]
        address = parse_agent_address(text)
        if "." in host.rstrip("."):
            if host.rstrip(".").lower().endswith(".local") and not await _dns_resolves(host, dns_timeout):
                found = await _mdns_host(host, mdns_timeout, interfaces)
                if found is not None:
                    return AgentAddress(found, address.port)
            return address
        if await _dns_resolves(host, dns_timeout):
            return address
        name = host
    else:
        name = _TYPED_PORT.sub("", text)  # "Living Room Deck:9999": the advertised port is used
    found_agent = await resolve_name(name, mdns_timeout, interfaces=interfaces)
    if found_agent is not None:
        return found_agent
    raise ValueError(
        f"no agent {text!r}: not a host name that resolves, and no agent advertises that name on the LAN"
    )


async def resolve_name(
    name: str, timeout: float = MDNS_TIMEOUT, *, interfaces: Sequence[str] | None = None
) -> AgentAddress | None:
    """The address of the Agent advertising `name` (or with that id), by mDNS; None if none did."""
    from .discovery import resolve_name as mdns_resolve_name  # noqa: PLC0415 - lazy: mDNS only

    return await mdns_resolve_name(name, timeout, interfaces=interfaces)


def _is_ip_literal(text: str) -> bool:
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _dns_resolves(host: str, timeout: float) -> bool:
    """Whether the system resolver knows `host`; it runs in a thread, so the loop never waits."""
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout)
    except (OSError, TimeoutError, UnicodeError):
        return False
    return bool(found)


async def _mdns_host(host: str, timeout: float, interfaces: Sequence[str] | None) -> str | None:
    """An IPv4 address for a `*.local` host name, asked by mDNS."""
    from zeroconf import InterfaceChoice, IPVersion  # noqa: PLC0415 - lazy: mDNS only
    from zeroconf._services.info import AddressResolverIPv4  # noqa: PLC0415 - exported, missing from __all__
    from zeroconf.asyncio import AsyncZeroconf  # noqa: PLC0415

    chosen = list(interfaces) if interfaces is not None else InterfaceChoice.All
    zc = AsyncZeroconf(interfaces=chosen, ip_version=IPVersion.V4Only)
    try:
        resolver = AddressResolverIPv4(host if host.endswith(".") else f"{host}.")
        if await resolver.async_request(zc.zeroconf, int(timeout * 1000)):
            addresses = resolver.parsed_addresses(IPVersion.V4Only)
            return addresses[0] if addresses else None
        return None
    finally:
        closing = asyncio.ensure_future(zc.async_close())
        done, _ = await asyncio.wait({closing}, timeout=1.0)
        if not done:
            closing.cancel()
