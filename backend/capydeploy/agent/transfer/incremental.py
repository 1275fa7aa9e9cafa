"""Incremental redeploy: carry files the installed version already holds into the staged tree.

A listed file whose (path, size, sha256) equals the installed manifest's, and whose installed copy is
unchanged since (size and mtime), is hard-linked into staging (no data moves); where links are not
possible (another filesystem, no permission, exFAT) it is copied and hashed on the way, so a copy
that does not match is never counted. These functions run in worker threads.
"""

from __future__ import annotations

import errno
import hashlib
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...protocol.listing import FileListing
from .file_table import FileTable
from .filehash import Hasher
from .filesystem import FileWriter, remove_path, write_all
from .manifest import MTIME_UNSEEN, installed_copy

# Errors after which a copy is worth trying instead of a hard link.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES})


@dataclass(frozen=True, slots=True)
class CarryItem:
    """One file to carry, made when its turn comes (see `carry_items`)."""

    index: int
    source: str
    dest: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class CarryResult:
    index: int
    linked: bool
    # mtime_ns of the linked file (its size is the listed one), to notice an edit of the shared data
    # before the swap.
    mtime_ns: int | None = None
    # The copy's hash state over the whole file (the copy path hashes as it goes).
    hasher: Hasher | None = None


@dataclass(frozen=True, slots=True)
class CarryPlan:
    """The files the installed version can supply: their indices in the upload's file list, and
    the installed game's real folder. Only indices are kept, in an array (no int object each): a
    plan may cover 100 000 files, and their source and destination paths are made one at a time
    as they are carried."""

    source_root: str
    indices: Sequence[int]

    def __len__(self) -> int:
        return len(self.indices)


def plan_carry(
    candidates: Iterable[int], listing: FileListing, matches: array[int] | None, game_dir: Path
) -> CarryPlan:
    """The candidates (rows of `listing` that staging does not yet hold whole) that the installed
    version holds unchanged: the manifest records their size and hash (`matches`, see
    manifest.read_manifest_matches) and their installed copy is still what it recorded."""
    empty = CarryPlan("", array("q"))
    if matches is None:
        return empty
    try:
        game_dir_real = os.path.realpath(game_dir)
    except OSError:
        return empty
    indices = array("q")
    real_folders: dict[str, str] = {}  # the files of a game share few folders: resolve each once
    paths, sizes = listing.paths, listing.sizes
    for index in candidates:
        mtime_ns = matches[index]
        if mtime_ns != MTIME_UNSEEN and installed_copy(
            game_dir_real, paths[index], sizes[index], mtime_ns, real_folders=real_folders
        ):
            indices.append(index)
    return CarryPlan(game_dir_real, indices)


def carry_items(plan: CarryPlan, files: FileTable) -> Iterator[CarryItem]:
    """The plan's files with their paths, one at a time (from the table's columns)."""
    tree = str(files.tree)
    listing = files.listing
    for index in plan.indices:
        path = listing.paths[index]
        sha256 = listing.given_hex(index)
        assert sha256 is not None  # plan_carry takes only files with a hash
        # The path is a validated relative POSIX path: joining cannot leave either folder.
        yield CarryItem(index, os.path.join(plan.source_root, path), os.path.join(tree, path), listing.sizes[index], sha256)


def carry_file(
    item: CarryItem, writer: FileWriter, piece: int, made_folders: set[str] | None = None
) -> CarryResult | None:
    """Link (or copy and verify) one file; None when it could not be carried (the Hub will send it).

    `made_folders` remembers the staging folders already created across one batch of files.
    """
    folder = os.path.dirname(item.dest)
    if made_folders is None or folder not in made_folders:
        os.makedirs(folder, exist_ok=True)
        if made_folders is not None:
            made_folders.add(folder)
    # The usual case first: nothing staged there yet, one link() does it.
    try:
        os.link(item.source, item.dest, follow_symlinks=False)
        return _linked(item)
    except FileExistsError:
        pass
    except OSError as exc:
        return _copy_verified(item, writer, piece) if exc.errno in _NO_LINK else None
    # Something is staged there already: this very link (an earlier init_upload), or stale data.
    try:
        if os.path.samefile(item.source, item.dest):
            return _linked(item)
    except OSError:
        pass
    remove_path(Path(item.dest))
    try:
        os.link(item.source, item.dest, follow_symlinks=False)
        return _linked(item)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            return None
    return _copy_verified(item, writer, piece)


def _linked(item: CarryItem) -> CarryResult | None:
    info = os.lstat(item.dest)
    if info.st_size != item.size:
        return None
    return CarryResult(item.index, linked=True, mtime_ns=info.st_mtime_ns)


def _copy_verified(item: CarryItem, writer: FileWriter, piece: int) -> CarryResult | None:
    hasher = hashlib.sha256()
    handle = writer.open(Path(item.dest))
    copied = 0
    try:
        writer.truncate(handle, 0)
        with open(item.source, "rb") as source:
            buffer = bytearray(piece)
            view = memoryview(buffer)
            while True:
                count = source.readinto(buffer)
                if not count:
                    break
                write_all(writer, handle, view[:count], copied)
                hasher.update(view[:count])
                copied += count
    except OSError:
        writer.close(handle)
        remove_path(Path(item.dest))
        return None
    writer.close(handle)
    if copied != item.size or hasher.hexdigest() != item.sha256:
        remove_path(Path(item.dest))
        return None
    return CarryResult(item.index, linked=False, hasher=hasher)
