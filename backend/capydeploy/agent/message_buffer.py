"""Where the fragments of a long message are joined.

A Hub sends a long message (the file list of a game of many files, up to 10 MiB) in fragments of
256 Ki characters. Kept in a list and joined at the end, each fragment was a block of malloc's
heap, freed once joined: 10 MB of heap left resident, free but below the objects the upload made
next, through the whole upload (the Agent's peak for games of many files). Here each fragment is
copied into an anonymous memory mapping as it arrives and dropped, so malloc reuses one
fragment's block for the next; the mapping is unmapped once the message is decoded from it.
"""

from __future__ import annotations

import mmap


class MessageBuffer:
    """The bytes of one message, in arrival order. Close it (or use it as a context manager)."""

    def __init__(self, capacity: int) -> None:
        # Only the pages written become memory; the rest of the reservation costs nothing.
        # Private: a shared anonymous mapping is a file of fixed size, which cannot grow.
        self._map = mmap.mmap(-1, max(capacity, 1), flags=mmap.MAP_PRIVATE)
        self._length = 0

    def __enter__(self) -> MessageBuffer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._length

    def append(self, fragment: str | bytes) -> None:
        data = fragment.encode() if isinstance(fragment, str) else fragment
        end = self._length + len(data)
        if end > len(self._map):  # past the message limit the connection enforces: not expected
            self._map.resize(max(end, 2 * len(self._map)))
        self._map[self._length : end] = data
        self._length = end

    def text(self) -> str:
        with memoryview(self._map) as whole, whole[: self._length] as written:
            return str(written, "utf-8")

    def data(self) -> bytes:
        return self._map[: self._length]

    def close(self) -> None:
        self._map.close()
