"""Artwork downloads against a local aiohttp server: limits, sniffing, redirects, the address guard."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from capydeploy.steam.artwork import ImageType
from capydeploy.steam.download import (
    ArtworkDownloader,
    ArtworkDownloadError,
    allow_endpoints,
    is_forbidden_address,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 100
JPEG = b"\xff\xd8\xff\xe0" + b"\x02" * 100
CAP = 4096


@dataclass
class ImageServer:
    host: str
    port: int
    other_port: int  # a second local server the guard must not let redirects reach

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return runner, port


@pytest.fixture
async def server() -> AsyncIterator[ImageServer]:
    never = asyncio.Event()

    async def png(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def jpeg(_: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="image/jpeg")

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>not an image</html>", content_type="image/png")

    async def huge_declared(_: web.Request) -> web.Response:
        return web.Response(body=PNG[:8] + b"\x00" * (CAP * 2), content_type="image/png")

    async def huge_streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to trust
        response.content_type = "image/png"
        await response.prepare(request)
        await response.write(PNG[:8])
        for _ in range(64):
            await response.write(b"\x00" * 1024)
        await response.write_eof()
        return response

    async def slow(_: web.Request) -> web.Response:
        await never.wait()
        return web.Response(body=PNG)

    def redirect(location: str) -> web.Response:
        raise web.HTTPFound(location)

    async def loop(_: web.Request) -> web.Response:
        return redirect("/loop")

    async def hop(request: web.Request) -> web.Response:
        left = int(request.match_info["left"])
        return redirect("/grid.png" if left == 0 else f"/hop/{left - 1}")

    async def other(_: web.Request) -> web.Response:
        return web.Response(body=PNG)

    other_app = web.Application()
    other_app.router.add_get("/secret.png", other)
    other_runner, other_port = await _start(other_app)

    async def to_other(_: web.Request) -> web.Response:
        return redirect(f"http://127.0.0.1:{other_port}/secret.png")

    async def to_localhost(_: web.Request) -> web.Response:
        return redirect(f"http://localhost:{other_port}/secret.png")

    async def to_metadata(_: web.Request) -> web.Response:
        return redirect("http://169.254.169.254/latest/meta-data")

    async def to_file(_: web.Request) -> web.Response:
        return redirect("file:///etc/passwd")

    app = web.Application()
    app.router.add_get("/grid.png", png)
    app.router.add_get("/hero.jpg", jpeg)
    app.router.add_get("/page", html)
    app.router.add_get("/huge-declared", huge_declared)
    app.router.add_get("/huge-streamed", huge_streamed)
    app.router.add_get("/slow", slow)
    app.router.add_get("/loop", loop)
    app.router.add_get("/hop/{left}", hop)
    app.router.add_get("/to-other", to_other)
    app.router.add_get("/to-localhost", to_localhost)
    app.router.add_get("/to-metadata", to_metadata)
    app.router.add_get("/to-file", to_file)
    runner, port = await _start(app)
    try:
        yield ImageServer("127.0.0.1", port, other_port)
    finally:
        never.set()
        await runner.cleanup()
        await other_runner.cleanup()


@pytest.fixture
def downloader(server: ImageServer) -> ArtworkDownloader:
    # Only the test server itself is let through; its neighbour on another port is not.
    return ArtworkDownloader(max_bytes=CAP, address_allowed=allow_endpoints([(server.host, server.port)]))


async def test_png_and_jpeg(downloader: ArtworkDownloader, server: ImageServer) -> None:
    image = await downloader.fetch(server.url("/grid.png"))
    assert (image.data, image.image_type) == (PNG, ImageType.PNG)
    image = await downloader.fetch(server.url("/hero.jpg"))
    assert image.image_type is ImageType.JPEG


async def _reason(downloader: ArtworkDownloader, url: str) -> str:
    with pytest.raises(ArtworkDownloadError) as caught:
        await downloader.fetch(url)
    assert caught.value.url == url
    return caught.value.reason


async def test_http_errors(downloader: ArtworkDownloader, server: ImageServer) -> None:
    assert await _reason(downloader, server.url("/missing.png")) == "HTTP 404"


async def test_wrong_magic_bytes(downloader: ArtworkDownloader, server: ImageServer) -> None:
    assert "not a PNG, JPEG or WebP" in await _reason(downloader, server.url("/page"))


@pytest.mark.parametrize("path", ["/huge-declared", "/huge-streamed"])
async def test_too_large(downloader: ArtworkDownloader, server: ImageServer, path: str) -> None:
    assert await _reason(downloader, server.url(path)) == f"larger than {CAP} bytes"


async def test_redirects_are_followed_up_to_three(downloader: ArtworkDownloader, server: ImageServer) -> None:
    image = await downloader.fetch(server.url("/hop/2"))  # three redirects
    assert image.data == PNG
    assert "too many redirects" in await _reason(downloader, server.url("/hop/3"))


async def test_redirect_loop(downloader: ArtworkDownloader, server: ImageServer) -> None:
    assert "too many redirects" in await _reason(downloader, server.url("/loop"))


@pytest.mark.parametrize("path", ["/to-other", "/to-localhost", "/to-metadata"])
async def test_redirect_to_a_forbidden_address(
    downloader: ArtworkDownloader, server: ImageServer, path: str
) -> None:
    assert "refused" in await _reason(downloader, server.url(path))


async def test_redirect_to_another_scheme(downloader: ArtworkDownloader, server: ImageServer) -> None:
    assert "only http and https" in await _reason(downloader, server.url("/to-file"))


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:9/x.png",
        "http://[::ffff:127.0.0.1]:9/x.png",
        "http://0.0.0.0:9/x.png",
        "http://169.254.169.254/latest",
        "http://[fe80::1]/x.png",
    ],
)
async def test_forbidden_literal_addresses(downloader: ArtworkDownloader, url: str) -> None:
    assert "refused" in await _reason(downloader, url)


@pytest.mark.parametrize("url", ["ftp://example.com/x.png", "file:///etc/passwd", "javascript:alert(1)"])
async def test_other_schemes(downloader: ArtworkDownloader, url: str) -> None:
    assert "only http and https" in await _reason(downloader, url)


async def test_the_default_guard_refuses_the_local_server(server: ImageServer) -> None:
    guarded = ArtworkDownloader()
    assert "refused" in await _reason(guarded, server.url("/grid.png"))
    assert "refused" in await _reason(guarded, f"http://localhost:{server.port}/grid.png")


class FixedResolver(AbstractResolver):
    """Answers every name with fixed addresses, like a hostile DNS server would."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_names_are_checked_after_resolution_at_connect_time(server: ImageServer) -> None:
    # A name that resolves to loopback (DNS rebinding) is refused by the connector's own resolver.
    rebinding = FixedResolver("127.0.0.1")
    guarded = ArtworkDownloader(resolver=rebinding)
    reason = await _reason(guarded, f"http://images.example:{server.port}/grid.png")
    assert "forbidden address (127.0.0.1)" in reason
    assert rebinding.asked == ["images.example"]
    # One bad address among good ones is enough to refuse the host.
    mixed = ArtworkDownloader(resolver=FixedResolver("93.184.216.34", "::1"))
    assert "refused" in await _reason(mixed, "http://images.example/grid.png")


