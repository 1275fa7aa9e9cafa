"""Make a finished staged tree durable and swap it into place, and remove installed games.

The swap is two renames on one filesystem: the installed folder moves into the staging folder
(`previous/`), then `tree/` moves to `<installRoot>/<gameName>`. If the second rename fails the first
is undone. If the Agent dies between the two, `recover_swap` finds `previous/` beside `tree/` on the
next start and puts the old version back. The old version is deleted only once the new one is in
place. `recover_install` also settles the manifests the install had moved (manifest.py). These
functions run in worker threads.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from array import array
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Protocol

from ...storage import fsync_directory
from .filesystem import DIRECTORY_MODE, EXECUTABLE_MODE, STAGED_FILE_MODE, BytesLike, FileWriter, remove_path
from .manifest import MTIME_UNSEEN, settle_manifests
from .staging import StagingLayout, new_upload_id, trash_dir

log = logging.getLogger(__name__)

# Files that start like a program are made executable too: Linux games often ship a launcher
# script that runs a second binary, and the protocol carries no file modes.
_PROGRAM_MAGIC = (b"\x7fELF", b"#!")
# Past this many written files, one syncfs(2) replaces an fsync per file (see finalize_tree).
SYNCFS_FROM_FILES = 256


class TreeFiles(Protocol):
    """The staged files as completion sees them (a `FileTable`: no copy of the list is made)."""

    @property
    def paths(self) -> Iterable[str]: ...
    def written_count(self) -> int: ...  # files not hard-linked from the installed version
    # (path, size, sealed, program) of each file: `sealed`, hard-linked from the installed version
    # (its data is already durable); `program`, its head marks a program (None: not known, read it).
    def tree_rows(self) -> Iterable[tuple[str, int, bool, bool | None]]: ...


def looks_like_program(head: BytesLike) -> bool:
    """Whether a file starting with these bytes is a program (ELF or a `#!` script): made 0755."""
    return bytes(head[:4]).startswith(_PROGRAM_MAGIC)


def finalize_tree(tree: Path, files: TreeFiles, executable: str | None, writer: FileWriter) -> array[int]:
    """Make every file and folder of the staged tree durable and set sane modes.

    Returns each file's mtime_ns where it was seen on the way (the manifest records them; nothing
    here changes an mtime once seen), `MTIME_UNSEEN` where it was not. An array, not a list of
    ints: 8 bytes a file instead of 40, for up to 100 000 files at the Agent's peak.

    Each fsync of a file costs a journal commit (0.3 ms and more here), which adds up to seconds
    for games of thousands of small files; past `SYNCFS_FROM_FILES` written files, one syncfs(2) of
    the filesystem makes them all durable at once (the Agent runs on Linux; elsewhere, or if the
    writer cannot, every file is fsynced as for small games).
    """
    folders = [tree, *(tree / folder for folder in listed_folders(files.paths))]
    whole_filesystem = files.written_count() > SYNCFS_FROM_FILES
    mtimes = array(
        "q",
        (_finalize_file(tree, row, executable, writer, fsync=not whole_filesystem) for row in files.tree_rows()),
    )
    if whole_filesystem and not writer.sync_filesystem(tree):
        for path, _, sealed, _ in files.tree_rows():
            if not sealed:
                handle = writer.open(tree / path)
                try:
                    writer.fsync(handle)
                finally:
                    writer.close(handle)
    # Deepest first, so each folder's entries are durable before its parent's.
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        os.chmod(folder, DIRECTORY_MODE)
        fsync_directory(folder)
    return mtimes


def _finalize_file(
    tree: Path, row: tuple[str, int, bool, bool | None], executable: str | None, writer: FileWriter, *, fsync: bool
) -> int:
    """Size and mode right (and the data durable when `fsync`); the mtime_ns, or `MTIME_UNSEEN`."""
    relative_path, size, sealed, program_head = row
    path = os.path.join(tree, relative_path)  # a str: a Path would intern the file's name
    is_executable = relative_path == executable
    if sealed:
        info = os.lstat(path)
        settle_mode(path, stat.S_IMODE(info.st_mode), info.st_size, is_executable, writer)
        return info.st_mtime_ns  # a chmod keeps the mtime
    if not fsync and program_head is not None:
        # The usual case for a game of many files (one syncfs makes them durable): one lstat
        # tells the size and mode, no open and read back.
        info = os.lstat(path)
        if info.st_size == size:
            mode = EXECUTABLE_MODE if is_executable or program_head else STAGED_FILE_MODE
            if stat.S_IMODE(info.st_mode) != mode:
                os.chmod(path, mode)
            return info.st_mtime_ns
    handle = writer.open(Path(path))
    try:
        # Every byte is present, so the file already has its size; this only guards against a
        # stray longer file left from an earlier attempt.
        if os.fstat(handle).st_size != size:
            writer.truncate(handle, size)
        if fsync:
            writer.fsync(handle)
        head = writer.pread(handle, 4, 0) if size else b""
    finally:
        writer.close(handle)
    program = is_executable or looks_like_program(head)
    os.chmod(path, EXECUTABLE_MODE if program else STAGED_FILE_MODE)
    return MTIME_UNSEEN


def listed_folders(paths: Iterable[str]) -> set[str]:
    """Every folder the listed paths name, relative ("a" and "a/b" for "a/b/c.pak")."""
    # From the path strings: a Path per file would also intern every file name (pathlib does).
    folders: set[str] = set()
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent and parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    return folders


def settle_mode(path: str, mode: int, size: int, is_executable: bool, writer: FileWriter) -> bool:
    """Give a file carried from the installed version (`mode`, its permission bits now) the mode
    the rule gives it now; True if the mode changed. Only the executable setting can change it:
    the file's first bytes tell whether a 0755 file is a program or was the old executable."""
    if _mode_still_right(mode, is_executable):
        return False
    head = b""
    if not is_executable and size:
        handle = writer.open(Path(path))
        try:
            head = writer.pread(handle, 4, 0)
        finally:
            writer.close(handle)
    new_mode = EXECUTABLE_MODE if is_executable or looks_like_program(head) else STAGED_FILE_MODE
    if new_mode == mode:
        return False
    os.chmod(path, new_mode)
    return True


