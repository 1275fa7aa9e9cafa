"""The record of an installed game's files (path, size, sha256, mtime) that makes redeploys incremental.

Kept beside the staging area, in `<installRoot>/.capydeploy/manifests/<sha256 of gameName>.json`,
so the game folder the user sees holds only the game. The file name is a hash because a game
name may already be 255 bytes, the longest name a folder entry can have.

An install never leaves a moment in which a crash loses the manifest, nor one in which a manifest
vouches for files it does not describe. Before the swap the new version's manifest is written into
its staging folder (from the staged tree: a rename keeps every mtime) and the old one is moved there
too, out of the way. After the swap the new one is moved into place; if the swap fails the old one
goes back. After a crash, `settle_manifests` finishes whichever half the install reached.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...protocol.listing import FileListing
from ...protocol.paths import PathRuleError, validate_relative_path
from ...storage import NotAStreamableList, atomic_write_json, fsync_directory, read_json, read_json_list
from .staging import StagingLayout, agent_dir

MANIFEST_VERSION = 1
_ENTRY_KEYS = frozenset({"path", "size", "sha256", "mtimeNs"})


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: str
    size: int
    sha256: str | None
    # The installed file's mtime when the manifest was written: a user edit that keeps the size
    # still changes it, so such a file is never carried over as "unchanged".
    mtime_ns: int


@dataclass(slots=True)
class InstalledManifest:
    game_name: str
    installed_at: float
    entries: dict[str, ManifestEntry]


def manifest_json(game_name: str, installed_at: float, entries: Iterable[ManifestEntry]) -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION,
        "gameName": game_name,
        "installedAt": installed_at,
        # Made as it is written (compact form), a batch at a time.
        "files": ({"path": e.path, "size": e.size, "sha256": e.sha256, "mtimeNs": e.mtime_ns} for e in entries),
    }


def manifests_dir(root: Path) -> Path:
    return agent_dir(root) / "manifests"


def manifest_path(root: Path, game_name: str) -> Path:
    digest = hashlib.sha256(game_name.encode("utf-8")).hexdigest()
    return manifests_dir(root) / f"{digest}.json"


def read_manifest(root: Path, game_name: str) -> InstalledManifest | None:
    """The manifest of `game_name`, or None when absent, damaged or of another game."""
    return _read_manifest_file(manifest_path(root, game_name), game_name)


def read_manifest_matches(root: Path, game_name: str, listing: FileListing) -> array[int] | None:
    """For each file of `listing`, the recorded mtime of its installed copy where the manifest of
    `game_name` records the same path, size and sha256 (a file an upload may carry over), and
    `MTIME_UNSEEN` where it does not; None when the manifest is absent, damaged or of another
    game (as `read_manifest`).

    The file is read a block at a time (`storage.read_json_list`) and each entry is compared with
    the listing as it is read, leaving nothing behind: read whole, the text of a game of 100 000
    files was 14 MB (twice, as bytes and as text) and its entries as objects 10 to 35 MB more, at
    the Agent's peak (docs/performance.md, ninth session). A file not in the form we write (an
    entry with other keys, the list not last), or damaged, is read the plain way instead.
    """
    mtimes = array("q", [MTIME_UNSEEN]) * len(listing)

    def forget() -> None:
        mtimes[:] = array("q", [MTIME_UNSEEN]) * len(listing)

    if not _visit_entries(root, game_name, lambda entry: _compare(entry, listing, mtimes), forget):
        return None
    return mtimes


def matches_of(manifest: InstalledManifest, listing: FileListing) -> array[int]:
    """`read_manifest_matches` from a manifest read the plain way."""
    mtimes = array("q", [MTIME_UNSEEN]) * len(listing)
    for entry in manifest.entries.values():
        _compare(entry, listing, mtimes)
    return mtimes


def recorded_among(root: Path, game_name: str, paths: Iterable[str]) -> dict[str, tuple[int, int]] | None:
    """Those of `paths` the manifest of `game_name` records (files an earlier install put in the
    game folder), each with the size and mtime_ns recorded. None when there is no manifest (or
    it is damaged, or of another game): then nothing is known of what the folder holds.

    Read a block at a time, as `read_manifest_matches`, keeping only the paths asked about.
    """
    wanted = set(paths)
    recorded: dict[str, tuple[int, int]] = {}

    def note(entry: ManifestEntry) -> None:
        if entry.path in wanted:
            recorded[entry.path] = (entry.size, entry.mtime_ns)

    return recorded if _visit_entries(root, game_name, note, recorded.clear) else None


def _visit_entries(
    root: Path, game_name: str, visit: Callable[[ManifestEntry], None], forget: Callable[[], None]
) -> bool:
    """Call `visit` with each entry of the manifest of `game_name` as it is read, a block at a
    time (see read_manifest_matches); False when the manifest is absent, damaged or of another
    game. A file not in the form we write (an entry with other keys, the list not last), or
    damaged, is read the plain way instead: `forget` first drops what the visits gathered, then
    `visit` sees the plain reading's entries (the last of each path)."""
    try:
        members, items = read_json_list(manifest_path(root, game_name), "files", _decode_entry)
        with contextlib.closing(items):
            if not _is_manifest_of(members, game_name):  # (its list read as `[]`)
                return False
            for item in items:  # only the list's own items: an object nested in one is no entry
                if not isinstance(item, ManifestEntry):  # other keys, or damaged: the plain way
                    raise NotAStreamableList("an entry with other keys")
                visit(item)
        return True
    except FileNotFoundError:
        return False
    except (OSError, ValueError):  # not in the form we write (or damaged): the plain reading decides
        forget()
        manifest = read_manifest(root, game_name)
        if manifest is None:
            return False
        for entry in manifest.entries.values():
            visit(entry)
        return True


