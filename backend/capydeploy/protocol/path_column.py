"""The paths of an upload's file list in one string, found by row number or by path.

A game may list 100 000 files. Kept as a string object each, the paths were the last objects per
file of a staged upload, and they pinned the memory of everything else the list's parse made:
made one after another, they were scattered through every arena of Python's allocator that the
parse filled, so none of it went back to the system (docs/performance.md, ninth session). Here
the paths are one string, and the lookup by path is an open-addressing table of row numbers in
an `array`: no object per file at all.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from typing import NamedTuple

_SEPARATOR = "\0"  # no path holds a NUL (D6)


class _Column(NamedTuple):
    text: str  # every path, each followed by the separator
    starts: array[int]  # where row i starts; one more item: the end of the text
    slots: array[int]  # row + 1 at each path's hash slot (linear probing), 0 where empty
    mask: int



class PathColumn:
    """Rows' paths, by row number (`column[i]`) and by path (`index_of`)."""

    __slots__ = ("_column",)
    _column: _Column

    def __init__(self, paths: Iterable[str]) -> None:
        builder = PathColumnBuilder()
        for path in paths:
            builder.add(path)
        self._column = builder.finish()._column

    @classmethod
    def _of(cls, text: str, starts: array[int]) -> PathColumn:
        """The column of `text` (each path followed by the separator) and its rows' `starts`."""
        rows = len(starts) - 1
        size = 8
        while size < 2 * rows:
            size *= 2
        slots = array("i", bytes(array("i").itemsize * size))
        mask = size - 1
        for row in range(rows):
            slot = hash(text[starts[row] : starts[row + 1] - 1]) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = row + 1
        column = cls.__new__(cls)
        column._column = _Column(text, starts, slots, mask)
        return column

    def __len__(self) -> int:
        return len(self._column.starts) - 1

    def __getitem__(self, row: int) -> str:
        column = self._column
        if row < 0:  # as a list counts from the end
            row += len(column.starts) - 1
            if row < 0:
                raise IndexError("row out of range")
        return column.text[column.starts[row] : column.starts[row + 1] - 1]

    def __iter__(self) -> Iterator[str]:
        """Each path, made as it is reached (not 100 000 strings at once)."""
        text, starts, _, _ = self._column
        return (text[starts[row] : starts[row + 1] - 1] for row in range(len(starts) - 1))

    def index_of(self, path: str) -> int | None:
        """The row listing `path` (the first, were it listed twice), or None."""
        text, starts, slots, mask = self._column
        slot = hash(path) & mask
        while row := slots[slot]:
            row -= 1
            if text[starts[row] : starts[row + 1] - 1] == path:
                return row
            slot = (slot + 1) & mask
        return None


JOIN_EVERY = 4096  # paths held as strings at most, before they are joined into the text


class PathColumnBuilder:
    """Takes paths one at a time (as a long list is read) and joins them a few thousand at a
    time: the strings of 100 000 paths were 8 MB more while the list was read."""

    __slots__ = ("_parts", "_pending", "_position", "_starts")

    def __init__(self) -> None:
        self._start_over()

    def _start_over(self) -> None:
        self._pending: list[str] = []
        self._parts: list[str] = []
        self._starts = array("q", [0])
        self._position = 0

    def add(self, path: str) -> None:
        self._pending.append(path)
        self._position += len(path) + 1
        self._starts.append(self._position)
        if len(self._pending) >= JOIN_EVERY:
            self._join_pending()

    def _join_pending(self) -> None:
        if self._pending:
            self._parts.append(_SEPARATOR.join(self._pending) + _SEPARATOR)
            self._pending = []

    def finish(self) -> PathColumn:
        self._join_pending()
        text = "".join(self._parts)
        column = PathColumn._of(text, self._starts)
        self._start_over()  # the text is the column's now
        return column