def _mode_still_right(mode: int, is_executable: bool) -> bool:
    """For a file shared with the installed version: its mode was set by the same rule from the
    same bytes, so it needs no look at its head unless the executable setting changed it."""
    if is_executable:
        return mode == EXECUTABLE_MODE
    # 0644 means "no program header" (same bytes now); 0755 may be a program or the old executable.
    return mode == STAGED_FILE_MODE


def swap_into_place(layout: StagingLayout, target: Path) -> None:
    """Rename the old version aside and the staged tree into place; undo the first rename on failure."""
    had_old = os.path.lexists(target)
    if had_old:
        os.rename(target, layout.previous)
    try:
        os.rename(layout.tree, target)
    except BaseException:
        if had_old:
            os.rename(layout.previous, target)
        raise
    fsync_directory(target.parent)
    fsync_directory(layout.folder)


class SwapState(Enum):
    STAGED = "staged"  # the staged tree is intact: still resumable
    RESTORED = "restored"  # the Agent died mid-swap; the old version was put back, the tree is intact
    FINISHED = "finished"  # the new version is in place; only the staging folder is left
    BROKEN = "broken"  # no tree: nothing to resume


def recover_swap(layout: StagingLayout, target: Path) -> SwapState:
    """Repair a swap the Agent did not live to finish: an old version aside with no game in its
    place always goes back. Raises OSError when it cannot be put back (then keep the folder!)."""
    has_tree = os.path.lexists(layout.tree)
    has_previous = os.path.lexists(layout.previous)
    if has_previous and not os.path.lexists(target):
        os.rename(layout.previous, target)
        fsync_directory(target.parent)
        log.warning("put the previous version of %s back after an interrupted install", target)
        return SwapState.RESTORED if has_tree else SwapState.BROKEN
    if has_previous and has_tree:
        # A newer install took the name since; this old version is no longer anyone's.
        remove_path(layout.previous)
    if has_tree:
        return SwapState.STAGED
    return SwapState.FINISHED if has_previous else SwapState.BROKEN


def recover_install(layout: StagingLayout, target: Path, game_name: str) -> SwapState:
    """`recover_swap`, then settle the manifests: the staged one is published if the staged tree
    became the game, the old one goes back if the old version is (again) in place."""
    had_tree = os.path.lexists(layout.tree)
    had_previous = os.path.lexists(layout.previous)
    had_target = os.path.lexists(target)
    state = recover_swap(layout, target)
    installed: bool | None
    if not had_tree and had_target:
        installed = True  # the staged tree was renamed into place
    elif had_tree and had_previous and had_target:
        installed = None  # a newer install took the name since: neither manifest is its
    else:
        installed = False if os.path.lexists(target) else None
    settle_manifests(layout, game_name, installed)
    return state


def remove_staging(layout: StagingLayout, target: Path | None) -> None:
    """Delete a staging folder, but never an old version a failed swap left inside it."""
    _settle_previous(layout, target)
    remove_path(layout.folder)


def trash_staging(layout: StagingLayout, target: Path) -> Path:
    """`remove_staging` in one rename: the staging folder (with the old version the swap put in
    it) goes to the trash, to be deleted later; returns where it went. The trash is emptied at
    start-up too, should the Agent stop first."""
    _settle_previous(layout, target)
    return _move_to_trash(layout.root, layout.folder, layout.upload_id)


def _settle_previous(layout: StagingLayout, target: Path | None) -> None:
    if os.path.lexists(layout.previous):
        if target is None:
            raise OSError(errno.EEXIST, f"{layout.previous} may hold an installed game; left in place")
        recover_swap(layout, target)


def delete_installed(root: Path, target: Path) -> None:
    """Remove an installed game: a symlink is unlinked (never followed), a folder is moved out of
    sight in one rename and then deleted, so a failure halfway never leaves half a game visible."""
    info = os.lstat(target)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        target.unlink()
        fsync_directory(root)
        return
    aside = _move_to_trash(root, target, new_upload_id())
    fsync_directory(root)
    remove_path(aside)


def _move_to_trash(root: Path, folder: Path, name: str) -> Path:
    """Rename `folder` into the install root's trash as `name` (same filesystem: one rename)."""
    trash = trash_dir(root)
    trash.mkdir(parents=True, exist_ok=True)
    aside = trash / name
    os.rename(folder, aside)
    return aside
