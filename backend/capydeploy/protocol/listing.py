"""An init_upload's file list as columns: what the Agent reads a long list into.

A game may list 100 000 files. Read as one `UploadFile` each (with its path, size and hash
objects) the list was about 300 bytes a file, and the objects that outlived the parse pinned the
memory of the rest: the Agent's peak for such a game was over 100 MiB (docs/performance.md, ninth
session). Here the paths are one string (`PathColumn`), the sizes an `array`, the hashes 32 bytes
each in a `bytearray`: about 70 bytes a file and no object per file. The Agent's staged upload
takes these columns over as they are (`agent.transfer.file_table`).

A `FileListing` is a sequence of `ListedRow`s, read-only views that have what every file of a
list has (`relative_path`, `size`, `sha256`: see `envelope.ListedFile`).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

from .path_column import PathColumn, PathColumnBuilder

DIGEST_BYTES = 32
RowT = TypeVar("RowT")


class ListedRow:
    """One file of a `FileListing`."""

    __slots__ = ("_listing", "index")

    def __init__(self, listing: FileListing, index: int) -> None:
        self._listing = listing
        self.index = index

    @property
    def relative_path(self) -> str:
        return self._listing.paths[self.index]

    @property
    def size(self) -> int:
        return self._listing.sizes[self.index]

    @property
    def sha256(self) -> str | None:
        """The whole-file hash listed for the file (lowercase hex), or None."""
        return self._listing.given_hex(self.index)

    def given_digest(self) -> bytes | None:
        return self._listing.given_digest(self.index)

    def __repr__(self) -> str:
        return f"ListedRow({self.relative_path!r}, {self.size}, {self.sha256!r})"


class RowViews(Sequence[RowT]):
    """A sequence of row views, each made when asked for (`_row`); `__len__` says how many rows."""

    __slots__ = ()

    def _row(self, index: int) -> RowT:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> RowT: ...
    @overload
    def __getitem__(self, index: slice) -> list[RowT]: ...
    def __getitem__(self, index: int | slice) -> RowT | list[RowT]:
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("file index out of range")
        return self._row(index)

    def __iter__(self) -> Iterator[RowT]:
        return (self._row(index) for index in range(len(self)))


class FileListing(RowViews[ListedRow]):
    """Paths, sizes and (where listed) whole-file hashes, in the list's order."""

    __slots__ = ("given", "given_set", "paths", "sizes")

    def __init__(self, paths: PathColumn, sizes: array[int], given: bytearray, given_set: bytearray) -> None:
        self.paths = paths
        self.sizes = sizes
        self.given = given  # 32 bytes a file: the listed sha256 ...
        self.given_set = given_set  # ... where one was listed (1)

    @classmethod
    def of(cls, files: Iterable[Any]) -> FileListing:
        """The listing of any files with `relative_path`, `size` and `sha256` (hex or None)."""
        builder = ListingBuilder()
        for entry in files:
            builder.add(entry.relative_path, entry.size, entry.sha256)
        return builder.finish()

    def __len__(self) -> int:
        return len(self.sizes)

    def _row(self, index: int) -> ListedRow:
        return ListedRow(self, index)

    def __eq__(self, other: object) -> bool:
        """Equal to any list of the same files in the same order (an `UploadFile` list too)."""
        if not isinstance(other, Sequence) or isinstance(other, str | bytes) or len(other) != len(self):
            return False
        return all(
            (row.relative_path, row.size, row.sha256) == (entry.relative_path, entry.size, entry.sha256)
            for row, entry in zip(self, other, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"FileListing({len(self)} files)"

    def triples(self) -> Iterator[tuple[str, int, str | None]]:
        """(relative_path, size, sha256 or None) of every file, in order."""
        for index, (path, size) in enumerate(zip(self.paths, self.sizes, strict=True)):
            yield path, size, self.given_hex(index)

    def index_of(self, path: str) -> int | None:
        return self.paths.index_of(path)

    def given_hex(self, index: int) -> str | None:
        """The sha256 listed for a file (lowercase hex), or None."""
        if not self.given_set[index]:
            return None
        return self.given[DIGEST_BYTES * index : DIGEST_BYTES * (index + 1)].hex()

    def given_digest(self, index: int) -> bytes | None:
        if not self.given_set[index]:
            return None
        return bytes(self.given[DIGEST_BYTES * index : DIGEST_BYTES * (index + 1)])

    def set_given(self, index: int, sha256: str) -> None:
        """A hash for a file listed without one (a resuming list may bring it: see
        `agent.transfer.session.adopt_hashes`)."""
        self.given[DIGEST_BYTES * index : DIGEST_BYTES * (index + 1)] = bytes.fromhex(sha256)
        self.given_set[index] = 1

    def clear(self) -> None:
        """Let go of the columns (whoever took them over keeps them: they are not emptied)."""
        self.paths = PathColumn(())
        self.sizes = array("q")
        self.given = bytearray()
        self.given_set = bytearray()


class ListingBuilder:
    """Collects a list's files one at a time (as the JSON reader meets them)."""

    __slots__ = ("_given", "_given_set", "_paths", "_sizes")

    def __init__(self) -> None:
        self._start_over()

    def _start_over(self) -> None:
        self._paths = PathColumnBuilder()
        self._sizes: array[int] = array("q")
        self._given = bytearray()
        self._given_set = bytearray()

    def __len__(self) -> int:
        return len(self._sizes)

    def add(self, relative_path: str, size: int, sha256: str | None) -> None:
        self._paths.add(relative_path)
        self._sizes.append(size)
        if sha256 is None:
            self._given += bytes(DIGEST_BYTES)
            self._given_set.append(0)
        else:
            self._given += bytes.fromhex(sha256)
            self._given_set.append(1)

    def finish(self) -> FileListing:
        """The listing; the path strings collected so far are let go."""
        listing = FileListing(self._paths.finish(), self._sizes, self._given, self._given_set)
        self._start_over()  # the columns are the listing's now
        return listing
