"""A bounded, thread-safe cache of open staged files, so a chunk costs one pwrite and not open+close."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from .filesystem import FileWriter

DEFAULT_OPEN_LIMIT = 64


class _Entry:
    __slots__ = ("handle", "users")

    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.users = 0


class HandleCache:
    """Open handles keyed by path, shared by worker threads.

    A handle is closed only while no thread uses it: closing a descriptor another thread is
    writing through could let the number be reused by a different file mid-write.
    """

    def __init__(self, writer: FileWriter, limit: int = DEFAULT_OPEN_LIMIT) -> None:
        self._writer = writer
        self._limit = limit
        self._lock = threading.Lock()
        self._entries: OrderedDict[Path, _Entry] = OrderedDict()

    def __len__(self) -> int:
        """How many handles are open."""
        return len(self._entries)

    def acquire(self, path: Path) -> int:
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None:
                self._entries.move_to_end(path)
                entry.users += 1
                return entry.handle
        # Opened outside the lock: creating a file waits on the filesystem, and meanwhile the other
        # worker threads may take and give back handles already open (the writer itself makes
        # creations wait for one another).
        handle = self._writer.open(path)
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                entry = self._entries[path] = _Entry(handle)
                entry.users += 1  # before the eviction, which takes only idle entries
                to_close = self._take_idle(self._limit)
            else:
                self._entries.move_to_end(path)
                entry.users += 1
                to_close = [handle]  # another thread opened it meanwhile: use that one
            kept = entry.handle
        self._close(to_close)
        return kept

    def release(self, path: Path) -> None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None:
                entry.users -= 1

    def forget(self, path: Path) -> None:
        """Close `path`'s handle (before it is unlinked or replaced); it must be idle."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry.users != 0:
                return
            del self._entries[path]
        self._writer.close(entry.handle)

    def close_all(self) -> None:
        """Close every idle handle; call once no worker uses the cache."""
        with self._lock:
            to_close = self._take_idle(0)
        self._close(to_close)

    def _take_idle(self, keep: int) -> list[int]:
        """Remove idle entries, oldest first, until at most `keep` remain; their handles, to close
        once the lock is released. Handles in use stay, so the cache may briefly exceed its limit."""
        excess = len(self._entries) - keep
        if excess <= 0:
            return []
        # Oldest first, and only as far as needed: usually the first entry is idle and goes.
        idle: list[Path] = []
        for path, entry in self._entries.items():
            if entry.users == 0:
                idle.append(path)
                if len(idle) == excess:
                    break
        return [self._entries.pop(path).handle for path in idle]

    def _close(self, handles: list[int]) -> None:
        for handle in handles:
            try:
                self._writer.close(handle)
            except OSError:
                pass