def _compare(entry: ManifestEntry, listing: FileListing, mtimes: array[int]) -> None:
    """Note the entry's mtime for its listed file if it records that file's size and hash (a
    later entry of the same path decides again, as it would replace the earlier one)."""
    row = listing.index_of(entry.path)
    if row is None:
        return
    same = entry.sha256 is not None and entry.size == listing.sizes[row] and entry.sha256 == listing.given_hex(row)
    mtimes[row] = entry.mtime_ns if same else MTIME_UNSEEN


def _is_manifest_of(raw: Any, game_name: str) -> bool:
    return (
        isinstance(raw, dict)
        and raw.get("version") == MANIFEST_VERSION
        and raw.get("gameName") == game_name
        and isinstance(raw.get("files"), list)
    )


def _read_manifest_file(path: Path, game_name: str) -> InstalledManifest | None:
    raw = read_json(path, None, object_pairs_hook=_decode_entry)
    if not _is_manifest_of(raw, game_name):
        return None
    entries: dict[str, ManifestEntry] = {}
    for item in raw["files"]:
        entry = item if isinstance(item, ManifestEntry) else _entry_from_json(item)
        if entry is None:
            return None
        entries[entry.path] = entry
    installed_at = raw.get("installedAt")
    return InstalledManifest(
        game_name, float(installed_at) if isinstance(installed_at, int | float) else 0.0, entries
    )


def _decode_entry(pairs: list[tuple[str, Any]]) -> Any:
    """JSON object hook: a file's entry becomes its ManifestEntry as it is read (see read_json);
    anything else, a damaged entry too, stays a dict for `_read_manifest_file` to judge."""
    obj = dict(pairs)
    if "path" in obj and obj.keys() <= _ENTRY_KEYS:
        return _entry_from_json(obj) or obj
    return obj


def _entry_from_json(item: object) -> ManifestEntry | None:
    if not isinstance(item, dict):
        return None
    path, size, sha, mtime = item.get("path"), item.get("size"), item.get("sha256"), item.get("mtimeNs")
    if not isinstance(path, str) or not isinstance(size, int) or not isinstance(mtime, int):
        return None
    if sha is not None and not isinstance(sha, str):
        return None
    try:
        validate_relative_path(path)
    except PathRuleError:
        return None
    return ManifestEntry(path, size, sha, mtime)


