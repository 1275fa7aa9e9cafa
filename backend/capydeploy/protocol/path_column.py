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
    starts: array[int]  # where row i starts; one more item: the end of the text plus one
    slots: array[int]  # row + 1 at each path's hash slot (linear probing), 0 where empty
    mask: int


_EMPTY = _Column("", array("q", [0]), array("i", [0]), 0)


class PathColumn:
    """Rows' paths, by row number (`column[i]`) and by path (`index_of`)."""

    __slots__ = ("_column",)

    def __init__(self, paths: Iterable[str]) -> None:
        listed = list(paths)  # the parse's own strings, for as long as this takes
        text = _SEPARATOR.join(listed) + _SEPARATOR if listed else ""
        starts = array("q", [0])
        position = 0
        for path in listed:
            position += len(path) + 1
            starts.append(position)
        size = 8
        while size < 2 * len(listed):
            size *= 2
        slots = array("i", bytes(array("i").itemsize * size))
        mask = size - 1
        for row, path in enumerate(listed):
            slot = hash(path) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = row + 1
        self._column = _Column(text, starts, slots, mask)

    def __len__(self) -> int:
        return len(self._column.starts) - 1

    def __getitem__(self, row: int) -> str:
        column = self._column
        return column.text[column.starts[row] : column.starts[row + 1] - 1]

    def __iter__(self) -> Iterator[str]:
        """Each path, made as it is reached (not 100 000 strings at once)."""
        text, starts, _, _ = self._column
        return (text[starts[row] : starts[row + 1] - 1] for row in range(len(starts) - 1))

    def index_of(self, path: str) -> int | None:
        """The row listing `path`, or None. Safe from a worker while the column is released: it
        reads one snapshot of the column."""
        column = self._column
        text, starts, slots, mask = column
        slot = hash(path) & mask
        while row := slots[slot]:
            row -= 1
            if text[starts[row] : starts[row + 1] - 1] == path:
                return row
            slot = (slot + 1) & mask
        return None

    def release(self) -> None:
        self._column = _EMPTY
