"""Find artwork URLs for a game on SteamGridDB (API v2) with the user's own API key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from .. import __version__
from ..protocol.messages import Artwork, ArtworkKey

log = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://www.steamgriddb.com/api/v2"
DEFAULT_TIMEOUT: Final = 30.0
# What the Agent accepts (it sniffs PNG, JPEG and WebP); SteamGridDB also serves .ico icons.
USABLE_MIMES: Final = frozenset({"image/png", "image/jpeg", "image/webp"})

# key → (endpoint kind, query, preferred sizes best first; empty = any size)
_QUERIES: Final[dict[ArtworkKey, tuple[str, dict[str, str], tuple[tuple[int, int], ...]]]] = {
    ArtworkKey.GRID: ("grids", {"dimensions": "600x900"}, ((600, 900),)),
    ArtworkKey.BANNER: ("grids", {"dimensions": "920x430,460x215"}, ((920, 430), (460, 215))),
    ArtworkKey.HERO: ("heroes", {}, ()),
    ArtworkKey.LOGO: ("logos", {}, ()),
    ArtworkKey.ICON: ("icons", {}, ()),
}


class SteamGridDBError(Exception):
    """The lookup as a whole failed (bad key, service down); one missing kind is not an error."""


def pick_image(items: Sequence[Mapping[str, Any]], sizes: Sequence[tuple[int, int]] = ()) -> str | None:
    """The best usable image URL: preferred `sizes` in order, static PNG/JPEG before WebP.

    SteamGridDB lists images best-scored first; its WebP images are mostly animated.
    """
    usable = [
        item
        for item in items
        if isinstance(item.get("url"), str)
        and item.get("url")
        and item.get("mime", "image/png") in USABLE_MIMES
    ]
    usable.sort(key=lambda item: item.get("mime") == "image/webp")  # stable: keeps SteamGridDB's order
    if sizes:
        for width, height in sizes:
            for item in usable:
                if item.get("width") == width and item.get("height") == height:
                    return str(item["url"])
        return None
    return str(usable[0]["url"]) if usable else None


class SteamGridDB:
    """A small SteamGridDB client; pass your own key (none is shipped), close it when done."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a SteamGridDB API key is required (from your SteamGridDB account)")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SteamGridDB:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._session_factory is not None:
                self._session = self._session_factory()
            else:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> list[Mapping[str, Any]]:
        headers = {"Authorization": f"Bearer {self._api_key}", "User-Agent": f"CapyDeploy/{__version__}"}
        url = f"{self.base_url}/{path}"
        try:
            async with self._client().get(url, params=dict(params or {}), headers=headers) as response:
                if response.status in (401, 403):
                    raise SteamGridDBError(f"SteamGridDB refused the API key (HTTP {response.status})")
                if response.status == 404:
                    return []
                if response.status != 200:
                    raise SteamGridDBError(f"SteamGridDB answered HTTP {response.status} for {path}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise SteamGridDBError(
                f"SteamGridDB request failed: {error.__class__.__name__} {error}"
            ) from error
        if not isinstance(body, dict) or not body.get("success", False):
            raise SteamGridDBError(f"SteamGridDB returned an unexpected answer for {path}")
        data = body.get("data")
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    async def search(self, name: str) -> int | None:
        """The id of the best-matching game, or None."""
        results = await self._get(f"search/autocomplete/{quote(name, safe='')}")
        for item in results:
            game_id = item.get("id")
            if isinstance(game_id, int) and not isinstance(game_id, bool):
                return game_id
        return None

    async def _kind(self, game_id: int, key: ArtworkKey) -> str | None:
        endpoint, params, sizes = _QUERIES[key]
        try:
            items = await self._get(f"{endpoint}/game/{game_id}", params)
        except SteamGridDBError as error:
            if "API key" in str(error):
                raise
            log.warning("no %s from SteamGridDB for game %s: %s", key.value, game_id, error)
            return None
        return pick_image(items, sizes)

    async def artwork_for_game(self, game_id: int) -> Artwork:
        keys = list(_QUERIES)
        urls = await asyncio.gather(*(self._kind(game_id, key) for key in keys))
        return Artwork(**{key.value: url for key, url in zip(keys, urls, strict=True) if url is not None})

    async def lookup(self, name: str) -> Artwork:
        """Artwork URLs for `name` (kinds SteamGridDB does not have are left out)."""
        game_id = await self.search(name)
        if game_id is None:
            return Artwork()
        return await self.artwork_for_game(game_id)


async def find_artwork(name: str, api_key: str, *, base_url: str = DEFAULT_BASE_URL) -> Artwork | None:
    """One-shot lookup for the Hub's `--artwork auto`: None when SteamGridDB knows no such game."""
    async with SteamGridDB(api_key, base_url=base_url) as client:
        game_id = await client.search(name)
        if game_id is None:
            return None
        return await client.artwork_for_game(game_id)
