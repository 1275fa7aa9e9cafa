"""One staged upload in memory: its files, which bytes are held and verified, and the work in flight."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ...protocol.envelope import ListedFile
from .filehash import FileHash
from .filesystem import FileWriter
from .handles import HandleCache
from .journal import ChunkJournal
from .ranges import Held, add_range, held_gaps, held_prefix, held_total, remove_range
from .staging import SessionRecord, StagingLayout

# (hub id, game name, install root, SHA-256 of the sorted (path, size) list)
Signature = tuple[str, str, str, bytes]

SORT_RUN = 4096  # items sorted at a time (see _sorted_in_runs)
RELEASE_BATCH = 500  # per-file records freed at a time (see UploadSession.release_files)


def upload_signature(hub_id: str, game_name: str, root: Path, files: Sequence[ListedFile]) -> Signature:
    """What must be equal for an init_upload to resume a staged upload (D6): hub, game, root, and
    the paths and sizes of the file list. Their `sha256` must also agree: see `hashes_fit`."""
    # A digest, not the list itself: a session keeps its signature for life, and the list of a game
    # of 20 000 files is about 1 MB. Paths hold no NUL (D6), so the encoding is unambiguous.
    listing = hashlib.sha256()
    for path, size in _sorted_in_runs([(f.relative_path, f.size) for f in files]):
        listing.update(f"{path}\0{size}\0".encode())
    return (hub_id, game_name, str(root), listing.digest())


def _sorted_in_runs(items: list[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    """`sorted(items)`, as short sorts merged: one sort of 100 000 items holds the GIL, and so the
    Agent's event loop, for 35 ms and more (this runs in a worker); each run holds it for 0.5 ms."""
    runs = [sorted(items[start : start + SORT_RUN]) for start in range(0, len(items), SORT_RUN)]
    return heapq.merge(*runs)


def hashes_fit(staged: Sequence[ListedFile], requested: Sequence[ListedFile]) -> bool:
    """Whether the hashes of a resuming file list agree with the staged upload's ("sha256 where
    given", D6). A file staged without a hash may now come with one: the Hub learnt it since (say,
    from a deploy of the same folder to another device), and completion checks the staged bytes
    against it. A file staged with a hash must come with the same one."""
    known = {f.relative_path: f.sha256 for f in staged}
    return all(known.get(f.relative_path) in (None, f.sha256) for f in requested)


def adopt_hashes(session: UploadSession, requested: Sequence[ListedFile]) -> bool:
    """Take the hashes a resuming file list adds (see `hashes_fit`); True if the record changed."""
    given = {f.relative_path: f.sha256 for f in requested if f.sha256 is not None}
    changed = False
    for staged in session.files:  # they are the record's list too
        digest = given.get(staged.relative_path)
        if staged.sha256 is None and digest is not None:
            staged.sha256 = digest
            changed = True
    return changed


class SessionState(Enum):
    PREPARING = "being prepared"  # init_upload is carrying files in
    ACTIVE = "active"
    COMPLETING = "being completed"
    CLOSED = "closed"


