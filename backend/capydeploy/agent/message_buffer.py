"""Where the fragments of a long message are joined, and the message decoded.

A Hub sends a long message (the file list of a game of many files, up to 10 MiB) in fragments of
256 Ki characters. Kept in a list and joined at the end, the fragments and the joined copy
existed at once (twice the message), and the fragments were 10 MB of malloc's heap, freed once
joined but left resident below what the upload made next. Here each fragment is copied into an
anonymous memory mapping as it arrives and dropped (malloc reuses its block for the next one),
and the text is decoded from the mapping a piece at a time, each piece's pages handed back as it
is read: the message exists about once.
"""

from __future__ import annotations

import codecs
import mmap

DECODE_PIECE = 2 * 1024 * 1024 + mmap.PAGESIZE  # whole pages; the first piece's text is mmapped by malloc


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
        """The message as text (once: its pages are handed back as they are decoded). Each
        piece is appended to the text in place (CPython grows a str it holds the only reference
        to), so the text is never copied, except once if a piece needs wider characters."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        text = ""
        with memoryview(self._map) as whole:
            for start in range(0, self._length, DECODE_PIECE):
                end = min(start + DECODE_PIECE, self._length)
                with whole[start:end] as piece:
                    text += decoder.decode(piece, final=end == self._length)
                self._map.madvise(mmap.MADV_DONTNEED, start, end - start)
        return text + decoder.decode(b"", final=True)  # an empty message

    def data(self) -> bytes:
        return self._map[: self._length]

    def close(self) -> None:
        self._map.close()
