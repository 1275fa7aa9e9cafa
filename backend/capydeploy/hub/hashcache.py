"""SHA-256 of the files to deploy, remembered between runs so an unchanged redeploy reads no file data.

A cached hash is keyed by the file's absolute path and is valid while its (size, mtime_ns) are
unchanged. Hashing runs in a worker thread with a 1 MiB buffer (hashlib releases the GIL).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage import atomic_write_json, read_json
from .errors import HubError
from .scan import LocalFile

log = logging.getLogger(__name__)

CACHE_VERSION = 1
READ_BUFFER = 1024 * 1024
# Progress is reported at least this often while one big file is hashed.
PROGRESS_STEP = 32 * 1024 * 1024

HashProgress = Callable[[int, int], None]  # (bytes hashed so far, bytes to hash in total)


class FileChangedError(HubError):
    """A file changed between the scan and the hash: scan again."""


class _Stopped(Exception):
    """The caller was cancelled; stop reading."""


@dataclass
class HashStats:
    """What the last runs cost: `misses` and `bytes_hashed` stay 0 when everything was cached."""

    hits: int = 0
    misses: int = 0
    bytes_hashed: int = 0


class HashCache:
    """`{absolute path: (size, mtime_ns, sha256)}`, stored as JSON (atomic writes). Files are keyed
    by their scanned path, which is absolute and normalised already."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.stats = HashStats()
        self._entries: dict[str, tuple[int, int, str]] = _load(self.path)
        self._dirty = False
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, file: LocalFile) -> str | None:
        """The cached hash if the file still has the size and mtime it had when hashed."""
        entry = self._entries.get(file.path)
        if entry is None or entry[0] != file.size or entry[1] != file.mtime_ns:
            return None
        return entry[2]

    def store(self, file: LocalFile, sha256: str) -> None:
        with self._lock:
            self._entries[file.path] = (file.size, file.mtime_ns, sha256)
            self._dirty = True

    def forget_missing(self, folder: Path, present: Iterable[LocalFile]) -> int:
        """Drop the entries of files under `folder` that a fresh scan no longer found (deleted or
        renamed since), so the cache does not grow with every build; returns how many went."""
        prefix = os.path.join(_key(folder), "")
        keep = {file.path for file in present}
        with self._lock:
            stale = [key for key in self._entries if key.startswith(prefix) and key not in keep]
            for key in stale:
                del self._entries[key]
            if stale:
                self._dirty = True
        return len(stale)

    def save(self) -> None:
        """Write the cache if it changed."""
        with self._lock:
            if not self._dirty:
                return
            payload = {
                "version": CACHE_VERSION,
                "entries": {path: list(entry) for path, entry in self._entries.items()},
            }
            self._dirty = False
        atomic_write_json(self.path, payload, compact=True)


def _key(path: Path) -> str:
    return os.path.abspath(path)


_SHA256_HEX = re.compile("[0-9a-f]{64}")


def _is_sha256_hex(value: str) -> bool:
    return _SHA256_HEX.fullmatch(value) is not None


def _load(path: Path) -> dict[str, tuple[int, int, str]]:
    raw: Any = read_json(path, None)
    if (
        not isinstance(raw, dict)
        or raw.get("version") != CACHE_VERSION
        or not isinstance(raw.get("entries"), dict)
    ):
        return {}
    entries: dict[str, tuple[int, int, str]] = {}
    for key, value in raw["entries"].items():
        if (
            isinstance(key, str)
            and isinstance(value, list)
            and len(value) == 3
            and isinstance(value[0], int)
            and isinstance(value[1], int)
            and isinstance(value[2], str)
            and _is_sha256_hex(value[2])
        ):
            entries[key] = (value[0], value[1], value[2])
    return entries


async def hash_files(
    files: Iterable[LocalFile], cache: HashCache | None, progress: HashProgress | None = None
) -> dict[str, str]:
    """`{relative_path: sha256}` for every file, reading only files the cache does not know.

    `progress` is called on the event loop. The cache is saved at the end (also after a failure
    or a cancellation, so work done is not lost).
    """
    files = list(files)
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def report(done: int, total: int) -> None:
        if progress is not None:
            loop.call_soon_threadsafe(progress, done, total)

    try:
        return await asyncio.to_thread(_hash_all, files, cache, report, stop)
    except asyncio.CancelledError:
        stop.set()  # the thread cannot be interrupted, but it checks this between reads
        raise


def _hash_all(
    files: list[LocalFile], cache: HashCache | None, report: HashProgress, stop: threading.Event
) -> dict[str, str]:
    hashes: dict[str, str] = {}
    todo: list[LocalFile] = []
    for file in files:
        cached = cache.lookup(file) if cache is not None else None
        if cached is not None:
            hashes[file.relative_path] = cached
            if cache is not None:
                cache.stats.hits += 1
        else:
            todo.append(file)
    total = sum(file.size for file in todo)
    done = 0
    try:
        report(0, total)
        for file in todo:
            if stop.is_set():
                break
            base = done

            def on_bytes(count: int, base: int = base) -> None:
                report(base + count, total)

            try:
                sha = _sha256_of_file(file, on_bytes, stop)
            except _Stopped:
                break
            hashes[file.relative_path] = sha
            done += file.size
            report(done, total)
            if cache is not None:
                cache.store(file, sha)
                cache.stats.misses += 1
                cache.stats.bytes_hashed += file.size
    finally:
        if cache is not None:
            try:
                cache.save()
            except OSError as exc:
                log.warning("could not save the hash cache %s: %s", cache.path, exc)
    return hashes


def sha256_of_file(file: LocalFile) -> str:
    """The SHA-256 of one scanned file (no cache, no progress); FileChangedError if it changed."""
    return _sha256_of_file(file, lambda _count: None, threading.Event())


def _sha256_of_file(file: LocalFile, on_bytes: Callable[[int], None], stop: threading.Event) -> str:
    """Stream one file through SHA-256; FileChangedError when it is not the file that was scanned."""
    hasher = hashlib.sha256()
    buffer = bytearray(READ_BUFFER)
    view = memoryview(buffer)
    read = 0
    next_report = PROGRESS_STEP
    try:
        with open(file.path, "rb") as handle:
            before = os.fstat(handle.fileno())
            if (before.st_size, before.st_mtime_ns) != (file.size, file.mtime_ns):
                raise FileChangedError(f"{file.relative_path} changed since the folder was scanned")
            while True:
                count = handle.readinto(buffer)
                if not count:
                    break
                hasher.update(view[:count])
                read += count
                if read >= next_report:
                    on_bytes(read)
                    next_report += PROGRESS_STEP
                    if stop.is_set():
                        raise _Stopped
            after = os.fstat(handle.fileno())
    except OSError as exc:
        raise FileChangedError(f"cannot read {file.relative_path}: {exc}") from None
    if read != file.size or (after.st_size, after.st_mtime_ns) != (file.size, file.mtime_ns):
        raise FileChangedError(f"{file.relative_path} changed while it was being hashed")
    return hasher.hexdigest()
