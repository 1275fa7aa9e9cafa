"""A set of byte ranges of one file: which bytes are held, counted once however often they arrive."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import cast

# The bounds of a set that holds nothing: shared, so an empty set costs no lists. A set of one
# interval keeps its bounds as tuples (48 bytes against 176 for two lists); lists are made only
# when a second interval comes. (A staged file has a set only while its bytes have gaps: `Held`.)
_NONE_HELD: tuple[int, ...] = ()
_FROM_ZERO: tuple[int, ...] = (0,)


class ByteRanges:
    """Sorted, merged half-open intervals `[start, end)`.

    Chunks may arrive in any order and be re-sent; `add` returns only the bytes that were not
    already held, so progress totals never count a byte twice.
    """

    __slots__ = ("_ends", "_starts", "_total")

    def __init__(self) -> None:
        self._starts: list[int] | tuple[int, ...] = _NONE_HELD
        self._ends: list[int] | tuple[int, ...] = _NONE_HELD
        self._total = 0

    @property
    def total(self) -> int:
        """How many bytes are held."""
        return self._total

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def add(self, start: int, end: int) -> int:
        """Mark `[start, end)` held; return how many of those bytes were new."""
        if end <= start:
            return 0
        if not self._starts:
            self._starts = _FROM_ZERO if start == 0 else (start,)
            self._ends = (end,)
            self._total = end - start
            return end - start
        # Fast path: chunks that arrive in order extend the last interval.
        if start == self._ends[-1]:
            if isinstance(self._ends, tuple):
                self._ends = (end,)
            else:
                self._ends[-1] = end
            self._total += end - start
            return end - start
        starts, ends = self._lists()
        # Intervals i..j-1 overlap or touch [start, end].
        i = bisect_left(ends, start)
        j = bisect_right(starts, end)
        if i == j:
            starts.insert(i, start)
            ends.insert(i, end)
            self._total += end - start
            return end - start
        covered = 0
        for k in range(i, j):
            overlap = min(ends[k], end) - max(starts[k], start)
            if overlap > 0:
                covered += overlap
        new_start = min(start, starts[i])
        new_end = max(end, ends[j - 1])
        starts[i:j] = [new_start]
        ends[i:j] = [new_end]
        added = (end - start) - covered
        self._total += added
        return added

    def remove(self, start: int, end: int) -> int:
        """Forget `[start, end)`; return how many held bytes were dropped."""
        if end <= start:
            return 0
        i = bisect_right(self._ends, start)  # first interval ending after start
        j = bisect_left(self._starts, end)  # first interval starting at or after end
        if i >= j:
            return 0
        starts, ends = self._lists()
        removed = 0
        new_starts: list[int] = []
        new_ends: list[int] = []
        for k in range(i, j):
            s, e = starts[k], ends[k]
            removed += min(e, end) - max(s, start)
            if s < start:
                new_starts.append(s)
                new_ends.append(start)
            if e > end:
                new_starts.append(end)
                new_ends.append(e)
        starts[i:j] = new_starts
        ends[i:j] = new_ends
        self._total -= removed
        return removed

    def _lists(self) -> tuple[list[int], list[int]]:
        """The bounds as lists, to change them in place."""
        if isinstance(self._starts, tuple):
            self._starts, self._ends = list(self._starts), list(self._ends)
        return self._starts, cast(list[int], self._ends)

    def clear(self) -> None:
        self._starts = self._ends = _NONE_HELD
        self._total = 0

    def prefix_end(self) -> int:
        """End of the held run that starts at offset 0 (0 when byte 0 is missing)."""
        if self._starts and self._starts[0] == 0:
            return self._ends[0]
        return 0

    def covers(self, start: int, end: int) -> bool:
        """True when every byte of `[start, end)` is held."""
        if end <= start:
            return True
        k = bisect_right(self._starts, start) - 1
        return k >= 0 and self._ends[k] >= end

    def missing(self, size: int) -> list[tuple[int, int]]:
        """The gaps of `[0, size)` that are not held."""
        gaps: list[tuple[int, int]] = []
        cursor = 0
        for s, e in zip(self._starts, self._ends, strict=True):
            if s >= size:
                break
            if s > cursor:
                gaps.append((cursor, s))
            cursor = max(cursor, e)
        if cursor < size:
            gaps.append((cursor, size))
        return gaps


# What a staged file holds: an int n when that is exactly bytes [0, n) (0: nothing), what nearly
# every file of an upload has all along (its chunks arrive in order), for no object beyond the
# int; a ByteRanges only while there are gaps. A game may list 100 000 files, and one ByteRanges
# with its bounds was about 170 bytes a file at the Agent's peak.
Held = int | ByteRanges


def add_range(held: Held, start: int, end: int) -> tuple[Held, int]:
    """`held` with `[start, end)` added, and how many of those bytes were new."""
    if end <= start:
        return held, 0
    if isinstance(held, int):
        if start <= held:  # touches or overlaps the prefix: still a prefix
            return (end, end - held) if end > held else (held, 0)
        ranges = ByteRanges()
        ranges.add(0, held)
        added = ranges.add(start, end)
        return _simplified(ranges), added
    added = held.add(start, end)
    return _simplified(held), added


def remove_range(held: Held, start: int, end: int) -> tuple[Held, int]:
    """`held` without `[start, end)`, and how many held bytes were dropped."""
    if end <= start:
        return held, 0
    if isinstance(held, int):
        if start >= held:
            return held, 0
        if end >= held:  # cuts the prefix's tail
            return start, held - start
        ranges = ByteRanges()
        ranges.add(0, held)
        return ranges, ranges.remove(start, end)
    removed = held.remove(start, end)
    return _simplified(held), removed


def held_total(held: Held) -> int:
    return held if isinstance(held, int) else held.total


def held_prefix(held: Held) -> int:
    """End of the held run that starts at offset 0."""
    return held if isinstance(held, int) else held.prefix_end()


def held_gaps(held: Held, size: int) -> list[tuple[int, int]]:
    """The gaps of `[0, size)` that are not held."""
    if isinstance(held, int):
        return [(held, size)] if held < size else []
    return held.missing(size)


def _simplified(ranges: ByteRanges) -> Held:
    """A set that is one run from offset 0 (or empty) becomes its int again."""
    total = ranges.total
    return total if ranges.prefix_end() == total else ranges
