"""The files of one staged upload as columns: one table per upload, not one object per file.

A game may list 100 000 files. As one object each (with its path, hash, size and index objects
and its found digest) they took about 500 bytes a file, and their allocations stayed scattered
through Python's arenas after the upload: the Agent's peak for such a game was over 100 MiB
(docs/performance.md, ninth session). Here each fact is a column (an `array` of machine
integers, a `bytearray` of 32-byte digests, the paths in one string: `PathColumn`), about 130
bytes a file with its path, and no object per file.

`StagedFile` is a view of one row, made when asked for (`table[i]`, `table.find(path)`) and
dropped after use; it reads and writes the row's columns. Two views of the same row are equal.
Columns are written one item at a time, each by one thread at a time (see `UploadSession`):
every fact has a column of its own, so no two threads ever update the same byte.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ...protocol.envelope import ListedFile
from ...protocol.listing import DIGEST_BYTES, FileListing, ListedRow, RowViews
from ...protocol.path_column import PathColumn
from .filehash import FileHash
from .ranges import ByteRanges, Held

# A `held` item that means "see the file's ByteRanges" (a held prefix is never negative).
_GAPPED = -1
# A `carried_mtime` item that means "not carried" (an mtime_ns is an int64; none is this one).
_NOT_CARRIED = -(2**63)
# `program` items: not known yet (staged before a restart), no program header, a program header.
_PROGRAM_UNKNOWN, _NOT_A_PROGRAM, _A_PROGRAM = 0, 1, 2


class FileTable(RowViews["StagedFile"]):
    """Every file of an upload, in the order of its list (a file's index is its row)."""

    __slots__ = (
        "_carried_mtime",
        "_found",
        "_found_set",
        "_gapped",
        "_held",
        "_program",
        "_running",
        "_sealed",
        "_writes",
        "listing",
        "tree",
    )

    def __init__(self, tree: Path, files: Iterable[ListedFile]) -> None:
        self.tree = tree  # the staging tree the files live in
        # What the list said: a listing's columns are taken over as they are (init_upload's own,
        # read so from a long list: see protocol.listing), any other list is read into them.
        self._hold(files if isinstance(files, FileListing) else FileListing.of(files))

    def _hold(self, given: FileListing) -> None:
        """Take over `given`'s columns as they are, and make the rest, for no file yet held."""
        # Its own listing object on the same columns: the request's may be let go (`clear`).
        self.listing = FileListing(given.paths, given.sizes, given.given, given.given_set)
        count = len(given)
        # Bytes held and verified: a prefix [0, n) as n (what nearly every file has all along:
        # its chunks arrive in order), or _GAPPED with its ByteRanges in `_gapped`.
        self._held = array("q", bytes(8 * count))
        self._gapped: dict[int, ByteRanges] = {}
        # Carried over from the installed version (1): chunks for it are acknowledged but never
        # written, because a hard-linked file shares its data with the installed game.
        self._sealed = bytearray(count)
        self._carried_mtime = array("q", [_NOT_CARRIED]) * count  # its mtime when carried
        # Whether its first bytes mark a program (ELF, #!), noted when the chunk at offset 0 is
        # stored, so completion need not read it back.
        self._program = bytearray(count)
        self._writes = array("l", bytes(array("l").itemsize * count))  # write_chunk calls in flight
        # The whole-file hash: its state while bytes arrive (only files being written have one),
        # its 32 bytes once finished.
        self._running: dict[int, FileHash] = {}
        self._found = bytearray(DIGEST_BYTES * count)
        self._found_set = bytearray(count)

    @property
    def paths(self) -> PathColumn:
        return self.listing.paths

    @property
    def sizes(self) -> array[int]:
        return self.listing.sizes

    # --- the Sequence ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.listing.sizes)

    def _row(self, index: int) -> StagedFile:
        return StagedFile(self, index)

    def find(self, path: str) -> StagedFile | None:
        """The file listed at `path`, or None. Safe from another thread while the table is
        released: that replaces the columns, and this reads the path column once."""
        index = self.listing.paths.index_of(path)
        return None if index is None else StagedFile(self, index)

    # --- whole columns, for the steps that visit every file (a view per file costs more than
    # --- the step's own work in a game of many files) ----------------------------------------

    def is_complete(self, index: int) -> bool:
        held = self._held[index]
        if held == _GAPPED:
            return self._gapped[index].prefix_end() >= self.sizes[index]
        return held >= self.sizes[index]

    def incomplete_rows(self) -> Iterator[int]:
        """Rows whose bytes are not all held."""
        return (
            index
            for index, (held, size) in enumerate(zip(self._held, self.sizes, strict=True))
            if held < size and (held != _GAPPED or self._gapped[index].prefix_end() < size)
        )

    def sealed_rows(self) -> Iterator[int]:
        return (index for index, sealed in enumerate(self._sealed) if sealed)

    def carried_rows(self) -> Iterator[tuple[int, str, int, int | None]]:
        """(index, path, size, mtime when carried) of the files carried from the installed version."""
        for index in self.sealed_rows():
            mtime_ns = self._carried_mtime[index]
            yield index, self.paths[index], self.sizes[index], None if mtime_ns == _NOT_CARRIED else mtime_ns

    def found_digest(self, index: int) -> bytes | None:
        """The whole-file hash found for a file (see `StagedFile.settle_digest`), or None."""
        if not self._found_set[index]:
            return None
        return bytes(self._found[DIGEST_BYTES * index : DIGEST_BYTES * (index + 1)])

    def written_rows(self) -> Iterator[int]:
        """Rows not carried from the installed version (their bytes were written here)."""
        return (index for index, sealed in enumerate(self._sealed) if not sealed)

    def written_count(self) -> int:
        return len(self._sealed) - self._sealed.count(1)

    def held_prefixes(self) -> Iterator[tuple[str, int, int]]:
        """(path, size, end of the held run from offset 0) of every file."""
        for index, (path, size, held) in enumerate(zip(self.paths, self.sizes, self._held, strict=True)):
            yield path, size, (self._gapped[index].prefix_end() if held == _GAPPED else held)

    def tree_rows(self) -> Iterator[tuple[str, int, bool, bool | None]]:
        """(path, size, sealed, program) of every file (see `StagedFile.program`)."""
        programs = (None, False, True)
        return (
            (path, size, sealed == 1, programs[program])
            for path, size, sealed, program in zip(self.paths, self.sizes, self._sealed, self._program, strict=True)
        )

    def manifest_rows(self) -> Iterator[tuple[str, int, str | None]]:
        """(path, size, sha256) of every file as the manifest records it: the hash complete_upload
        found, or for a file carried from the installed version, the hash both lists agree on."""
        for index, (path, size) in enumerate(zip(self.paths, self.sizes, strict=True)):
            if self._sealed[index]:
                yield path, size, self.listing.given_hex(index)
            elif self._found_set[index]:
                yield path, size, self._found[DIGEST_BYTES * index : DIGEST_BYTES * (index + 1)].hex()
            else:
                yield path, size, StagedFile(self, index).finished_hexdigest()

    def release(self) -> None:
        """Let go of every row: an installed upload's table is no longer needed. Columns taken
        over from a request are let go, not emptied: a caller that keeps its request
        (`TransferService.init_upload(consume=False)`) still reads it whole."""
        self._hold(FileListing.of(()))


class StagedFile(ListedRow):
    """One file of a staged upload: a view of its row in the upload's `FileTable` (what the list
    said, `relative_path`, `size` and `sha256`, as a row of the table's listing)."""

    __slots__ = ("_table",)

    def __init__(self, table: FileTable, index: int) -> None:
        # ListedRow's two slots set here, not through super(): a view is made per chunk.
        self._listing = table.listing
        self.index = index
        self._table = table

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StagedFile) and other._table is self._table and other.index == self.index

    def __hash__(self) -> int:
        return hash((id(self._table), self.index))

    def __repr__(self) -> str:
        return f"StagedFile({self.index}, {self.relative_path!r}, {self.size})"

    # --- where it is -----------------------------------------------------------------------------

    @property
    def tree(self) -> Path:
        return self._table.tree

    @property
    def path(self) -> Path:
        """Where the file is staged."""
        return self._table.tree / self.relative_path

    @property
    def os_path(self) -> str:
        """`path` as a plain string, for the per-file steps of games of many files: a Path would
        intern the file's name (pathlib does), and the interned table never shrinks."""
        return os.path.join(self._table.tree, self.relative_path)

    # --- what is held -----------------------------------------------------------------------------

    @property
    def held(self) -> Held:
        """Bytes held and verified (see ranges.Held)."""
        value = self._table._held[self.index]
        return self._table._gapped[self.index] if value == _GAPPED else value

    @held.setter
    def held(self, held: Held) -> None:
        table = self._table
        if isinstance(held, int):
            table._held[self.index] = held
            table._gapped.pop(self.index, None)
        else:
            table._gapped[self.index] = held
            table._held[self.index] = _GAPPED

    @property
    def complete(self) -> bool:
        return self._table.is_complete(self.index)

    @property
    def sealed(self) -> bool:
        return bool(self._table._sealed[self.index])

    @sealed.setter
    def sealed(self, sealed: bool) -> None:
        self._table._sealed[self.index] = sealed

    @property
    def carried_mtime_ns(self) -> int | None:
        """The file's mtime when carried, to notice later edits; None when not carried."""
        value = self._table._carried_mtime[self.index]
        return None if value == _NOT_CARRIED else value

    @carried_mtime_ns.setter
    def carried_mtime_ns(self, mtime_ns: int | None) -> None:
        self._table._carried_mtime[self.index] = _NOT_CARRIED if mtime_ns is None else mtime_ns

    @property
    def program(self) -> bool | None:
        """Whether its first bytes mark a program; None when not known (staged before a restart)."""
        value = self._table._program[self.index]
        return None if value == _PROGRAM_UNKNOWN else value == _A_PROGRAM

    @program.setter
    def program(self, program: bool | None) -> None:
        self._table._program[self.index] = (
            _PROGRAM_UNKNOWN if program is None else _A_PROGRAM if program else _NOT_A_PROGRAM
        )

    @property
    def writes(self) -> int:
        """write_chunk calls for this file in flight."""
        return self._table._writes[self.index]

    @writes.setter
    def writes(self, count: int) -> None:
        self._table._writes[self.index] = count

    # --- the whole-file hash ----------------------------------------------------------------------

    @property
    def hash_state(self) -> FileHash | bytes | None:
        """The running hash, the finished digest, or None (never written, or forgotten)."""
        running = self._table._running.get(self.index)
        if running is not None:
            return running
        return self._found() if self._table._found_set[self.index] else None

    @property
    def digest(self) -> FileHash:
        """The running whole-file hash. Kept for every file written, also those listed without
        sha256: the Hub may send their hash with complete_upload, and the manifest needs it for
        incremental redeploys. Made on first use: a carried file never needs one."""
        table = self._table
        running = table._running.get(self.index)
        if running is not None:
            return running
        if table._found_set[self.index]:  # finished, and asked for again (a chunk re-sent)
            running = FileHash.finished(self.size, self._found())
            table._found_set[self.index] = 0
        else:
            running = FileHash(self.size)
        table._running[self.index] = running
        return running

    def finished_digest(self) -> bytes | None:
        """The whole-file hash once every byte is hashed in order (see FileHash); after
        complete_upload, the hash it found."""
        if self._table._found_set[self.index]:
            return self._found()
        return self.digest.finished_digest()

    def finished_hexdigest(self) -> str | None:
        digest = self.finished_digest()
        return None if digest is None else digest.hex()

    def settle_finished(self) -> None:
        """Once the hash is finished, keep its 32 bytes instead of the FileHash (about 100 bytes
        a file for the rest of the upload). Only when no other write of the file is in flight:
        such a write holds the FileHash and would mark it spoilt after this, unseen."""
        running = self._table._running.get(self.index)
        if running is not None and self.writes == 1:
            finished = running.finished_digest()
            if finished is not None:
                self.settle_digest(finished)

    def settle_digest(self, digest: bytes) -> None:
        """complete_upload found the file's hash: keep only its 32 bytes, not the state that made
        it. Only while no write of the file is in flight (the session is COMPLETING)."""
        table = self._table
        at = DIGEST_BYTES * self.index
        table._found[at : at + DIGEST_BYTES] = digest
        table._found_set[self.index] = 1
        table._running.pop(self.index, None)

    def forget_digest(self) -> None:
        """Its bytes changed: whatever was hashed, or found, no longer counts."""
        running = self._table._running.get(self.index)
        if running is not None:
            running.invalidate()
        self._table._found_set[self.index] = 0

    def _found(self) -> bytes:
        found = self._table.found_digest(self.index)
        assert found is not None  # asked for only where one was found
        return found


def as_listing(files: Sequence[ListedFile]) -> FileListing:
    """A list of files as columns (a live upload's table and a listing are already)."""
    if isinstance(files, FileTable):
        return files.listing
    return files if isinstance(files, FileListing) else FileListing.of(files)
