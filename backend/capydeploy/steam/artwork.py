"""Custom artwork files in `userdata/<acct>/config/grid/`: names per slot, image sniffing, removal."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from ..protocol.messages import ArtworkKey
from ..storage import atomic_write_bytes


class ImageType(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"


class InvalidImageError(ValueError):
    """Bytes that are not a PNG, JPEG or WebP image."""


@dataclass(frozen=True)
class ArtworkSlot:
    """Where one artwork key lives: `{appid}{suffix}.{ext}`."""

    suffix: str
    # Steam only looks for `{id}_logo.png`, whatever the bytes are.
    fixed_extension: str | None = None


SLOTS: Final[dict[ArtworkKey, ArtworkSlot]] = {
    ArtworkKey.GRID: ArtworkSlot("p"),
    ArtworkKey.BANNER: ArtworkSlot(""),
    ArtworkKey.HERO: ArtworkSlot("_hero"),
    ArtworkKey.LOGO: ArtworkSlot("_logo", fixed_extension="png"),
    ArtworkKey.ICON: ArtworkSlot("_icon"),
}

# `SteamClient.Apps.SetCustomArtworkForApp` asset types; the icon has none (it is a shortcut field).
STEAM_CLIENT_ASSET_TYPES: Final[dict[ArtworkKey, int]] = {
    ArtworkKey.GRID: 0,
    ArtworkKey.HERO: 1,
    ArtworkKey.LOGO: 2,
    ArtworkKey.BANNER: 3,
}

# Every extension a slot may have been written with, by us or by other tools.
_KNOWN_EXTENSIONS: Final = ("png", "jpg", "jpeg", "webp")

LOGO_POSITION: Final = {
    "nVersion": 1,
    "logoPosition": {"pinnedPosition": "BottomLeft", "nWidthPct": 50, "nHeightPct": 50},
}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def sniff_image_type(data: bytes) -> ImageType | None:
    """The image type from the first bytes, or None when it is none of the three Steam shows."""
    if data.startswith(_PNG_MAGIC):
        return ImageType.PNG
    if data.startswith(_JPEG_MAGIC):
        return ImageType.JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageType.WEBP
    return None


def file_extension(image_type: ImageType) -> str:
    """Steam reads only .png and .jpg from grid/; WebP goes under .png and its browser sniffs it."""
    return "jpg" if image_type is ImageType.JPEG else "png"


def client_format(image_type: ImageType) -> str:
    """The format argument of `SetCustomArtworkForApp` ("png" or "jpg")."""
    return file_extension(image_type)


def artwork_path(grid_dir: Path, app_id: int, key: ArtworkKey, image_type: ImageType) -> Path:
    slot = SLOTS[key]
    extension = slot.fixed_extension or file_extension(image_type)
    return grid_dir / f"{app_id}{slot.suffix}.{extension}"


def logo_position_path(grid_dir: Path, app_id: int) -> Path:
    return grid_dir / f"{app_id}.json"


def write_artwork(grid_dir: Path, app_id: int, key: ArtworkKey, data: bytes) -> Path:
    """Write one slot's image (replacing its other-extension file) and return its absolute path."""
    image_type = sniff_image_type(data)
    if image_type is None:
        raise InvalidImageError("not a PNG, JPEG or WebP image")
    target = artwork_path(grid_dir.absolute(), app_id, key, image_type)
    # Steam would keep showing a stale .jpg next to a new .png (or the reverse).
    for other in _slot_files(target.parent, app_id, key):
        if other != target:
            other.unlink(missing_ok=True)
    atomic_write_bytes(target, data)
    if key is ArtworkKey.LOGO:
        position = logo_position_path(target.parent, app_id)
        # The file holds the user's own logo adjustment once it exists.
        if not position.exists():
            atomic_write_bytes(position, json.dumps(LOGO_POSITION).encode("utf-8"))
    return target


def remove_artwork(grid_dir: Path, app_id: int) -> list[Path]:
    """Delete every artwork file of `app_id` (all slots, all extensions, the logo position)."""
    removed: list[Path] = []
    candidates = [path for key in SLOTS for path in _slot_files(grid_dir, app_id, key)]
    candidates.append(logo_position_path(grid_dir, app_id))
    for path in candidates:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _slot_files(grid_dir: Path, app_id: int, key: ArtworkKey) -> list[Path]:
    suffix = SLOTS[key].suffix
    return [grid_dir / f"{app_id}{suffix}.{extension}" for extension in _KNOWN_EXTENSIONS]
