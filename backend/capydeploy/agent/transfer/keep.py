"""What the game wrote into its own folder (saves, settings, logs) survives a redeploy.

An install swaps a new folder in for the old one, so anything not copied into the staged tree
before the swap is gone with the old version. The listed files are the new version. Of the rest,
a file the installed manifest records, still with the size and mtime it recorded, was put there
by an earlier install and nobody changed it since: the new version no longer has it, so it goes,
as any update removes such a file. Anything else is the game's (or the user's): a file the game
made, or one an install put there that the game rewrote since (a default config turned into the
player's). It is hard-linked into the staged tree just before the swap (no data moves; a copy where
links are impossible), so the new version holds it and the old version stays untouched until the
swap. Without a manifest (a folder CapyDeploy did not install, or whose record was lost) nothing is
known to be ours: every unlisted entry is kept, as a copy over a folder keeps what it does not name.

The new version always wins a path both claim: a listed file replaces the game's file of that
path, and a listed file or folder replaces a game's entry of the other kind (reported in the log).

The game may be running. Right after the swap, `catch_up_after_swap` looks at the old folder once
more and carries over what changed there since the first look: a file written since (new, or
saved over by a rename) is moved in, one deleted since is deleted.

Before anything is kept, `kept.json` is written in the staging folder. A later attempt to complete
the same upload (after a failure or an Agent restart) then first removes from the staged tree
everything that is not listed, so a save the game deleted in between does not come back. These
functions run in worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ...protocol.listing import FileListing
from ...storage import atomic_write_json, fsync_directory
from .filesystem import FileWriter, remove_path
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

    # Each file kept: (the inode of the old folder's file it was linked from, 0 for a copy; the
    # inode and mtime_ns of its entry in the new folder), to tell later who changed what, where.
    links: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    folders: tuple[str, ...] = ()  # folders made for them, or kept empty, outside the listed ones
    # Unlisted files an earlier install put there, with their recorded (size, mtime_ns): they go.
    ours: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.links)

    def __bool__(self) -> bool:
        return bool(self.links or self.folders)


def unlisted_entries(game_dir: Path, listing: FileListing, folders: set[str]) -> Unlisted:
    """Walk `game_dir` (never through a symlink) for what the listing (whose folders are
    `folders`, see install.listed_folders) does not name. A game
    folder that is a symlink or not a folder has nothing of its own to keep: the swap moves only
    the link aside, and what it points at stays where it is. A folder that vanishes during the
    walk (the game removing a temporary folder) holds nothing to keep; one that cannot be read
    raises OSError naming it."""
    found = Unlisted()
    if not _is_real_folder(game_dir):
        return found
    pending = [""]
    while pending:
        folder = pending.pop()
        entries = _entries_of(game_dir, folder)
        if entries is None:
            continue
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


def _is_real_folder(path: Path) -> bool:
    """A folder, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _entries_of(root: str | Path, folder: str) -> list[os.DirEntry[str]] | None:
    """The entries of `folder` (relative to `root`); None if it vanished meanwhile."""
    try:
        with os.scandir(os.path.join(root, folder)) as scan:
            return list(scan)
    except (FileNotFoundError, NotADirectoryError):
        return None


def ours_among(root: Path, game_name: str, game_dir: Path, paths: Iterable[str]) -> set[str] | None:
    """Those of `paths` (files in `game_dir`) an earlier install put there and nobody changed
    since: the manifest records them, and each is still a regular file of the recorded size and
    mtime. None when there is no manifest to tell."""
    ours = _ours(root, game_name, game_dir, paths)
    return None if ours is None else set(ours)


def _ours(root: Path, game_name: str, game_dir: Path, paths: Iterable[str]) -> dict[str, tuple[int, int]] | None:
    """`ours_among`, each with its recorded (size, mtime_ns)."""
    recorded = recorded_among(root, game_name, paths)
    if recorded is None:
        return None
    return {path: facts for path, facts in recorded.items() if _unchanged(os.path.join(game_dir, path), facts)}


