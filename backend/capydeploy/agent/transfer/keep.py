"""What the game wrote into its own folder (saves, settings, logs) survives a redeploy.

An install swaps a new folder in for the old one, so anything not copied into the staged tree
before the swap is gone with the old version. The listed files are the new version. Of the rest,
what the installed manifest records was put there by an earlier install: a file the new version
no longer has, removed as any update removes it. Anything else was not sent by CapyDeploy: the
game (or the user) made it. It is hard-linked into the staged tree just before the swap (no data
moves; a copy where links are impossible), so the new version holds it and the old version stays
untouched until the swap. Without a manifest (a folder CapyDeploy did not install, or whose record
was lost) nothing is known to be ours: every unlisted entry is kept, as a copy over a folder keeps
what the copy does not name.

The new version always wins a path both claim: a listed file replaces the game's file of that
path, and a listed file or folder replaces a game's entry of the other kind (reported in the log).

What the staged tree was given is written down first (`kept.json` in the staging folder): a later
attempt to complete the same upload takes it out again before keeping what is there by then, so a
save the game deleted in between does not come back. These functions run in worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ...protocol.listing import FileListing
from ...storage import atomic_write_json, fsync_directory, read_json
from .filesystem import FileWriter
from .install import listed_folders
from .manifest import recorded_among
from .staging import StagingLayout

log = logging.getLogger(__name__)

# Errors after which a copy is worth trying instead of a hard link (as incremental.py carries).
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES})
# Past this many folders to make durable, one syncfs(2) replaces an fsync each.
_SYNCFS_FROM_FOLDERS = 16


@dataclass(slots=True)
class Unlisted:
    """The entries of an installed game folder that the new version does not list."""

    files: list[str] = field(default_factory=list)  # regular files and symlinks, relative paths
    empty_folders: list[str] = field(default_factory=list)  # folders with nothing in them
    overruled: list[str] = field(default_factory=list)  # entries a listed path of the other kind replaces


@dataclass(frozen=True, slots=True)
class Kept:
    """What an install carried over from the game folder besides the listed files."""

    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()  # folders made for them, or kept empty, outside the listed ones

    def __bool__(self) -> bool:
        return bool(self.files or self.folders)


def unlisted_entries(game_dir: Path, listing: FileListing) -> Unlisted:
    """Walk `game_dir` (never through a symlink) for what the listing does not name. A game
    folder that is a symlink or not a folder has nothing of its own to keep: the swap moves only
    the link aside, and what it points at stays where it is."""
    found = Unlisted()
    try:
        if not stat.S_ISDIR(os.lstat(game_dir).st_mode):
            return found
    except FileNotFoundError:
        return found
    folders = listed_folders(listing.paths)
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(os.path.join(game_dir, folder)) as scan:
            entries = list(scan)
        if not entries and folder and folder not in folders:
            found.empty_folders.append(folder)
        for entry in entries:
            path = f"{folder}/{entry.name}" if folder else entry.name
            listed = listing.index_of(path) is not None
            if entry.is_dir(follow_symlinks=False):
                if listed:
                    found.overruled.append(path + "/")
                else:
                    pending.append(path)
            elif listed:
                continue  # the new version's file replaces it, as any update does
            elif path in folders:
                found.overruled.append(path)
            elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
                found.files.append(path)
            # Sockets, FIFOs and devices are not a game's data: left with the old version.
    return found


def keep_what_the_game_wrote(
    layout: StagingLayout, game_name: str, game_dir: Path, listing: FileListing, writer: FileWriter
) -> Kept:
    """Carry the game folder's own entries (see the module's text) into the staged tree and make
    them durable there. Raises OSError, having taken back what it added."""
    take_back_kept(layout)
    unlisted = unlisted_entries(game_dir, listing)
    for path in unlisted.overruled:
        log.warning("%s: %s in the installed folder is replaced by the new version", game_name, path)
    if not unlisted.files and not unlisted.empty_folders:
        return Kept()
    ours = recorded_among(layout.root, game_name, unlisted.files) or set()
    kept_files = [path for path in unlisted.files if path not in ours]
    folders = listed_folders(listing.paths)
    made_folders = sorted(
        (listed_folders([*kept_files, *(folder + "/" for folder in unlisted.empty_folders)]) - folders),
        key=lambda path: path.count("/"),
    )
    kept = Kept(tuple(kept_files), tuple(made_folders))
    if not kept:
        return kept
    atomic_write_json(layout.kept_file, {"files": list(kept.files), "folders": list(kept.folders)})
    try:
        _link_into(game_dir, layout.tree, kept)
        _make_durable(layout.tree, kept, writer)
    except BaseException:
        with contextlib.suppress(OSError):
            take_back_kept(layout)
        raise
    return kept


def take_back_kept(layout: StagingLayout) -> None:
    """Remove from the staged tree what an earlier attempt kept there (`kept.json`)."""
    record = read_json(layout.kept_file, None)
    if not isinstance(record, dict):
        return
    tree = layout.tree
    for path in _strings(record.get("files")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(tree, path))
    for folder in sorted(_strings(record.get("folders")), key=lambda path: path.count("/"), reverse=True):
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(os.path.join(tree, folder))
    layout.kept_file.unlink()


def _strings(value: object) -> list[str]:
    # Only names the record's own upload wrote; never a way out of the tree.
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str) and item and ".." not in item.split("/")]


def _link_into(game_dir: Path, tree: Path, kept: Kept) -> None:
    for folder in kept.folders:
        destination = os.path.join(tree, folder)
        with contextlib.suppress(FileExistsError):
            os.mkdir(destination)
        with contextlib.suppress(FileNotFoundError):  # a folder the game removed meanwhile
            os.chmod(destination, stat.S_IMODE(os.lstat(os.path.join(game_dir, folder)).st_mode))
    for path in kept.files:
        _link_one(os.path.join(game_dir, path), os.path.join(tree, path))


def _link_one(source: str, destination: str) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except FileNotFoundError:
        if os.path.lexists(destination):
            raise
        return  # the game deleted it meanwhile: nothing to keep
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        shutil.copy2(source, destination, follow_symlinks=False)


def _make_durable(tree: Path, kept: Kept, writer: FileWriter) -> None:
    """The new directory entries are durable before the swap, as the listed files' are."""
    touched = {""} | {path.rpartition("/")[0] for path in (*kept.files, *kept.folders)}
    if len(touched) > _SYNCFS_FROM_FOLDERS and writer.sync_filesystem(tree):
        return
    for folder in sorted(touched, key=lambda path: path.count("/") if path else -1, reverse=True):
        fsync_directory(tree / folder if folder else tree)
