"""`keep_what_the_game_wrote` over random trees: after it, the staged tree holds the new version's
files and every file of the old folder that neither an earlier install put there, unchanged since
(the manifest), nor a path of the new version claims; nothing else. And what it adds is made
durable."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capydeploy.agent.transfer import OsFileWriter, keep
from capydeploy.agent.transfer.keep import keep_what_the_game_wrote
from capydeploy.agent.transfer.manifest import ManifestEntry, manifest_json, manifest_path
from capydeploy.agent.transfer.staging import StagingLayout, new_upload_id
from capydeploy.protocol.listing import FileListing
from capydeploy.protocol.messages import UploadFile
from capydeploy.storage import atomic_write_json

NAMES = st.sampled_from(["a", "b", "c.sav", "Ü", "d e"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
FILE_SETS = st.lists(PATHS, max_size=8, unique=True)


def claims(path: str, paths: set[str]) -> bool:
    """Whether `paths` holds `path`, a folder of it, or a file inside it: a path both cannot hold."""
    return any(other == path or other.startswith(path + "/") or path.startswith(other + "/") for other in paths)


def consistent(paths: list[str]) -> set[str]:
    """The paths, minus any that would need a file and a folder of the same name."""
    kept: set[str] = set()
    for path in paths:
        if not claims(path, kept):
            kept.add(path)
    return kept


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        Path(dirpath, name).relative_to(folder).as_posix(): Path(dirpath, name).read_bytes()
        for dirpath, _, names in os.walk(folder)
        for name in names
    }


def build(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)


@settings(max_examples=200, deadline=None)
@given(old=FILE_SETS, written=FILE_SETS, new=FILE_SETS, rewrites=st.integers(0, 2**8), has_manifest=st.booleans())
def test_the_tree_holds_the_new_files_and_the_game_folder_s_own(
    old: list[str], written: list[str], new: list[str], rewrites: int, has_manifest: bool
) -> None:
    installed = consistent(old)
    game_wrote = {path for path in consistent(written) if not claims(path, installed)}
    new_files = consistent(new)
    # Some of the files an install put there the game rewrote since (a default config made the
    # player's): those are the game's now.
    rewritten = {path for index, path in enumerate(sorted(installed)) if rewrites >> index & 1}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "Games"
        game = root / "Game"
        build(game, {path: b"old" for path in installed} | {path: b"game" for path in game_wrote})
        if has_manifest:
            entries = [ManifestEntry(path, 3, None, os.lstat(game / path).st_mtime_ns) for path in sorted(installed)]
            manifest_path(root, "Game").parent.mkdir(parents=True)
            atomic_write_json(manifest_path(root, "Game"), manifest_json("Game", 0.0, entries), compact=True)
        build(game, {path: b"player's" for path in rewritten})
        layout = StagingLayout(root, new_upload_id())
        build(layout.tree, {path: b"new" for path in new_files})
        listing = FileListing.of([UploadFile.unchecked(path, 3, None) for path in sorted(new_files)])

        kept = keep_what_the_game_wrote(layout, "Game", game, listing, OsFileWriter())

        ours = installed - rewritten if has_manifest else set()
        expected_kept = {path for path in (game_wrote | installed) - ours if not claims(path, new_files)}
        assert set(kept.files) == expected_kept
        assert files_under(layout.tree) == {path: b"new" for path in new_files} | {
            path: files_under(game)[path] for path in expected_kept
        }
        for path in expected_kept:  # linked: the same file, not a copy
            assert os.lstat(layout.tree / path).st_ino == os.lstat(game / path).st_ino


def test_what_is_added_is_durable_deepest_folder_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    game = tmp_path / "Games" / "Game"
    build(game, {"data/level.pak": b"old", "saves/deep/auto.sav": b"game", "data/settings.ini": b"game"})
    layout = StagingLayout(tmp_path / "Games", new_upload_id())
    build(layout.tree, {"data/level.pak": b"new"})
    synced: list[str] = []
    monkeypatch.setattr(keep, "fsync_directory", lambda folder: synced.append(Path(folder).as_posix()))
    listing = FileListing.of([UploadFile.unchecked("data/level.pak", 3, None)])
    keep_what_the_game_wrote(layout, "Game", game, listing, OsFileWriter())
    tree = layout.tree.as_posix()
    assert sorted(synced) == sorted([tree, f"{tree}/data", f"{tree}/saves", f"{tree}/saves/deep"])
    assert synced.index(f"{tree}/saves/deep") < synced.index(f"{tree}/saves") < synced.index(tree)


def test_catching_up_never_replaces_what_the_new_version_holds(tmp_path: Path) -> None:
    """After the swap: a file the game wrote in the old folder meanwhile whose name the new folder
    already holds (on a case-insensitive filesystem "Save.dat" is the new version's "save.dat")
    stays out; a new one is linked in; a kept file saved over is replaced; one deleted is deleted."""
    previous, target = tmp_path / "previous", tmp_path / "Game"
    build(previous, {"slot1.sav": b"kept", "gone.sav": b"kept, then deleted by the game"})
    build(target, {"save.dat": b"the new version's", "Save.dat": b"the new version's"})
    links = {}
    for name in ("slot1.sav", "gone.sav"):  # what the keep step did
        os.link(previous / name, target / name)
        made = os.lstat(target / name)
        links[name] = (made.st_ino, made.st_ino, made.st_mtime_ns)
    build(previous, {"Save.dat": b"the game's", "slot2.sav": b"new"})  # meanwhile, in the old folder
    (previous / "slot1.tmp").write_bytes(b"saved over")
    os.replace(previous / "slot1.tmp", previous / "slot1.sav")
    (previous / "gone.sav").unlink()
    listing = FileListing.of([UploadFile.unchecked("save.dat", 17, None)])
    keep.catch_up_after_swap(previous, target, listing, keep.Kept(links=links), "Game")
    assert files_under(target) == {
        "save.dat": b"the new version's",
        "Save.dat": b"the new version's",
        "slot1.sav": b"saved over",
        "slot2.sav": b"new",
    }


def test_a_kept_file_the_game_made_a_folder_meanwhile_is_gone_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "profile").mkdir()  # was a file when the folder was looked at
    (tmp_path / "tree").mkdir()
    assert keep._link_one(os.fspath(tmp_path / "profile"), os.fspath(tmp_path / "tree" / "profile")) == "gone"
    assert not (tmp_path / "tree" / "profile").exists()
