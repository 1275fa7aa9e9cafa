"""Download artwork safely: bounded time, size and redirects, images only, no local targets (D7)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .. import __version__
from ..protocol.constants import ARTWORK_MAX_BYTES, ARTWORK_MAX_REDIRECTS, ARTWORK_TIMEOUT
from .artwork import ImageType, sniff_image_type

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Decides whether a connection to this address and port may be made.
AddressPolicy = Callable[[IPAddress, int], bool]

_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_READ_SIZE: Final = 64 * 1024
_K = TypeVar("_K")


class ArtworkDownloadError(Exception):
    """One URL that could not be turned into an image; `reason` is what the Hub is told."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason


class ForbiddenAddressError(OSError):
    """Raised inside aiohttp's connector (hence an OSError) for an address the policy refuses."""


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


def _parse_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _literal_address(host: str) -> IPAddress | None:
    """The address a URL host means when aiohttp will connect to it without asking the resolver.

    aiohttp takes every host made only of digits and dots, and every host with a ':', for an IP
    literal, and hands it straight to the socket layer, whose inet_aton also reads the legacy IPv4
    forms `127.1`, `2130706433` (decimal), `0177.0.0.1` (octal) and `0`. `ipaddress` rejects those,
    so they must be read here the way the socket layer reads them. Raises ValueError for a host of
    that shape that is no address at all.
    """
    address = _parse_address(host)
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


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses the whole host if any address breaks the policy.

    The connector connects only to what this returns, so a DNS answer that changes between a
    check and the connection (rebinding) cannot reach a refused address.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = _parse_address(result["host"])
            if address is None or not self._policy(address, result["port"]):
                raise ForbiddenAddressError(f"{host} resolves to a forbidden address ({result['host']})")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


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
        self._inner_resolver = resolver

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
        resolver = GuardedResolver(self.address_allowed, self._inner_resolver)
        connector = aiohttp.TCPConnector(resolver=resolver)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            # Compressed bodies would be inflated before the size cap sees them.
            auto_decompress=False,
            trust_env=False,
            headers={
                "User-Agent": f"CapyDeploy/{__version__}",
                "Accept": "image/png, image/jpeg, image/webp",
                "Accept-Encoding": "identity",
            },
        )
        try:
            keys = list(urls)
            outcomes = await asyncio.gather(*(self._fetch_one(session, urls[key]) for key in keys))
        finally:
            await session.close()
        return dict(zip(keys, outcomes, strict=True))

    async def _fetch_one(
        self, session: aiohttp.ClientSession, url: str
    ) -> DownloadedImage | ArtworkDownloadError:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(session, url)
        except ArtworkDownloadError as error:
            return error
        except TimeoutError:
            return ArtworkDownloadError(url, f"timed out after {self.timeout:g} s")
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, ForbiddenAddressError):
                return ArtworkDownloadError(url, f"refused: {error.os_error}")
            return ArtworkDownloadError(
                url, f"cannot connect to {error.host}: {error.os_error.strerror or error}"
            )
        except aiohttp.ClientError as error:
            return ArtworkDownloadError(url, f"download failed: {error.__class__.__name__} {error}".strip())
        except ValueError as error:  # yarl/aiohttp reject malformed URLs with ValueError
            return ArtworkDownloadError(url, f"invalid URL: {error}")

    def _check_target(self, original: str, target: URL) -> None:
        if target.scheme not in ("http", "https"):
            raise ArtworkDownloadError(
                original, f"only http and https URLs are allowed, not {target.scheme!r}"
            )
        host = target.raw_host
        if not host:
            raise ArtworkDownloadError(original, "the URL has no host")
        # aiohttp connects to IP literals without asking the resolver: check them here.
        try:
            address = _literal_address(host)
        except ValueError as error:
            raise ArtworkDownloadError(original, f"refused: {error}") from None
        port = target.port or (443 if target.scheme == "https" else 80)
        if address is not None and not self.address_allowed(address, port):
            raise ArtworkDownloadError(original, f"refused: {host} is a forbidden address")

    async def _follow(self, session: aiohttp.ClientSession, url: str) -> DownloadedImage:
        target = URL(url)
        for _hop in range(self.max_redirects + 1):
            self._check_target(url, target)
            async with session.get(target, allow_redirects=False) as response:
                if response.status in _REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise ArtworkDownloadError(url, f"HTTP {response.status} without a Location")
                    target = response.url.join(URL(location))
                    continue
                if response.status != 200:
                    raise ArtworkDownloadError(url, f"HTTP {response.status}")
                data = await self._read_capped(url, response)
            image_type = sniff_image_type(data)
            if image_type is None:
                raise ArtworkDownloadError(url, "not a PNG, JPEG or WebP image")
            return DownloadedImage(url=url, data=data, image_type=image_type)
        raise ArtworkDownloadError(url, f"too many redirects (more than {self.max_redirects})")

    async def _read_capped(self, url: str, response: aiohttp.ClientResponse) -> bytes:
        too_large = f"larger than {self.max_bytes} bytes"
        if response.content_length is not None and response.content_length > self.max_bytes:
            raise ArtworkDownloadError(url, too_large)
        body = bytearray()
        async for chunk in response.content.iter_chunked(_READ_SIZE):
            if len(body) + len(chunk) > self.max_bytes:
                raise ArtworkDownloadError(url, too_large)
            body += chunk
        return bytes(body)
