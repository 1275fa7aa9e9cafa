"""A redeploy that changes nothing: the installed folder already is the new version.

When every listed file would be carried over from the installed version (incremental.plan_carry)
and the game folder holds nothing else, the usual install would stage a tree of hard links, swap
it for an identical one, then delete the old links: for a game of 20 000 files that is most of an
unchanged redeploy's time, and 40 000 directory updates on the device's storage
(docs/performance.md). Such an upload is completed in place instead: at completion the folder is
looked at again (every file still of the size and mtime it had, nothing added), the modes are set
as an install sets them, and the folder stays as it is. Should the look find a change, the upload
carries its files the usual way. These functions run in worker threads.
"""

from __future__ import annotations

import os
import stat
from array import array
from pathlib import Path

from ...protocol.listing import FileListing
from ...storage import fsync_directory
from .filesystem import DIRECTORY_MODE, FileWriter
from .install import listed_folders, settle_mode
from .manifest import MTIME_UNSEEN


def all_recorded(listing: FileListing, mtimes: array[int]) -> bool:
    """Whether the manifest records every listed file that has bytes with its path, size and hash
    (`mtimes`, see manifest.read_manifest_matches): a cheap first look, before the folder's."""
    return all(mtime != MTIME_UNSEEN for mtime, size in zip(mtimes, listing.sizes, strict=True) if size)


def installed_modes(game_dir: Path, listing: FileListing, mtimes: array[int]) -> array[int] | None:
    """If `game_dir` (a folder, not a symlink to one) holds the listed files and nothing else, the
    permission bits of each (by row); else None. Each must be a regular file of its listed size
    and, if it has any bytes, of its mtime in `mtimes` (its installed copy's, as the manifest
    recorded it); no other file, link or folder may be there."""
    try:
        if not stat.S_ISDIR(os.lstat(game_dir).st_mode):
            return None
    except OSError:
        return None
    paths, sizes = listing.paths, listing.sizes
    folders = listed_folders(paths)
    modes = array("H", bytes(2 * len(listing)))
    found = 0
    pending = [""]  # folders to read, relative to the game folder
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(os.path.join(game_dir, folder)) as entries:
                for entry in entries:
                    path = f"{folder}/{entry.name}" if folder else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if path not in folders:
                            return None
                        pending.append(path)
                        continue
                    index = paths.index_of(path)
                    if index is None:
                        return None
                    info = entry.stat(follow_symlinks=False)
                    size = sizes[index]
                    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
                        return None
                    if size and info.st_mtime_ns != mtimes[index]:
                        return None
                    modes[index] = stat.S_IMODE(info.st_mode)
                    found += 1
        except OSError:
            return None
    # Each path found is listed, and no two are the same: as many means every listed file is there.
    return modes if found == len(listing) else None


def settle_modes_in_place(
    game_dir: Path, listing: FileListing, modes: array[int], executable: str | None, writer: FileWriter
) -> None:
    """Set the listed files' (`modes`, from `installed_modes`) and their folders' modes as an
    install sets them: the executable may have changed. What changed is made durable, as an
    install's would be."""
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
