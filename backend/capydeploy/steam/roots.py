"""Find the Steam installation folders ("roots") under a user's home."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# Relative to the home folder, in order of preference. The Deck's real root is the first; the
# `.steam` entries are usually symlinks to it, hence the deduplication by realpath.
ROOT_CANDIDATES: tuple[str, ...] = (
    ".local/share/Steam",
    ".steam/steam",
    ".steam/root",
    ".var/app/com.valvesoftware.Steam/.local/share/Steam",
)


def find_steam_roots(home: Path | None = None, explicit: Path | Iterable[Path] | None = None) -> list[Path]:
    """Existing Steam roots, each once (by realpath), best first.

    `explicit` (one root or several) overrides the search and is returned resolved, even if it
    does not exist yet, so that a misconfiguration surfaces as "no Steam user" rather than a
    silent fallback to another installation.
    """
    if explicit is not None:
        candidates = [explicit] if isinstance(explicit, Path | str) else list(explicit)
        return _dedup(Path(os.path.realpath(candidate)) for candidate in candidates)
    base = Path(home) if home is not None else Path.home()
    found = (Path(os.path.realpath(base / relative)) for relative in ROOT_CANDIDATES)
    return _dedup(root for root in found if root.is_dir())


def _dedup(roots: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    unique: list[Path] = []
    for root in roots:
        if root not in seen:
            seen.add(root)
            unique.append(root)
    return unique
