"""The HTTP side of artwork downloads (aiohttp): a resolver that enforces the address policy, and
the fetch of each URL with its redirects and size cap. Imported only when artwork is fetched."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import Final, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .. import __version__
from .artwork import sniff_image_type
from .download import (
    AddressPolicy,
    ArtworkDownloader,
    ArtworkDownloadError,
    DownloadedImage,
    literal_address,
    parse_address,
)

_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_READ_SIZE: Final = 64 * 1024
_K = TypeVar("_K")


class ForbiddenAddressError(OSError):
    """Raised inside aiohttp's connector (hence an OSError) for an address the policy refuses."""


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
            address = parse_address(result["host"])
            if address is None or not self._policy(address, result["port"]):
                raise ForbiddenAddressError(f"{host} resolves to a forbidden address ({result['host']})")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


async def download_all(
    downloader: ArtworkDownloader, urls: Mapping[_K, str]
) -> dict[_K, DownloadedImage | ArtworkDownloadError]:
    """Fetch every URL concurrently with the downloader's limits; each key gets its image or error."""
    resolver = GuardedResolver(downloader.address_allowed, downloader.resolver)
    connector = aiohttp.TCPConnector(resolver=resolver)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=downloader.timeout),
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
        outcomes = await asyncio.gather(*(_fetch_one(downloader, session, urls[key]) for key in keys))
    finally:
        await session.close()
    return dict(zip(keys, outcomes, strict=True))


async def _fetch_one(
    downloader: ArtworkDownloader, session: aiohttp.ClientSession, url: str
) -> DownloadedImage | ArtworkDownloadError:
    try:
        async with asyncio.timeout(downloader.timeout):
            return await _follow(downloader, session, url)
    except ArtworkDownloadError as error:
        return error
    except TimeoutError:
        return ArtworkDownloadError(url, f"timed out after {downloader.timeout:g} s")
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


def _check_target(policy: AddressPolicy, original: str, target: URL) -> None:
    if target.scheme not in ("http", "https"):
        raise ArtworkDownloadError(original, f"only http and https URLs are allowed, not {target.scheme!r}")
    host = target.raw_host
    if not host:
        raise ArtworkDownloadError(original, "the URL has no host")
    # aiohttp connects to IP literals without asking the resolver: check them here.
    try:
        address = literal_address(host)
    except ValueError as error:
        raise ArtworkDownloadError(original, f"refused: {error}") from None
    port = target.port or (443 if target.scheme == "https" else 80)
    if address is not None and not policy(address, port):
        raise ArtworkDownloadError(original, f"refused: {host} is a forbidden address")


async def _follow(downloader: ArtworkDownloader, session: aiohttp.ClientSession, url: str) -> DownloadedImage:
    target = URL(url)
    for _hop in range(downloader.max_redirects + 1):
        _check_target(downloader.address_allowed, url, target)
        async with session.get(target, allow_redirects=False) as response:
            if response.status in _REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise ArtworkDownloadError(url, f"HTTP {response.status} without a Location")
                target = response.url.join(URL(location))
                continue
            if response.status != 200:
                raise ArtworkDownloadError(url, f"HTTP {response.status}")
            data = await _read_capped(downloader.max_bytes, url, response)
        image_type = sniff_image_type(data)
        if image_type is None:
            raise ArtworkDownloadError(url, "not a PNG, JPEG or WebP image")
        return DownloadedImage(url=url, data=data, image_type=image_type)
    raise ArtworkDownloadError(url, f"too many redirects (more than {downloader.max_redirects})")


async def _read_capped(max_bytes: int, url: str, response: aiohttp.ClientResponse) -> bytes:
    too_large = f"larger than {max_bytes} bytes"
    if response.content_length is not None and response.content_length > max_bytes:
        raise ArtworkDownloadError(url, too_large)
    body = bytearray()
    async for chunk in response.content.iter_chunked(_READ_SIZE):
        if len(body) + len(chunk) > max_bytes:
            raise ArtworkDownloadError(url, too_large)
        body += chunk
    return bytes(body)