def _unchanged(path: str, facts: tuple[int, int]) -> bool:
    """Whether `path` is a regular file of the (size, mtime_ns) recorded."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and (info.st_size, info.st_mtime_ns) == facts


def keep_what_the_game_wrote(
    layout: StagingLayout, game_name: str, game_dir: Path, listing: FileListing, writer: FileWriter
) -> Kept:
    """Carry the game folder's own entries (see the module's text) into the staged tree and make
    them durable there. Raises OSError (naming the entry at fault), having taken back what it
    added."""
    if not os.path.lexists(layout.kept_file) and not _is_real_folder(game_dir):
        return Kept()  # a first install: nothing to take back or keep (and no folders to list)
    folders = listed_folders(listing.paths)
    take_back_kept(layout, listing, folders)
    unlisted = unlisted_entries(game_dir, listing, folders)
    for path in unlisted.overruled:
        log.warning("%s: %s in the installed folder is replaced by the new version", game_name, path)
    if not unlisted.files and not unlisted.empty_folders:
        return Kept()
    ours = _ours(layout.root, game_name, game_dir, unlisted.files) or {}
    kept_files = [path for path in unlisted.files if path not in ours]
    made_folders = sorted(
        (listed_folders([*kept_files, *(folder + "/" for folder in unlisted.empty_folders)]) - folders),
        key=lambda path: path.count("/"),
    )
    if not kept_files and not made_folders:
        return Kept(ours=ours)
    atomic_write_json(layout.kept_file, {"version": 1})  # what it names is found again by a walk
    try:
        links, copied = _link_into(game_dir, layout.tree, kept_files, made_folders, game_name)
        _make_durable(layout.tree, list(links), made_folders, copied, writer)
    except BaseException:
        with contextlib.suppress(OSError):
            take_back_kept(layout, listing, folders)
        raise
    return Kept(links, tuple(made_folders), ours)


def take_back_kept(layout: StagingLayout, listing: FileListing, folders: set[str]) -> None:
    """If an earlier attempt kept entries in the staged tree (`kept.json`), remove from the tree
    everything that is not listed (`listing`, whose folders are `folders`): staging itself never
    puts anything else there."""
    if not os.path.lexists(layout.kept_file):
        return
    tree = os.fspath(layout.tree)
    pending = [""]
    while pending:
        folder = pending.pop()
        for entry in _entries_of(tree, folder) or ():
            path = f"{folder}/{entry.name}" if folder else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir and path in folders:
                pending.append(path)
            elif is_dir:
                _remove_folder(entry.path)
            elif listing.index_of(path) is None:
                os.unlink(entry.path)
    os.unlink(layout.kept_file)


def _remove_folder(path: str) -> None:
    """Remove a kept folder, whatever modes the game gave it and its sub-folders."""
    os.chmod(path, 0o700)
    for folder, names, _ in os.walk(path):
        for name in names:
            inner = os.path.join(folder, name)
            if not os.path.islink(inner):
                os.chmod(inner, 0o700)  # before os.walk reads it
    remove_path(Path(path))


def _link_into(
    game_dir: Path, tree: Path, files: list[str], folders: list[str], game_name: str
) -> tuple[dict[str, tuple[int, int, int]], list[str]]:
    """Link (or copy) `files` into the tree, making `folders` first (writable until the files are
    in, then given the game's modes, deepest first). Returns each file kept with its (old, new)
    inodes, and the files copied."""
    for folder in folders:
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.join(tree, folder), 0o700)
    links: dict[str, tuple[int, int, int]] = {}
    copied: list[str] = []
    for path in files:
        source, destination = os.path.join(game_dir, path), os.path.join(tree, path)
        outcome = _link_one(source, destination)
        if outcome == "clash":
            log.warning("%s: %s in the installed folder clashes with a name of the new version", game_name, path)
        elif outcome in ("linked", "copied"):
            made = os.lstat(destination)
            # A link is the old folder's file itself. For a copy, old inode 0: the catch-up after
            # the swap moves the original in over it (one rename works where links do not).
            old_inode = made.st_ino if outcome == "linked" else 0
            links[path] = (old_inode, made.st_ino, made.st_mtime_ns)
            if outcome == "copied":
                copied.append(path)
    for folder in reversed(folders):
        with contextlib.suppress(FileNotFoundError):  # a folder the game removed meanwhile
            info = os.lstat(os.path.join(game_dir, folder))
            if stat.S_ISDIR(info.st_mode):  # (not whatever may have replaced it)
                os.chmod(os.path.join(tree, folder), stat.S_IMODE(info.st_mode))
    return links, copied


def _link_one(source: str, destination: str) -> str:
    """"linked", "copied", "gone" (the game deleted it meanwhile, or made it a folder) or
    "clash" (the new version holds that name already, as on a case-insensitive filesystem)."""
    try:
        os.link(source, destination, follow_symlinks=False)
        return "linked"
    except FileNotFoundError:
        if not os.path.lexists(source):
            return "gone"
        raise
    except (FileExistsError, NotADirectoryError):
        return "clash"
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    if os.path.lexists(destination):
        return "clash"  # never copy over the new version's file
    try:
        if stat.S_ISDIR(os.lstat(source).st_mode):
            return "gone"  # (a link to a folder fails with EPERM)
    except FileNotFoundError:
        return "gone"
    shutil.copy2(source, destination, follow_symlinks=False)
    return "copied"


def _make_durable(tree: Path, files: list[str], folders: list[str], copied: list[str], writer: FileWriter) -> None:
    """The kept entries are durable before the swap, as the listed files are: their folders' new
    entries, and the data of what was copied (the original goes with the old version)."""
    touched = {""} | {path.rpartition("/")[0] for path in (*files, *folders)}
    if (copied or len(touched) > _SYNCFS_FROM_FOLDERS) and writer.sync_filesystem(tree):
        return
    for path in copied:
        target = tree / path
        if target.is_symlink():
            continue
        handle = writer.open(target)
        try:
            writer.fsync(handle)
        finally:
            writer.close(handle)
    _fsync_folders(tree, touched)


def _fsync_folders(root: Path, folders: Iterable[str]) -> None:
    for folder in sorted(folders, key=lambda path: path.count("/") if path else -1, reverse=True):
        fsync_directory(root / folder if folder else root)


def catch_up_after_swap(previous: Path, target: Path, listing: FileListing, kept: Kept, game_name: str) -> None:
    """Right after the swap (`previous` is the old folder, `target` the new one): carry over what
    the game did in the old folder since `keep_what_the_game_wrote` looked, where the new folder
    still holds what the keep step put there (a change the game made in the new folder since, by
    path, is newer and wins). A kept file saved over (another inode) is replaced, one deleted is
    deleted, a made folder removed is removed; a file new there (or a shipped file the game
    rewrote meanwhile) and a new empty folder are linked or made where the new folder has no such
    name. Best effort, one step each: the install is already done, so nothing here raises."""
    try:
        unlisted = unlisted_entries(previous, listing, listed_folders(listing.paths))
    except OSError as exc:
        log.warning("%s: could not look at the old folder again after the install: %s", game_name, exc)
        return
    present = set(unlisted.files)
    touched: set[str] = set()

    def done(path: str) -> None:
        parent = path.rpartition("/")[0]
        while True:  # its folder, and any folder made for it
            touched.add(parent)
            if not parent:
                return
            parent = parent.rpartition("/")[0]

    for path, (old_inode, new_inode, new_mtime) in kept.links.items():
        source, destination = os.path.join(previous, path), os.path.join(target, path)
        if _identity(destination) != (new_inode, new_mtime):
            continue  # the game wrote it since (in place, or anew in the new folder): that is newer
        now = _identity(source)[0] if path in present else None
        if now == old_inode:
            continue
        follow = partial(os.unlink, destination) if now is None else partial(os.replace, source, destination)
        if _quietly(game_name, "follow the game's change to", path, follow):
            done(path)
    for folder in reversed(kept.folders):
        if not os.path.isdir(os.path.join(previous, folder)) or os.path.islink(os.path.join(previous, folder)):
            with contextlib.suppress(OSError):  # not empty: the game wrote into it in the new folder
                os.rmdir(os.path.join(target, folder))
                done(folder)
    for path in unlisted.files:
        if path in kept.links:
            continue
        facts = kept.ours.get(path)
        if facts is not None and _unchanged(os.path.join(previous, path), facts):
            continue  # an earlier install's file, unchanged: it goes with the old version
        if _quietly(game_name, "carry", path, partial(_link_new, previous, target, path)):
            done(path)
    for folder in unlisted.empty_folders:
        with contextlib.suppress(OSError):  # there already, or no place for it
            os.makedirs(os.path.join(target, folder))
            done(folder + "/")
    if touched:
        log.info("%s: what the game did in its folder during the install carried over", game_name)
        _fsync_folders(target, touched)


def _identity(path: str) -> tuple[int | None, int | None]:
    """(inode, mtime_ns) of `path`, (None, None) when it is not there."""
    try:
        info = os.lstat(path)
    except OSError:
        return None, None
    return info.st_ino, info.st_mtime_ns


def _link_new(previous: Path, target: Path, path: str) -> None:
    """Link the old folder's `path` into the new folder, never over a name it holds."""
    parent = path.rpartition("/")[0]
    if parent:
        os.makedirs(os.path.join(target, parent), exist_ok=True)
    os.link(os.path.join(previous, path), os.path.join(target, path), follow_symlinks=False)


def _quietly(game_name: str, what: str, path: str, step: Callable[[], object]) -> bool:
    """Run one step of the catch-up; a failure is logged, never raised."""
    try:
        step()
    except FileExistsError:
        return False  # the new folder holds that name (the new version's, or the game's since)
    except OSError as exc:
        log.warning("%s: could not %s %s after the install: %s", game_name, what, path, exc)
        return False
    return True
