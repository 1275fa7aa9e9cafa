"""A redeploy that changes nothing: the installed folder already is the new version.

When every listed file would be carried over from the installed version (incremental.plan_carry)
and the game folder holds nothing else but what the game wrote there (which any install keeps,
keep.py), the usual install would stage a tree of hard links, swap it for an identical one, then
delete the old links: for a game of 20 000 files that is most of an unchanged redeploy's time,
and 40 000 directory updates on the device's storage (docs/performance.md). Such an upload is
completed in place instead.

At `init_upload` the folder is looked at (`look_at`): each file must have the size and mtime the
manifest recorded, and its inode is noted. When the Hub comes back (a resuming `init_upload`,
then `complete_upload`) it is looked at again: a file edited since has another mtime, one
replaced since (even with its size and mtime put back) another inode. These are the usual
path's guarantees: its hard links keep the inodes seen at `init_upload`, and completion compares
their size and mtime. (Not the ctime: deleting the version a previous install replaced changes
the link count, so the ctime, of every file that install carried.) If nothing changed, the modes
are set as an install sets them and the folder stays as it is (its manifest too: it describes
the same files). If anything changed, the upload becomes a usual one: the files unchanged since
the first look are carried, the others must be sent. These functions run in worker threads.
"""

from __future__ import annotations

import os
import stat
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...protocol.listing import FileListing
from ...storage import fsync_directory
from .filesystem import DIRECTORY_MODE, FileWriter
from .incremental import CarryPlan, plan_carry
from .install import listed_folders, settle_mode
from .manifest import MTIME_UNSEEN


@dataclass(frozen=True, slots=True)
class FolderLook:
    """What a look at the game folder saw of each listed file, by row (columns, not an object per
    file: 18 bytes a file)."""

    mtimes: array[int]  # as the manifest recorded them (see manifest.read_manifest_matches)
    modes: array[int]  # permission bits
    inodes: array[int]

    def same_files_as(self, earlier: FolderLook) -> bool:
        """Whether every file is the one the earlier look saw (both looks found the recorded
        size and mtime of each)."""
        return self.inodes == earlier.inodes


def all_recorded(listing: FileListing, mtimes: array[int]) -> bool:
    """Whether the manifest records every listed file that has bytes with its path, size and hash
    (`mtimes`, see manifest.read_manifest_matches): a cheap first look, before the folder's."""
    return all(mtime != MTIME_UNSEEN for mtime, size in zip(mtimes, listing.sizes, strict=True) if size)


def look_at(
    game_dir: Path, listing: FileListing, mtimes: array[int], ours: Callable[[list[str]], set[str] | None]
) -> FolderLook | None:
    """If `game_dir` (a folder, not a symlink to one) holds the listed files and, besides them,
    only what the game wrote there, what it holds; else None. Each listed file must be a regular
    file of its listed size and, if it has any bytes, of its mtime in `mtimes` (its installed
    copy's, as the manifest recorded it). Any other file or symlink must be the game's, not one an
    earlier install put there unchanged (`ours` tells which of some paths are; None: no manifest
    to tell): such a file, which the new version no longer lists, must go, so the folder cannot
    stay. An install keeps the game's own entries (keep.py), so leaving them in place is what it
    would do; a listed path of another kind, a FIFO, socket or device rules the folder out too."""
    try:
        if not stat.S_ISDIR(os.lstat(game_dir).st_mode):
            return None
    except OSError:
        return None
    paths, sizes = listing.paths, listing.sizes
    count = len(listing)
    look = FolderLook(mtimes, array("H", bytes(2 * count)), array("Q", bytes(8 * count)))
    found = 0
    unlisted: list[str] = []
    pending = [""]  # folders to read, relative to the game folder
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(os.path.join(game_dir, folder)) as entries:
                for entry in entries:
                    path = f"{folder}/{entry.name}" if folder else entry.name
                    index = paths.index_of(path)
                    if entry.is_dir(follow_symlinks=False):
                        if index is not None:
                            return None
                        pending.append(path)
                        continue
                    if index is None:
                        if not (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
                            return None
                        unlisted.append(path)
                        continue
                    info = entry.stat(follow_symlinks=False)
                    size = sizes[index]
                    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
                        return None
                    if size and info.st_mtime_ns != mtimes[index]:
                        return None
                    look.modes[index] = stat.S_IMODE(info.st_mode)
                    look.inodes[index] = info.st_ino
                    found += 1
        except OSError:
            return None
    # Each path found is listed, and no two are the same: as many means every listed file is there.
    if found != count:
        return None
    if unlisted and ours(unlisted) != set():
        return None  # an earlier install's file the new version drops (or no manifest to tell)
    return look


def rows_unchanged_since(game_dir: Path, listing: FileListing, look: FolderLook) -> Iterator[int]:
    """The rows with bytes whose installed file is the one `look` saw (same inode): those an upload
    that leaves its place may still carry, if their size and mtime are still the recorded ones
    (`carry_plan_since`)."""
    for index, (path, size) in enumerate(zip(listing.paths, listing.sizes, strict=True)):
        if not size:
            continue
        try:
            info = os.lstat(os.path.join(game_dir, path))
        except OSError:
            continue
        if info.st_ino == look.inodes[index]:
            yield index


def settle_modes_in_place(game_dir: Path, listing: FileListing, modes: array[int], executable: str | None, writer: FileWriter) -> None:
    """Set the listed files' (`modes`, from a look) and their folders' modes as an install sets
    them: the executable may have changed. What changed is made durable, as an install's would
    be."""
    for path, size, mode in zip(listing.paths, listing.sizes, modes, strict=True):
        file_path = os.path.join(game_dir, path)
        if settle_mode(file_path, mode, size, path == executable, writer):
            handle = writer.open(Path(file_path))
            try:
                writer.fsync(handle)
            finally:
                writer.close(handle)
    for folder in [game_dir, *(game_dir / relative for relative in listed_folders(listing.paths))]:
        if stat.S_IMODE(os.lstat(folder).st_mode) != DIRECTORY_MODE:
            os.chmod(folder, DIRECTORY_MODE)
            fsync_directory(folder)


def carry_plan_since(game_dir: Path, listing: FileListing, look: FolderLook) -> CarryPlan:
    """For an upload that leaves its place: the files it may still carry, those unchanged since
    `look` (a file replaced since must be sent, even if its size and mtime were put back)."""
    return plan_carry(rows_unchanged_since(game_dir, listing, look), listing, look.mtimes, game_dir)
