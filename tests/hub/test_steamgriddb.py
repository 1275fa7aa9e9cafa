"""SteamGridDB lookup against a local fake of API v2."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from capydeploy.hub.steamgriddb import SteamGridDB, SteamGridDBError, find_artwork, pick_image

KEY = "test-key-not-a-real-one"


def image(url: str, width: int, height: int, mime: str = "image/png") -> dict[str, Any]:
    return {
        "id": hash(url) & 0xFFFF,
        "url": url,
        "thumb": url + "?thumb",
        "mime": mime,
        "width": width,
        "height": height,
    }


@dataclass
class FakeSGDB:
    base_url: str = ""
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    games: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)


@pytest.fixture
async def sgdb() -> AsyncIterator[FakeSGDB]:
    fake = FakeSGDB()
    fake.games = {
        "Hollow Knight": [
            {"id": 1234, "name": "Hollow Knight"},
            {"id": 99, "name": "Hollow Knight: Silksong"},
        ]
    }
    grids = [
        image("https://cdn.example/grid-animated.webp", 600, 900, "image/webp"),
        image("https://cdn.example/grid.png", 600, 900),
        image("https://cdn.example/banner-small.png", 460, 215),
        image("https://cdn.example/banner.jpg", 920, 430, "image/jpeg"),
    ]
    assets = {
        "heroes": [image("https://cdn.example/hero.png", 1920, 620)],
        "logos": [],
        "icons": [
            image("https://cdn.example/icon.ico", 256, 256, "image/vnd.microsoft.icon"),
            image("https://cdn.example/icon.png", 256, 256),
        ],
    }

    @web.middleware
    async def check_key(request: web.Request, handler: Any) -> web.StreamResponse:
        fake.seen.append((request.path, dict(request.query)))
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"success": False, "errors": ["bad key"]}, status=401)
        return await handler(request)

    async def search(request: web.Request) -> web.Response:
        return web.json_response({"success": True, "data": fake.games.get(request.match_info["term"], [])})

    async def grid_list(request: web.Request) -> web.Response:
        sizes = request.query.get("dimensions", "").split(",")
        data = [item for item in grids if f"{item['width']}x{item['height']}" in sizes]
        return web.json_response({"success": True, "data": data})

    async def asset_list(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind in fake.failing:
            return web.json_response({"success": False}, status=500)
        return web.json_response({"success": True, "data": assets[kind]})

    app = web.Application(middlewares=[check_key])
    app.router.add_get("/api/v2/search/autocomplete/{term}", search)
    app.router.add_get("/api/v2/grids/game/{id}", grid_list)
    app.router.add_get("/api/v2/{kind}/game/{id}", asset_list)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    fake.base_url = f"http://127.0.0.1:{port}/api/v2"
    try:
        yield fake
    finally:
        await runner.cleanup()


async def test_lookup_picks_one_image_per_kind(sgdb: FakeSGDB) -> None:
    async with SteamGridDB(KEY, base_url=sgdb.base_url) as client:
        artwork = await client.lookup("Hollow Knight")
    assert artwork.to_wire() == {
        "grid": "https://cdn.example/grid.png",  # static before (mostly animated) WebP
        "banner": "https://cdn.example/banner.jpg",  # 920x430 preferred over 460x215
        "hero": "https://cdn.example/hero.png",
        "icon": "https://cdn.example/icon.png",  # .ico skipped: the Agent only takes PNG/JPEG/WebP
    }
    queries = dict(sgdb.seen)
    assert queries["/api/v2/grids/game/1234"]["dimensions"] in ("600x900", "920x430,460x215")
    assert "/api/v2/logos/game/1234" in queries


async def test_search_term_is_encoded(sgdb: FakeSGDB) -> None:
    sgdb.games["AC/DC: Live? #1"] = [{"id": 7}]
    async with SteamGridDB(KEY, base_url=sgdb.base_url) as client:
        assert await client.search("AC/DC: Live? #1") == 7


async def test_unknown_game(sgdb: FakeSGDB) -> None:
    async with SteamGridDB(KEY, base_url=sgdb.base_url) as client:
        artwork = await client.lookup("No Such Game")
    assert artwork.to_wire() == {}
    assert await find_artwork("No Such Game", KEY, base_url=sgdb.base_url) is None


async def test_find_artwork(sgdb: FakeSGDB) -> None:
    artwork = await find_artwork("Hollow Knight", KEY, base_url=sgdb.base_url)
    assert artwork is not None
    assert artwork.hero == "https://cdn.example/hero.png"


async def test_a_failing_kind_is_left_out(sgdb: FakeSGDB) -> None:
    sgdb.failing.add("heroes")
    async with SteamGridDB(KEY, base_url=sgdb.base_url) as client:
        artwork = await client.lookup("Hollow Knight")
    assert artwork.hero is None
    assert artwork.grid is not None


async def test_a_bad_key_is_an_error(sgdb: FakeSGDB) -> None:
    async with SteamGridDB("wrong", base_url=sgdb.base_url) as client:
        with pytest.raises(SteamGridDBError, match="refused the API key"):
            await client.lookup("Hollow Knight")


async def test_unreachable_service() -> None:
    async with SteamGridDB(KEY, base_url="http://127.0.0.1:9/api/v2") as client:
        with pytest.raises(SteamGridDBError, match="request failed"):
            await client.search("Hollow Knight")


def test_no_key_no_client() -> None:
    with pytest.raises(ValueError, match="API key"):
        SteamGridDB("")


def test_pick_image_prefers_sizes_in_order() -> None:
    items = [image("a", 460, 215), image("b", 920, 430)]
    assert pick_image(items, [(920, 430), (460, 215)]) == "b"
    assert pick_image(items, [(600, 900)]) is None
    assert pick_image([{"url": "x.ico", "mime": "image/x-icon"}]) is None
    assert pick_image([]) is None
    assert pick_image([image("anim", 1, 1, "image/webp"), image("still", 1, 1, "image/jpeg")]) == "still"
    assert pick_image([image("anim", 1, 1, "image/webp")]) == "anim"
