"""Artwork files in grid/: names per slot, sniffing, replacing, logo position, removal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capydeploy.protocol.messages import ArtworkKey
from capydeploy.steam.artwork import (
    LOGO_POSITION,
    ImageType,
    InvalidImageError,
    remove_artwork,
    sniff_image_type,
    write_artwork,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8
APP = 3672303389


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, ImageType.PNG),
        (JPEG, ImageType.JPEG),
        (WEBP, ImageType.WEBP),
        (b"GIF89a....", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"<html>", None),
        (b"", None),
    ],
)
def test_sniffing(data: bytes, expected: ImageType | None) -> None:
    assert sniff_image_type(data) == expected


@pytest.mark.parametrize(
    ("key", "data", "name"),
    [
        (ArtworkKey.GRID, PNG, f"{APP}p.png"),
        (ArtworkKey.GRID, JPEG, f"{APP}p.jpg"),
        (ArtworkKey.GRID, WEBP, f"{APP}p.png"),  # Steam reads only .png/.jpg; its browser sniffs WebP
        (ArtworkKey.BANNER, JPEG, f"{APP}.jpg"),
        (ArtworkKey.HERO, PNG, f"{APP}_hero.png"),
        (ArtworkKey.LOGO, JPEG, f"{APP}_logo.png"),  # always .png
        (ArtworkKey.ICON, JPEG, f"{APP}_icon.jpg"),
    ],
)
def test_file_names(tmp_path: Path, key: ArtworkKey, data: bytes, name: str) -> None:
    path = write_artwork(tmp_path / "grid", APP, key, data)
    assert path == (tmp_path / "grid" / name).absolute()
    assert path.read_bytes() == data


def test_the_other_extension_of_the_slot_is_removed(tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / f"{APP}p.jpg").write_bytes(JPEG)
    (grid / f"{APP}.png").write_bytes(PNG)  # the banner: another slot, must stay
    write_artwork(grid, APP, ArtworkKey.GRID, PNG)
    assert sorted(path.name for path in grid.iterdir()) == [f"{APP}.png", f"{APP}p.png"]


def test_logo_position_is_written_only_when_absent(tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    write_artwork(grid, APP, ArtworkKey.LOGO, PNG)
    position = grid / f"{APP}.json"
    assert json.loads(position.read_text()) == LOGO_POSITION
    users_choice = (
        '{"nVersion":1,"logoPosition":{"pinnedPosition":"UpperCenter","nWidthPct":40,"nHeightPct":30}}'
    )
    position.write_text(users_choice)
    write_artwork(grid, APP, ArtworkKey.LOGO, PNG)
    assert position.read_text() == users_choice


def test_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError):
        write_artwork(tmp_path / "grid", APP, ArtworkKey.HERO, b"<html>not found</html>")
    assert not (tmp_path / "grid").exists()


def test_remove_all_artwork_of_one_app(tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    for key in ArtworkKey:
        write_artwork(grid, APP, key, PNG)
    (grid / f"{APP}p.jpg").write_bytes(JPEG)  # left by another tool
    other = write_artwork(grid, 42, ArtworkKey.GRID, PNG)
    removed = remove_artwork(grid, APP)
    assert len(removed) == 7  # five slots, the stray .jpg, the logo position
    assert [path.name for path in grid.iterdir()] == [other.name]
    assert remove_artwork(grid, APP) == []
