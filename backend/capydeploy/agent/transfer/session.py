"""One staged upload in memory: its files, which bytes are held and verified, and the work in flight."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import threading
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ...protocol.envelope import ListedFile
from ...protocol.listing import FileListing
from .file_table import FileTable, StagedFile, as_listing
from .filesystem import FileWriter
from .handles import HandleCache
from .in_place import FolderLook
from .journal import ChunkJournal
from .ranges import add_range, held_gaps, held_total, remove_range
from .staging import SessionRecord, StagingLayout

# (hub id, game name, install root, SHA-256 of the sorted (path, size) list)
Signature = tuple[str, str, str, bytes]

SORT_RUN = 4096  # rows sorted at a time (see _rows_by_path)


def upload_signature(hub_id: str, game_name: str, root: Path, files: Sequence[ListedFile]) -> Signature:
    """What must be equal for an init_upload to resume a staged upload (D6): hub, game, root, and
    the paths and sizes of the file list. Their `sha256` must also agree: see `hashes_fit`."""
    # A digest, not the list itself: a session keeps its signature for life, and the list of a game
    # of 20 000 files is about 1 MB. Paths hold no NUL (D6), so the encoding is unambiguous.
    listing = as_listing(files)
    digest = hashlib.sha256()
    paths, sizes = listing.paths, listing.sizes
    for row in _rows_by_path(listing):
        digest.update(f"{paths[row]}\0{sizes[row]}\0".encode())
    return (hub_id, game_name, str(root), digest.digest())


def _rows_by_path(listing: FileListing) -> Iterator[int]:
    """The rows in the order of their paths (unique in a list, D6), as short sorts merged: one
    sort of 100 000 holds the GIL, and so the Agent's event loop, for 35 ms and more (this runs
    in a worker), each run for 0.5 ms. Only row numbers are kept (an array a run), each path is
    made when it is compared: the sorted list of 100 000 (path, size) pairs was 18 MB."""
    paths = listing.paths
    runs = [
        array("l", sorted(range(start, min(start + SORT_RUN, len(listing))), key=paths.__getitem__))
        for start in range(0, len(listing), SORT_RUN)
    ]
    return heapq.merge(*runs, key=paths.__getitem__)


def hashes_fit(staged: Sequence[ListedFile], requested: Sequence[ListedFile]) -> bool:
    """Whether the hashes of a resuming file list agree with the staged upload's ("sha256 where
    given", D6). A file staged without a hash may now come with one: the Hub learnt it since (say,
    from a deploy of the same folder to another device), and completion checks the staged bytes
    against it. A file staged with a hash must come with the same one."""
    listing = as_listing(staged)  # by row, no dict of 100 000 hex strings
    for entry in requested:
        index = listing.index_of(entry.relative_path)
        if index is not None and listing.given_hex(index) not in (None, entry.sha256):
            return False
    return True


def adopt_hashes(session: UploadSession, requested: Sequence[ListedFile]) -> bool:
    """Take the hashes a resuming file list adds (see `hashes_fit`); True if the record changed."""
    changed = False
    listing = session.files.listing  # the record's list too
    for entry in requested:
        if entry.sha256 is None:
            continue
        index = listing.index_of(entry.relative_path)
        if index is not None and listing.given_hex(index) is None:
            listing.set_given(index, entry.sha256)
            changed = True
    return changed


class SessionState(Enum):
    PREPARING = "being prepared"  # init_upload is carrying files in
    ACTIVE = "active"
    COMPLETING = "being completed"
    CLOSED = "closed"


class InflightJobs:
    """Worker jobs still running for a session; they may outlive a caller that was cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: set[Future[Any]] = set()

    def track(self, future: Future[Any]) -> None:
        with self._lock:
            if future in self._jobs:  # a batch of small files' chunks shares one worker job
                return
            self._jobs.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._jobs.discard(future)

    async def wait(self) -> None:
        while True:
            with self._lock:
                pending = list(self._jobs)
            if not pending:
                return
            await asyncio.wait([asyncio.wrap_future(job) for job in pending])


