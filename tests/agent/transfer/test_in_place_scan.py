"""`look_at`: a game folder counts as the new version only if it holds the listed files, each
unchanged since the manifest recorded it, and besides them only what the game wrote there (no
file an earlier install put there). Property-based: random trees, each left alone or changed in
one way."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from array import array
from collections.abc import Iterator
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from capydeploy.agent.transfer.in_place import all_recorded, look_at, rows_unchanged_since
from capydeploy.agent.transfer.manifest import MTIME_UNSEEN
from capydeploy.protocol.listing import FileListing
from capydeploy.protocol.messages import UploadFile

NAMES = st.sampled_from(["a", "b", "c.pak", "Ü", "d e", "x" * 40])
PATHS = st.lists(NAMES, min_size=1, max_size=4).map("/".join)
# What the game writes into its folder leaves it the new version; anything else does not.
GAME_WRITES = ["none", "extra file", "extra folder", "extra symlink", "extra file in a new folder"]
CHANGES = [
    *GAME_WRITES,
    "stale file",
    "extra fifo",
    "file removed",
    "size changed",
    "mtime changed",
    "file made a symlink",
    "file made a folder",
    "file made a fifo",
]


STALE = "stale.pak"  # the name of a file the manifest records but the new version does not list


def recorded_by_a_manifest(paths: list[str]) -> set[str]:
    """What the manifest of the installed version records among `paths` (see manifest.recorded_among):
    here, every file named STALE, as if the earlier install had put it there."""
    return {path for path in paths if path.rpartition("/")[2] == STALE}


def _no_file_is_a_folder(paths: list[str]) -> bool:
    return not any(other.startswith(path + "/") for path in paths for other in paths)


GAMES = st.lists(st.tuples(PATHS, st.integers(0, 3)), min_size=1, max_size=12, unique_by=lambda item: item[0]).filter(
    lambda files: _no_file_is_a_folder([path for path, _ in files])
)


@contextlib.contextmanager
def _game_folder(files: list[tuple[str, int]]) -> Iterator[tuple[Path, FileListing, array[int]]]:
    """A game folder of `files` in a scratch folder, their listing, and the mtimes a manifest of
    them would record."""
    listing = FileListing.of([UploadFile.unchecked(path, size, None) for path, size in files])
    with tempfile.TemporaryDirectory() as scratch:
        game = Path(scratch) / "Game"
        yield game, listing, _build(game, files)


def _build(game: Path, files: list[tuple[str, int]]) -> array[int]:
    """Make the game folder; the mtimes a manifest would have recorded, by row."""
    game.mkdir()
    mtimes = array("q")
    for path, size in files:
        target = game / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"z" * size)
        mtimes.append(os.lstat(target).st_mtime_ns)
    return mtimes


def _change(game: Path, files: list[tuple[str, int]], change: str, pick: int) -> None:
    path, size = files[pick % len(files)]
    target = game / path
    if change == "extra file":
        (target.parent / "extra.bin").write_bytes(b"")
    elif change == "extra file in a new folder":
        (target.parent / "saves").mkdir()
        (target.parent / "saves" / "slot1.sav").write_bytes(b"progress")
    elif change == "stale file":
        (target.parent / STALE).write_bytes(b"old")
    elif change == "extra fifo":
        os.mkfifo(target.parent / "extra.fifo")
    elif change == "extra folder":
        (target.parent / "extra").mkdir()
    elif change == "extra symlink":
        (target.parent / "extra").symlink_to(target)
    elif change == "file removed":
        target.unlink()
    elif change == "size changed":
        target.write_bytes(b"z" * (size + 1))
    elif change == "mtime changed":
        assume(size > 0)  # an empty file has no bytes to change: its mtime does not matter
        info = os.lstat(target)
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    elif change == "file made a symlink":
        info = os.lstat(target)
        outside = game.parent / "outside"
        outside.write_bytes(b"z" * size)
        os.utime(outside, ns=(info.st_atime_ns, info.st_mtime_ns))
        target.unlink()
        target.symlink_to(outside)
    elif change == "file made a folder":
        target.unlink()
        target.mkdir()
    elif change == "file made a fifo":
        target.unlink()
        os.mkfifo(target)  # 0 bytes, like an empty file: only its type tells


@settings(max_examples=300, deadline=None)
@given(files=GAMES, change=st.sampled_from(CHANGES), pick=st.integers(0, 100))
def test_only_an_untouched_folder_is_the_new_version(files: list[tuple[str, int]], change: str, pick: int) -> None:
    with _game_folder(files) as (game, listing, mtimes):
        _change(game, files, change, pick)
        look = look_at(game, listing, mtimes, recorded_by_a_manifest)
        if change not in GAME_WRITES:
            assert look is None
            return
        assert look is not None
        infos = [os.lstat(game / path) for path, _ in files]
        assert list(look.modes) == [stat.S_IMODE(info.st_mode) for info in infos]
        assert list(look.inodes) == [info.st_ino for info in infos]


def test_a_symlinked_or_missing_game_folder_is_never_the_new_version(tmp_path: Path) -> None:
    listing = FileListing.of([UploadFile.unchecked("a.bin", 1, None)])
    real = tmp_path / "Real"
    mtimes = _build(real, [("a.bin", 1)])
    assert look_at(real, listing, mtimes, recorded_by_a_manifest) is not None
    (tmp_path / "Game").symlink_to(real, target_is_directory=True)
    assert look_at(tmp_path / "Game", listing, mtimes, recorded_by_a_manifest) is None
    assert look_at(tmp_path / "Missing", listing, mtimes, recorded_by_a_manifest) is None


@given(sizes=st.lists(st.integers(0, 3), min_size=1, max_size=20), data=st.data())
def test_all_recorded_means_every_file_with_bytes_is_in_the_manifest(sizes: list[int], data: st.DataObject) -> None:
    listing = FileListing.of([UploadFile.unchecked(f"f{row}", size, None) for row, size in enumerate(sizes)])
    unseen = data.draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    mtimes = array("q", [MTIME_UNSEEN if missing else 7 for missing in unseen])
    expected = not any(missing and size for missing, size in zip(unseen, sizes, strict=True))
    assert all_recorded(listing, mtimes) is expected


# A file replaced since a look, even with its size and mtime put back, is not the one the look
# saw; a file merely linked elsewhere (as when the version an install replaced is deleted) is.
LATER_CHANGES = ["none", "replaced, mtime put back", "hard-linked elsewhere"]


@settings(max_examples=100, deadline=None)
@given(files=GAMES, change=st.sampled_from(LATER_CHANGES), pick=st.integers(0, 100))
def test_a_later_look_notices_a_replaced_file(files: list[tuple[str, int]], change: str, pick: int) -> None:
    with _game_folder(files) as (game, listing, mtimes):
        first = look_at(game, listing, mtimes, recorded_by_a_manifest)
        assert first is not None
        row = pick % len(files)
        target = game / files[row][0]
        info = os.lstat(target)
        if change == "replaced, mtime put back":
            twin = game.parent / "twin"
            twin.write_bytes(b"y" * info.st_size)
            os.utime(twin, ns=(info.st_atime_ns, info.st_mtime_ns))
            os.replace(twin, target)
        elif change == "hard-linked elsewhere":
            os.link(target, game.parent / "elsewhere")
            os.unlink(game.parent / "elsewhere")
        again = look_at(game, listing, mtimes, recorded_by_a_manifest)
        assert again is not None  # the folder still holds the listed files, as a manifest would vouch
        unchanged = set(rows_unchanged_since(game, listing, first))
        with_bytes = {index for index, (_, size) in enumerate(files) if size}
        if change == "replaced, mtime put back":
            assert not again.same_files_as(first)
            assert unchanged == with_bytes - {row}
        else:
            assert again.same_files_as(first)
            assert unchanged == with_bytes


def test_a_folder_with_unlisted_files_and_no_manifest_to_tell_is_never_the_new_version(tmp_path: Path) -> None:
    listing = FileListing.of([UploadFile.unchecked("a.bin", 1, None)])
    game = tmp_path / "Game"
    mtimes = _build(game, [("a.bin", 1)])
    (game / "notes.txt").write_bytes(b"?")
    asked: list[list[str]] = []

    def no_manifest(paths: list[str]) -> set[str] | None:
        asked.append(paths)
        return None

    assert look_at(game, listing, mtimes, no_manifest) is None
    assert asked == [["notes.txt"]]
    assert look_at(game, listing, mtimes, recorded_by_a_manifest) is not None
