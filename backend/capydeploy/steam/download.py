"""Download artwork safely: bounded time, size and redirects, images only, no local targets (D7).

The address policy and the downloader's settings live here; the HTTP work, and aiohttp with it,
is in `_http_download`, imported on the first fetch, so an Agent that never downloads artwork by
URL never holds aiohttp in memory.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..protocol.constants import ARTWORK_MAX_BYTES, ARTWORK_MAX_REDIRECTS, ARTWORK_TIMEOUT
from .artwork import ImageType

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Decides whether a connection to this address and port may be made.
AddressPolicy = Callable[[IPAddress, int], bool]

_K = TypeVar("_K")


class ArtworkDownloadError(Exception):
    """One URL that could not be turned into an image; `reason` is what the Hub is told."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class DownloadedImage:
    url: str
    data: bytes
    image_type: ImageType


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    # Deprecated IPv4-compatible form ::a.b.c.d (but not :: and ::1 themselves).
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_forbidden_address(address: IPAddress) -> bool:
    """Loopback, link-local or unspecified, in IPv4, IPv6 and IPv4 embedded in IPv6.

    Such targets would let a Hub make the device probe its own services (Steam's debugger port).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and is_forbidden_address(embedded):
            return True
    if address.is_loopback or address.is_link_local or address.is_unspecified:
        return True
    # 0.0.0.0/8 means "this host" on Linux, not only 0.0.0.0 itself.
    return isinstance(address, ipaddress.IPv4Address) and int(address) >> 24 == 0


def default_address_allowed(address: IPAddress, port: int) -> bool:
    return not is_forbidden_address(address)


def allow_endpoints(
    endpoints: Iterable[tuple[str, int]], base: AddressPolicy = default_address_allowed
) -> AddressPolicy:
    """A policy that also allows exactly these `(ip, port)` pairs (tests allow their own server)."""
    allowed = {(ipaddress.ip_address(host), port) for host, port in endpoints}

    def policy(address: IPAddress, port: int) -> bool:
        return (address, port) in allowed or base(address, port)

    return policy


def parse_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host means when aiohttp will connect to it without asking the resolver.

    aiohttp takes every host made only of digits and dots, and every host with a ':', for an IP
    literal, and hands it straight to the socket layer, whose inet_aton also reads the legacy IPv4
    forms `127.1`, `2130706433` (decimal), `0177.0.0.1` (octal) and `0`. `ipaddress` rejects those,
    so they must be read here the way the socket layer reads them. Raises ValueError for a host of
    that shape that is no address at all.
    """
    address = parse_address(host)
    if address is not None:
        return address
    if ":" in host:
        raise ValueError(f"{host} is not a valid IPv6 address")
    if host.replace(".", "").isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise ValueError(f"{host} is not a valid IPv4 address") from None
    return None


class ArtworkDownloader:
    """Fetches artwork URLs one by one or several at once; every failure is per URL."""

    def __init__(
        self,
        *,
        timeout: float = ARTWORK_TIMEOUT,
        max_bytes: int = ARTWORK_MAX_BYTES,
        max_redirects: int = ARTWORK_MAX_REDIRECTS,
        address_allowed: AddressPolicy = default_address_allowed,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.address_allowed = address_allowed
        self.resolver = resolver  # tests give their own; default: the system resolver

    async def fetch(self, url: str) -> DownloadedImage:
        """Download one image or raise ArtworkDownloadError saying why."""
        results = await self.fetch_many({url: url})
        outcome = results[url]
        if isinstance(outcome, ArtworkDownloadError):
            raise outcome
        return outcome

    async def fetch_many(self, urls: Mapping[_K, str]) -> dict[_K, DownloadedImage | ArtworkDownloadError]:
        """Download several URLs concurrently; each key gets its image or its error."""
        if not urls:
            return {}
        # aiohttp (about 9 MiB once imported) is loaded only when artwork is fetched by URL.
        from ._http_download import download_all  # noqa: PLC0415

        return await download_all(self, urls)
