"""The artwork options shared by `deploy` and `artwork`: explicit URLs, or SteamGridDB with --artwork auto."""

from __future__ import annotations

import argparse
import os

from ..protocol import messages as m

ARTWORK_KINDS = ("grid", "banner", "hero", "logo", "icon")
SGDB_KEY_ENV = "STEAMGRIDDB_API_KEY"


def add_artwork_arguments(parser: argparse.ArgumentParser, auto: bool) -> None:
    for kind in ARTWORK_KINDS:
        parser.add_argument(f"--{kind}", default=None, metavar="URL", help=f"{kind} image URL")
    if auto:
        parser.add_argument("--artwork", choices=["auto"], default=None,
                            help="look the game up on SteamGridDB and pick its artwork")
        parser.add_argument("--sgdb-key", default=None, help=f"SteamGridDB API key (or ${SGDB_KEY_ENV})")


async def artwork_from_args(args: argparse.Namespace, game_name: str) -> m.Artwork | None:
    """Explicit URLs win; --artwork auto fills the kinds not given."""
    given = {kind: getattr(args, kind) for kind in ARTWORK_KINDS if getattr(args, kind, None)}
    if getattr(args, "artwork", None) == "auto":
        key = args.sgdb_key or os.environ.get(SGDB_KEY_ENV)
        if not key:
            raise ValueError(f"--artwork auto needs a SteamGridDB API key: --sgdb-key or ${SGDB_KEY_ENV}")
        from .steamgriddb import find_artwork  # noqa: PLC0415 - only needed with --artwork auto

        found = await find_artwork(game_name, key)
        for kind in ARTWORK_KINDS:
            value = getattr(found, kind, None) if found is not None else None
            if value and kind not in given:
                given[kind] = value
    return m.Artwork(**given) if given else None
