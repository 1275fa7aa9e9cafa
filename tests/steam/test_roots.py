"""Finding Steam roots under a home folder."""

from __future__ import annotations

from pathlib import Path

from capydeploy.steam.roots import find_steam_roots


def test_deck_layout_is_found_once(tmp_path: Path) -> None:
    real = tmp_path / ".local/share/Steam"
    real.mkdir(parents=True)
    (tmp_path / ".steam").mkdir()
    (tmp_path / ".steam/steam").symlink_to(real)
    (tmp_path / ".steam/root").symlink_to(real)
    assert find_steam_roots(tmp_path) == [real.resolve()]


def test_flatpak_root_is_found_after_the_native_one(tmp_path: Path) -> None:
    native = tmp_path / ".local/share/Steam"
    flatpak = tmp_path / ".var/app/com.valvesoftware.Steam/.local/share/Steam"
    native.mkdir(parents=True)
    flatpak.mkdir(parents=True)
    assert find_steam_roots(tmp_path) == [native.resolve(), flatpak.resolve()]


def test_only_a_symlinked_root(tmp_path: Path) -> None:
    elsewhere = tmp_path / "disk/SteamLibrary"
    elsewhere.mkdir(parents=True)
    (tmp_path / ".steam").mkdir()
    (tmp_path / ".steam/root").symlink_to(elsewhere)
    assert find_steam_roots(tmp_path) == [elsewhere.resolve()]


def test_dangling_symlinks_and_no_steam(tmp_path: Path) -> None:
    (tmp_path / ".steam").mkdir()
    (tmp_path / ".steam/steam").symlink_to(tmp_path / "gone")
    assert find_steam_roots(tmp_path) == []


def test_explicit_root_overrides_the_search(tmp_path: Path) -> None:
    (tmp_path / ".local/share/Steam").mkdir(parents=True)
    explicit = tmp_path / "custom"
    assert find_steam_roots(tmp_path, explicit) == [explicit.resolve()]
    assert find_steam_roots(tmp_path, [explicit, explicit]) == [explicit.resolve()]
