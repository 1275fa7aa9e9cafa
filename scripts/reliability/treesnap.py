"""Snapshots of a folder tree (types, modes, sizes, contents, link targets, folder mtimes) and their diff."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

Entry = tuple[str, int, int, str]  # kind, mode, size, content digest / link target / folder mtime


def snapshot(root: Path, exclude: Iterable[Path] = ()) -> dict[str, Entry]:
    """Every entry under `root` (symlinks not followed), skipping the `exclude` subtrees."""
    skipped = {os.path.normpath(path) for path in exclude}
    entries: dict[str, Entry] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [name for name in dirs if os.path.normpath(os.path.join(folder, name)) not in skipped]
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            if os.path.normpath(path) in skipped:
                continue
            info = os.lstat(path)
            key = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                entries[key] = ("link", 0, 0, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[key] = ("dir", stat.S_IMODE(info.st_mode), 0, str(info.st_mtime_ns))
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                entries[key] = ("file", stat.S_IMODE(info.st_mode), info.st_size, digest)
            else:
                entries[key] = ("other", stat.S_IMODE(info.st_mode), 0, "")
    info = os.lstat(root)
    entries["."] = ("dir", stat.S_IMODE(info.st_mode), 0, str(info.st_mtime_ns))
    return entries


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    """Human-readable differences: added, removed and changed entries."""
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if old is None:
            changes.append(f"added {key} {new}")
        elif new is None:
            changes.append(f"removed {key} {old}")
        else:
            changes.append(f"changed {key}: {old} -> {new}")
    return changes
