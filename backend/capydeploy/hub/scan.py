"""List the files of a game folder on the Hub's PC, with forward-slash relative paths, and guess its executable.

Portable (Windows, macOS, Linux): no POSIX-only calls; relative paths always use '/'.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..protocol.constants import MAX_FILES
from ..protocol.paths import PathRuleError, validate_relative_path
from .errors import HubError

log = logging.getLogger(__name__)

_POSIX = os.name != "nt"


class ScanError(HubError):
    """The folder cannot be sent as it is (not a folder, names the protocol cannot carry, too many files)."""


@dataclass(frozen=True, slots=True)
class LocalFile:
    relative_path: str  # '/'-separated, relative to the scanned folder
    # Absolute and normalised (the scan starts from os.path.abspath of the folder): the hash
    # cache keys files by it as is. A str: a Path per file costs more than the rest of the scan.
    path: str
    size: int
    mtime_ns: int
    exec_bit: bool = False  # POSIX execute permission (always False on Windows)


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    relative_path: str
    reason: str


def scan_folder(folder: Path, on_skip: Callable[[SkippedEntry], None] | None = None) -> list[LocalFile]:
    """Every regular file under `folder`, sorted by relative path.

    Symbolic links: a link to a *file* that stays inside `folder` (after resolving every link on
    the way) is followed and sent as a regular file holding the target's data. A link that points
    outside the folder, a broken link and any link to a *folder* (which could repeat content or
    loop) are skipped; so are sockets, FIFOs and devices. Nothing is skipped silently: each skipped
    entry is logged as a warning and passed to `on_skip`. A folder reached twice (a Windows
    junction or a bind-mount loop) is skipped the same way.

    Raises ScanError when `folder` is not a folder, when names cannot be sent (backslash, control
    characters, components over 255 bytes; the Agent would refuse them) or when there are more
    files than the protocol allows.
    """
    folder = Path(os.path.abspath(folder))
    if not folder.is_dir():
        raise ScanError(f"{folder} is not a folder")
    root_real = Path(os.path.realpath(folder))
    files: list[LocalFile] = []
    bad_names: list[str] = []
    seen_folders: set[tuple[int, int]] = set()

    def skip(relative: str, reason: str) -> None:
        log.warning("skipping %s: %s", relative, reason)
        if on_skip is not None:
            on_skip(SkippedEntry(relative, reason))

    pending: list[tuple[str, str]] = [(str(folder), "")]
    while pending:
        current, prefix = pending.pop()
        try:
            info = os.stat(current)
        except OSError as exc:
            raise ScanError(f"cannot read folder {current}: {exc}") from None
        key = (info.st_dev, info.st_ino)
        if key in seen_folders and info.st_ino != 0:
            skip(prefix or ".", "folder already scanned (junction or loop)")
            continue
        seen_folders.add(key)
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            raise ScanError(f"cannot list folder {current}: {exc}") from None
        for entry in entries:
            relative = f"{prefix}/{entry.name}" if prefix else entry.name
            try:
                validate_relative_path(relative)
            except PathRuleError as exc:
                bad_names.append(f"{relative!r}: {exc}")
                continue
            found = _classify(entry, relative, root_real, skip)
            if isinstance(found, LocalFile):
                files.append(found)
            elif found is not None:
                pending.append((found, relative))
    if bad_names:
        listed = "; ".join(bad_names[:5])
        more = f" and {len(bad_names) - 5} more" if len(bad_names) > 5 else ""
        raise ScanError(f"{len(bad_names)} name(s) cannot be sent to a device: {listed}{more}")
    if len(files) > MAX_FILES:
        raise ScanError(f"{folder} holds {len(files)} files; the protocol allows at most {MAX_FILES}")
    files.sort(key=lambda f: f.relative_path)
    return files


def _classify(
    entry: os.DirEntry[str], relative: str, root_real: Path, skip: Callable[[str, str], None]
) -> LocalFile | str | None:
    """A file to send, a folder to walk into, or None (skipped, and reported)."""
    try:
        if entry.is_symlink():
            return _follow_link(entry, relative, root_real, skip)
        if entry.is_dir(follow_symlinks=False):
            return entry.path
        info = entry.stat(follow_symlinks=False)
    except OSError as exc:
        skip(relative, f"cannot read it: {exc}")
        return None
    if not stat.S_ISREG(info.st_mode):
        skip(relative, "not a regular file")
        return None
    return _local_file(relative, entry.path, info)


def _follow_link(
    entry: os.DirEntry[str], relative: str, root_real: Path, skip: Callable[[str, str], None]
) -> LocalFile | None:
    target = Path(os.path.realpath(entry.path))
    if not (target == root_real or target.is_relative_to(root_real)):
        skip(relative, f"symbolic link to {target}, outside the folder")
        return None
    try:
        info = os.stat(entry.path)
    except OSError:
        skip(relative, "broken symbolic link")
        return None
    if stat.S_ISDIR(info.st_mode):
        skip(relative, "symbolic link to a folder")
        return None
    if not stat.S_ISREG(info.st_mode):
        skip(relative, "symbolic link to something that is not a regular file")
        return None
    return _local_file(relative, entry.path, info)


def _local_file(relative: str, path: str, info: os.stat_result) -> LocalFile:
    exec_bit = _POSIX and bool(info.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    return LocalFile(relative, path, info.st_size, info.st_mtime_ns, exec_bit)


# --- guessing the executable ---------------------------------------------------------------------

_LAUNCH_SUFFIXES = (".exe", ".x86_64", ".x86", ".sh", ".appimage")
_LIBRARY = re.compile(r"\.(so(\.\d+)*|dll|dylib|a|o|pyd)$", re.IGNORECASE)
# Programs shipped beside a game that are never the game itself.
_HELPER = re.compile(
    r"(crash_?handler|crash_?report|crashpad|^unins\d+|uninstall|vc_?redist|dxsetup|dxwebsetup|dotnetfx"
    r"|physx_?setup|oalinst|ue\d?prereq|easyanticheat_?setup|be_?service|installer)",
    re.IGNORECASE,
)
_HELPER_FOLDERS = frozenset(
    {"_commonredist", "redist", "redistributables", "__installer", "directx", "support"}
)
# With execute bits on most files (copied from FAT/NTFS media) the bit says nothing.
_EXEC_BIT_MAX_SHARE = 0.5


def executable_candidates(files: Iterable[LocalFile]) -> list[str]:
    """Plausible executables at the shallowest depth that has any, best guesses first.

    Candidates: `.exe`, `.x86_64`, `.x86`, `.sh`, `.AppImage`, and files with the execute bit
    (unless most files carry it), minus libraries, crash handlers, uninstallers and
    redistributables. A top-level launcher is preferred over anything in sub-folders, so a
    list of one means "the single obvious executable".
    """
    files = list(files)
    if not files:
        return []
    exec_bits_mean_something = sum(f.exec_bit for f in files) <= _EXEC_BIT_MAX_SHARE * len(files)
    candidates: list[tuple[int, int, str]] = []
    for file in files:
        # The cheap tests first: most files of a big game are data, and the regexes below cost
        # more than the rest of the loop (80 ms for 20 000 files, on every deploy).
        name = file.relative_path.rpartition("/")[2]
        lower = name.lower()
        if lower.endswith(_LAUNCH_SUFFIXES):
            rank = 0
        elif file.exec_bit and exec_bits_mean_something and "." not in name.lstrip("."):
            rank = 1  # a bare Linux binary such as "game" or "run"
        elif file.exec_bit and exec_bits_mean_something:
            rank = 2
        else:
            continue
        if _LIBRARY.search(lower) or _HELPER.search(lower):
            continue
        parts = file.relative_path.split("/")
        if any(part.lower() in _HELPER_FOLDERS for part in parts[:-1]):
            continue
        candidates.append((len(parts), rank, file.relative_path))
    if not candidates:
        return []
    shallowest = min(depth for depth, _rank, _path in candidates)
    best = sorted((rank, path) for depth, rank, path in candidates if depth == shallowest)
    return [path for _rank, path in best]


def guess_executable(files: Iterable[LocalFile]) -> str | None:
    """The single obvious executable, or None when there is none or several."""
    candidates = executable_candidates(files)
    return candidates[0] if len(candidates) == 1 else None