@dataclass(eq=False, slots=True)
class StagedFile:
    index: int
    relative_path: str
    size: int
    sha256: str | None
    tree: Path  # the staging tree this file lives in
    held: Held = 0  # bytes held and verified (see ranges.Held)
    # Carried over from the installed version: chunks for it are acknowledged but never written,
    # because a hard-linked file shares its data with the installed game.
    sealed: bool = False
    carried_mtime_ns: int | None = None  # the file's mtime when carried, to notice later edits
    # Whether its first bytes mark a program (ELF, #!), noted when the chunk at offset 0 is
    # stored, so completion need not read it back; None when not known (staged before a restart).
    program: bool | None = None
    writes: int = 0  # write_chunk calls for this file in flight
    # The whole-file hash: its state while bytes arrive, its 32 bytes once finished (see
    # `settle_finished`), None before the first chunk or once complete_upload has settled it.
    _digest: FileHash | bytes | None = None

    @property
    def digest(self) -> FileHash:
        """The running whole-file hash. Kept for every file written, also those listed without
        sha256: the Hub may send their hash with complete_upload, and the manifest needs it for
        incremental redeploys. Made on first use: a carried file never needs one (nor its ~100
        bytes, for each of up to 100 000 files)."""
        digest = self._digest
        if isinstance(digest, FileHash):
            return digest
        if isinstance(digest, bytes):  # finished, and asked for again (a chunk re-sent)
            self._digest = FileHash.finished(self.size, digest)
        else:
            self._digest = FileHash(self.size)
        return self._digest

    def finished_digest(self) -> bytes | None:
        """The whole-file hash once every byte is hashed in order (see FileHash); after
        complete_upload, the hash it found."""
        if isinstance(self._digest, bytes):
            return self._digest
        return self.digest.finished_digest()

    def finished_hexdigest(self) -> str | None:
        digest = self.finished_digest()
        return None if digest is None else digest.hex()

    def settle_finished(self) -> None:
        """Once the hash is finished, keep its 32 bytes instead of the FileHash (about 100 bytes
        a file for the rest of the upload: most files of a game of many files are written in one
        chunk). Only when no other write of the file is in flight: such a write holds the
        FileHash and would mark it spoilt after this, unseen."""
        digest = self._digest
        if self.writes == 1 and isinstance(digest, FileHash):
            finished = digest.finished_digest()
            if finished is not None:
                self._digest = finished

    def settle_digest(self, digest: bytes) -> None:
        """complete_upload found the file's hash: keep only its 32 bytes, not the state that made
        it (about 100 bytes a file through the install, the Agent's peak). Only while no write of
        the file is in flight (the session is COMPLETING)."""
        self._digest = digest

    def forget_digest(self) -> None:
        """Its bytes changed: whatever was hashed, or found, no longer counts."""
        if isinstance(self._digest, FileHash):
            self._digest.invalidate()
        else:
            self._digest = None

    @property
    def path(self) -> Path:
        """Where the file is staged; built when asked for, not kept (a few microseconds a call,
        against about 200 bytes for each of up to 100 000 files)."""
        return self.tree / self.relative_path

    @property
    def os_path(self) -> str:
        """`path` as a plain string, for the per-file steps of games of many files: a Path would
        intern the file's name (pathlib does), and the interned table never shrinks."""
        return os.path.join(self.tree, self.relative_path)

    @property
    def complete(self) -> bool:
        return held_prefix(self.held) >= self.size


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


def staged_files(tree: Path, files: Sequence[ListedFile]) -> list[StagedFile]:
    return [
        StagedFile(
            index=index,
            relative_path=entry.relative_path,
            size=entry.size,
            sha256=entry.sha256,
            tree=tree,
        )
        for index, entry in enumerate(files)
    ]


class UploadSession:
    """State of one staged upload; mutated only on the event loop.

    Built in a worker thread (it is O(files)); from then on only the loop changes it, except while
    it is PREPARING or COMPLETING, when the loop hands it to one worker job at a time.
    """

    def __init__(self, record: SessionRecord, layout: StagingLayout, writer: FileWriter, now: float) -> None:
        self.record = record
        self.layout = layout
        self.files = staged_files(layout.tree, record.files)
        record.files = self.files  # one object per file: the record lists the staged files
        self.by_path = {f.relative_path: f for f in self.files}
        self.total_bytes = sum(f.size for f in self.files)
        self.held_bytes = 0
        self.state = SessionState.ACTIVE
        self.current_file = ""
        self.last_active = now
        self.activity_written = now
        self.jobs = InflightJobs()
        self.handles = HandleCache(writer)
        self.journal: ChunkJournal | None = None
        self.signature = upload_signature(record.hub_id, record.game_name, layout.root, record.files)
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

    # --- counting held bytes ------------------------------------------------------------------

    def add_held(self, staged: StagedFile, start: int, end: int) -> int:
        if end == staged.size:
            end = staged.size  # the int the file already has: a complete file keeps no other
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
        resume: dict[str, int] = {}
        for staged in self.files:
            prefix = held_prefix(staged.held)
            if prefix > 0 or staged.size == 0:
                resume[staged.relative_path] = prefix
        return resume

    def missing(self) -> list[MissingFile]:
        report: list[MissingFile] = []
        for staged in self.files:
            if staged.complete:
                continue
            gaps = held_gaps(staged.held, staged.size)
            report.append(MissingFile(staged.relative_path, sum(e - s for s, e in gaps), staged.size, gaps))
        return report

    def release_files(self) -> None:
        """Free the per-file records of an installed upload, a batch at a time (in a worker).

        Freeing a game of 20 000 files' records in one go is one long chain of deallocations
        that holds the GIL, so the event loop, for about 100 ms; between batches other threads
        get their turn.
        """
        self.by_path = {}
        files = self.files  # also the record's list
        while files:
            del files[-RELEASE_BATCH:]

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
