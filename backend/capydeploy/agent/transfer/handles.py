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

    def acquire(self, path: Path) -> int:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                self._evict_idle(self._limit - 1)
                entry = _Entry(self._writer.open(path))
                self._entries[path] = entry
            else:
                self._entries.move_to_end(path)
            entry.users += 1
            return entry.handle

    def release(self, path: Path) -> None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None:
                entry.users -= 1

    def forget(self, path: Path) -> None:
        """Close `path`'s handle (before it is unlinked or replaced); it must be idle."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry.users == 0:
                del self._entries[path]
                self._writer.close(entry.handle)

    def close_all(self) -> None:
        """Close every idle handle; call once no worker uses the cache."""
        with self._lock:
            self._evict_idle(0)

    def _evict_idle(self, keep: int) -> None:
        # Oldest first; handles in use are skipped, so the cache may briefly exceed its limit.
        if len(self._entries) <= keep:
            return
        for path in list(self._entries):
            if len(self._entries) <= keep:
                break
            entry = self._entries[path]
            if entry.users == 0:
                del self._entries[path]
                try:
                    self._writer.close(entry.handle)
                except OSError:
                    pass