async def test_a_resolved_name_connects_where_the_guard_allows(server: ImageServer) -> None:
    allowed = ArtworkDownloader(
        resolver=FixedResolver("127.0.0.1"), address_allowed=allow_endpoints([(server.host, server.port)])
    )
    image = await allowed.fetch(f"http://images.example:{server.port}/grid.png")
    assert image.data == PNG


async def test_timeout(server: ImageServer) -> None:
    impatient = ArtworkDownloader(timeout=0.2, address_allowed=allow_endpoints([(server.host, server.port)]))
    assert "timed out" in await _reason(impatient, server.url("/slow"))


async def test_one_bad_url_never_fails_the_others(downloader: ArtworkDownloader, server: ImageServer) -> None:
    results = await downloader.fetch_many(
        {"grid": server.url("/grid.png"), "hero": server.url("/missing"), "logo": server.url("/to-other")}
    )
    grid, hero, logo = results["grid"], results["hero"], results["logo"]
    assert not isinstance(grid, ArtworkDownloadError)
    assert grid.data == PNG
    assert isinstance(hero, ArtworkDownloadError)
    assert hero.reason == "HTTP 404"
    assert isinstance(logo, ArtworkDownloadError)
    assert await downloader.fetch_many({}) == {}


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("0.0.0.0", True),
        ("0.1.2.3", True),
        ("169.254.169.254", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:169.254.1.1", True),
        ("::127.0.0.1", True),
        ("8.8.8.8", False),
        ("192.168.1.20", False),
        ("10.0.0.5", False),
        ("2606:4700::1111", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_forbidden_addresses(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address)) is forbidden