def remove_manifest(root: Path, game_name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        manifest_path(root, game_name).unlink()


# An mtime not seen (an mtime_ns is an int64; this one is 1677 and no file has it).
MTIME_UNSEEN = -(2**63)


def manifest_entries(
    game_dir: Path, files: Iterable[tuple[str, int, str | None]], mtimes: Sequence[int] | None = None
) -> Iterator[ManifestEntry]:
    """Describe the installed files as they are on disk right now, one at a time: each mtime from
    `mtimes` (seen since the last write) or, where it has `MTIME_UNSEEN`, from a fresh stat."""
    for index, (path, size, sha) in enumerate(files):
        mtime_ns = mtimes[index] if mtimes is not None else MTIME_UNSEEN
        if mtime_ns == MTIME_UNSEEN:
            mtime_ns = os.lstat(game_dir / path).st_mtime_ns
        yield ManifestEntry(path, size, sha, mtime_ns)


def stage_manifest(
    layout: StagingLayout, game_name: str, installed_at: float, entries: Iterable[ManifestEntry]
) -> None:
    """Write the new version's manifest into its staging folder, before the swap. The entries are
    written as they are made: a game of 50 000 files never holds them all (8 MB)."""
    atomic_write_json(layout.manifest_file, manifest_json(game_name, installed_at, entries), compact=True)


def set_manifest_aside(layout: StagingLayout, game_name: str) -> None:
    """Move the installed version's manifest into the staging folder, before the swap: once the new
    version is in place, the old entries would describe its paths."""
    try:
        os.replace(manifest_path(layout.root, game_name), layout.previous_manifest)
    except FileNotFoundError:
        return
    # Durable before the swap's renames: a manifest must never outlive its version in place.
    fsync_directory(manifests_dir(layout.root))
    fsync_directory(layout.folder)


def put_manifest_back(layout: StagingLayout, game_name: str) -> None:
    """The swap did not happen (or was undone): the old version is in place, its manifest is valid."""
    _remove_quietly(layout.manifest_file)
    _move_into_place(layout.previous_manifest, layout.root, game_name)


def publish_manifest(layout: StagingLayout, game_name: str) -> None:
    """The swap happened: the manifest staged for the new version now describes the installed game."""
    _move_into_place(layout.manifest_file, layout.root, game_name)
    _remove_quietly(layout.previous_manifest)


def settle_manifests(layout: StagingLayout, game_name: str, installed: bool | None) -> None:
    """After a crash inside an install: `installed` says whether the staged tree became the game
    (True), the old version is in place (False), or neither manifest belongs to what is there (None).

    A staged manifest is published only if the game folder holds every file it lists with the
    recorded size and mtime, so a stray one can never vouch for another version's files.
    """
    if installed is False:
        put_manifest_back(layout, game_name)
        return
    staged = _read_manifest_file(layout.manifest_file, game_name) if installed else None
    if staged is not None and _describes(staged, layout.root / game_name):
        publish_manifest(layout, game_name)
        return
    _remove_quietly(layout.manifest_file)
    _remove_quietly(layout.previous_manifest)


def _describes(manifest: InstalledManifest, game_dir: Path) -> bool:
    try:
        if not stat.S_ISDIR(os.lstat(game_dir).st_mode):
            return False
        for entry in manifest.entries.values():
            info = os.lstat(game_dir / entry.path)
            if not stat.S_ISREG(info.st_mode) or info.st_size != entry.size or info.st_mtime_ns != entry.mtime_ns:
                return False
    except OSError:
        return False
    return True


def _move_into_place(source: Path, root: Path, game_name: str) -> None:
    target = manifest_path(root, game_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except FileNotFoundError:
        return
    fsync_directory(target.parent)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def installed_copy(
    game_dir_real: str | os.PathLike[str],
    path: str,
    size: int,
    mtime_ns: int,
    *,
    real_folders: dict[str, str] | None = None,
) -> str | None:
    """The installed copy of `path` if it is still what the manifest recorded, else None.

    The manifest alone is not enough: the file must still be a regular file of that size and
    mtime, and must not reach outside the game folder through a symlinked parent. Plain strings,
    not pathlib, in the loop: a game of 20 000 files calls this 20 000 times.
    """
    root = os.fspath(game_dir_real)
    candidate = os.path.join(root, path)  # `path` is a validated relative POSIX path
    try:
        info = os.lstat(candidate)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size != size or info.st_mtime_ns != mtime_ns:
        return None
    # The file itself is no symlink (lstat above), so only its folder can lead elsewhere.
    folder = os.path.dirname(candidate)
    real_folder = real_folders.get(folder) if real_folders is not None else None
    if real_folder is None:
        real_folder = os.path.realpath(folder)
        if real_folders is not None:
            real_folders[folder] = real_folder
    if real_folder != root and not real_folder.startswith(os.path.join(root, "")):
        return None
    return candidate