@dataclass(frozen=True, slots=True)
class MissingFile:
    relative_path: str
    missing_bytes: int
    size: int
    gaps: list[tuple[int, int]]  # half-open [start, end) ranges not held


class UploadSession:
    """State of one staged upload; mutated only on the event loop.

    Built in a worker thread (it is O(files)); from then on only the loop changes it, except while
    it is PREPARING or COMPLETING, when the loop hands it to one worker job at a time.
    """

    def __init__(
        self, record: SessionRecord, layout: StagingLayout, writer: FileWriter, now: float, signature: Signature
    ) -> None:
        self.record = record
        self.layout = layout
        self.files = FileTable(layout.tree, record.files)
        record.files = self.files  # one table: the record lists the staged files
        self.total_bytes = sum(self.files.sizes)
        self.held_bytes = 0
        self.state = SessionState.ACTIVE
        self.current_row: int | None = None  # the file of the latest chunk
        self.last_active = now
        self.activity_written = now
        self.jobs = InflightJobs()
        self.handles = HandleCache(writer)
        self.journal: ChunkJournal | None = None
        # Made by the caller from the same list (init_upload's, or the record's after a restart):
        # made again here, its sorted copy of the list would add to the peak of a game of many files.
        self.signature = signature
        # Completed in place (see in_place): what the installed folder held at init_upload (every
        # file of the upload and nothing else); None for a usual upload.
        self.in_place: FolderLook | None = None
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def upload_id(self) -> str:
        return self.record.upload_id

    @property
    def hub_id(self) -> str:
        return self.record.hub_id

    @property
    def game_name(self) -> str:
        return self.record.game_name

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def target(self) -> Path:
        return self.layout.root / self.record.game_name

    @property
    def current_file(self) -> str:
        """The file of the latest chunk (its path made when asked for: progress, a few times a
        second, not every chunk)."""
        row = self.current_row
        paths = self.files.paths  # read once: an installed upload's table is released by a worker
        return "" if row is None or row >= len(paths) else paths[row]

    # --- counting held bytes ------------------------------------------------------------------

    def add_held(self, staged: StagedFile, start: int, end: int) -> int:
        staged.held, added = add_range(staged.held, start, end)
        self.held_bytes += added
        return added

    def drop_held(self, staged: StagedFile, start: int, end: int) -> None:
        staged.held, removed = remove_range(staged.held, start, end)
        self.held_bytes -= removed

    def reset_file(self, staged: StagedFile) -> None:
        """Forget everything about a file (its data is bad or gone)."""
        self.held_bytes -= held_total(staged.held)
        staged.held = 0
        staged.sealed = False
        staged.carried_mtime_ns = None
        staged.forget_digest()

    def resume_from(self) -> dict[str, int]:
        """Per file, the verified run from offset 0 the Hub may skip; only files with something to skip."""
        return {path: prefix for path, size, prefix in self.files.held_prefixes() if prefix > 0 or size == 0}

    def missing(self) -> list[MissingFile]:
        report: list[MissingFile] = []
        for index in self.files.incomplete_rows():
            staged = self.files[index]
            gaps = held_gaps(staged.held, staged.size)
            report.append(MissingFile(staged.relative_path, sum(e - s for s, e in gaps), staged.size, gaps))
        return report

    def release_files(self) -> None:
        """Free the per-file records of an installed upload (in a worker)."""
        self.files.release()  # also the record's list

    # --- calls in progress --------------------------------------------------------------------

    def enter(self) -> None:
        self._calls += 1
        self._idle.clear()

    def leave(self) -> None:
        self._calls -= 1
        if self._calls == 0:
            self._idle.set()

    async def quiesce(self) -> None:
        """Wait until no write_chunk call and no worker job of this session is running."""
        await self._idle.wait()
        await self.jobs.wait()
