"""The Agent's upload engine (D6) as a plain class: init, chunks, complete, cancel, expiry, game removal.

No sockets here: the connection layer calls these coroutines and turns `ProtocolError` into error
replies. All disk work (writes, hashing, fsync, copies, deletes) runs on a small thread pool owned by
the service, so the event loop it shares with the UI never waits on the disk.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import logging
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ...memory import return_free_heap
from ...protocol.constants import CHUNK_SIZE, SHA256_MISMATCH, STAGING_TTL, UPLOAD_INCOMPLETE
from ...protocol.envelope import ListedFile
from ...protocol.errors import ErrorCode, ProtocolError
from ...protocol.frames import ChunkFrame
from ...protocol.listing import FileListing
from ...protocol.messages import InitUpload, UploadChunkResponse, UploadInitResponse
from ...protocol.paths import RESERVED_NAMES, PathRuleError, validate_absolute_path, validate_game_name
from .batching import BatchedJobs
from .file_table import FileTable, StagedFile, as_listing
from .filehash import FileHash, HashClaim, Hasher, hash_bytes_after, hash_disk_after
from .filesystem import (
    MAX_PATH_BYTES,
    FileWriter,
    OsFileWriter,
    allocated_bytes,
    disk_free_bytes,
    is_inside,
    read_exactly,
    remove_path,
    write_all,
)
from .found_digests import FoundDigests
from .in_place import FolderLook, all_recorded, carry_plan_since, look_at, settle_modes_in_place
from .incremental import CarryPlan, CarryResult, carry_file, carry_items, plan_carry
from .install import (
    SwapState,
    delete_installed,
    finalize_tree,
    looks_like_program,
    recover_install,
    remove_staging,
    swap_into_place,
    trash_staging,
)
from .journal import ChunkJournal, ChunkRecord
from .keep import catch_up_after_swap, keep_what_the_game_wrote, ours_among
from .manifest import (
    manifest_entries,
    publish_manifest,
    put_manifest_back,
    read_manifest_matches,
    remove_manifest,
    set_manifest_aside,
    stage_manifest,
)
from .ranges import held_prefix, held_total
from .resume import load_staged_session
from .session import (
    MissingFile,
    SessionState,
    Signature,
    UploadSession,
    adopt_hashes,
    hashes_fit,
    upload_signature,
)
from .staging import (
    AGENT_DIR_NAME,
    SessionRecord,
    StagingLayout,
    list_staged_ids,
    new_upload_id,
    read_activity,
    read_session_record,
    trash_dir,
    write_activity,
    write_session_record,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

WORKER_THREADS = 4
# How much lower than the event loop the disk and hash workers run (see _yield_to_the_loop).
WORKER_NICENESS = 5
# The staged upload's activity time goes to disk at most this often (for the expiry after a restart).
ACTIVITY_WRITE_INTERVAL = 60.0
# How far one chunk may make the whole-file hash catch up by reading back from disk.
CATCH_UP_CHUNKS = 8
# A chunk that is a whole file of at most this size is stored in a batch with others like it (see
# batching.py): its own work is smaller than a thread hand-off.
SMALL_FILE_BYTES = 64 * 1024
# Each time a file's writes cross a multiple of this, the block before is handed to the disk, so
# the fsync at completion finds little left to write instead of the whole game.
WRITEBACK_BLOCK = 8 * 1024 * 1024
MISSING_FILES_LISTED = 5
MISSING_RANGES_LISTED = 3


@dataclass(frozen=True, slots=True)
class InstalledGame:
    game_name: str
    path: Path
    executable: Path | None
    file_count: int
    total_bytes: int
    # Whole-file hashes of the files the Hub gave none for: it may keep them (`result_sha256`).
    found_sha256: FoundDigests = field(default_factory=FoundDigests)


@dataclass(frozen=True, slots=True)
class UploadProgressInfo:
    upload_id: str
    hub_id: str
    game_name: str
    current_file: str
    transferred_bytes: int
    total_bytes: int

    @property
    def percentage(self) -> float:
        return 100.0 * self.transferred_bytes / self.total_bytes if self.total_bytes else 100.0


@dataclass(slots=True)
class _Dormant:
    """A staged upload found on disk after a restart; loaded (and re-verified) only when resumed."""

    layout: StagingLayout
    record: SessionRecord
    touched_at: float
    signature: Signature


@dataclass(frozen=True, slots=True)
class _ChunkWrite:
    staged: StagedFile
    offset: int
    data: memoryview
    checksum: str | None
    touch: float | None  # record activity on disk at this time, along with the chunk
    hash_job: Future[Hasher] | None  # this chunk's node of the whole-file hash chain
    # The chunk is the whole file and starts its hash chain: its own hash is the file's (no node).
    whole_file: bool = False


@dataclass(frozen=True, slots=True)
class _ScanResult:
    dormant: list[_Dormant]
    leftovers: list[StagingLayout]  # staging folders with nothing to resume


class TransferService:
    """Receives uploads from hubs and installs them; one instance per Agent."""

    def __init__(
        self,
        install_dir: Path,
        allowed_roots: Sequence[Path] | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
        staging_ttl: float = STAGING_TTL,
        clock: Callable[[], float] = time.time,
        filesystem: FileWriter | None = None,
        free_space: Callable[[Path], int] | None = None,
    ) -> None:
        self._install_dir = Path(install_dir)
        roots = list(allowed_roots) if allowed_roots is not None else [self._install_dir]
        self._allowed_roots = [Path(os.path.realpath(root)) for root in roots]
        self.chunk_size = chunk_size
        self._staging_ttl = staging_ttl
        self._clock = clock
        self._writer: FileWriter = filesystem if filesystem is not None else OsFileWriter()
        self._free_space = free_space if free_space is not None else disk_free_bytes
        self._pool = ThreadPoolExecutor(
            max_workers=WORKER_THREADS, thread_name_prefix="capydeploy-transfer", initializer=_yield_to_the_loop
        )
        # Small files' chunks, stored a batch per worker job (see batching.py).
        self._small_files = BatchedJobs(lambda job: self._submit(None, job))
        # Whole-file hash chains run here, one node after another (see filehash.py).
        self._hash_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="capydeploy-hash", initializer=_yield_to_the_loop
        )
        self._sessions: dict[str, UploadSession] = {}
        self._dormant: dict[str, _Dormant] = {}
        self._leftovers: set[StagingLayout] = set()
        self._scanned: set[Path] = set()
        self._known_roots: set[Path] = set(self._allowed_roots)
        self._lock = asyncio.Lock()
        self._latest: UploadSession | None = None
        # complete_upload jobs by (hubId, uploadId), owned here so that a caller cancelled (a
        # dropped connection, a timeout) never interrupts one.
        self._completing: dict[tuple[str, str], asyncio.Task[InstalledGame]] = {}
        self._closed = False
        # Worker jobs running, and when the last one ended (see idle_seconds); touched by workers.
        self._jobs_lock = threading.Lock()
        self._jobs_running = 0
        self._last_job_end = time.monotonic()

    # --- public API ---------------------------------------------------------------------------

    def resolve_install_root(self, install_path: str | None) -> Path:
        """The folder a game goes into: `installPath` resolved (symlinks followed) inside an allowed root."""
        if install_path is None:
            candidate = self._install_dir
            shown = str(self._install_dir)
        else:
            try:
                validate_absolute_path(install_path, "installPath")
            except PathRuleError as exc:
                raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc)) from None
            candidate = Path(install_path)
            shown = install_path
        resolved = Path(os.path.realpath(candidate))
        for root in self._allowed_roots:
            if not is_inside(resolved, root):
                continue
            if any(part in RESERVED_NAMES for part in resolved.relative_to(root).parts):
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST, f"installPath {shown!r} is inside the Agent's own folder"
                )
            if resolved.exists() and not resolved.is_dir():
                raise ProtocolError(ErrorCode.BAD_REQUEST, f"installPath {shown!r} is not a folder")
            return resolved
        allowed = ", ".join(str(root) for root in self._allowed_roots)
        via = f" (it resolves to {resolved})" if str(resolved) != shown else ""
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"installPath {shown} is outside the allowed install roots{via}; allowed: {allowed}",
        )

    async def init_upload(self, hub_id: str, request: InitUpload, *, consume: bool = False) -> UploadInitResponse:
        """Start or resume a staged upload; nothing is written unless the request is accepted.

        `consume`: the caller will not read `request.files` again, so it is emptied once the
        session lists the files (100 000 entries need not wait for the carry and the reply)."""
        self._check_open()
        game_name = request.config.game_name
        root = self.resolve_install_root(request.config.install_path)
        target = root / game_name
        self._check_target(root, target)
        # Everything O(files) runs in a worker: a game may list 100 000 files.
        files = await self._run(None, as_listing, request.files)  # a long list is already (protocol.listing)
        await self._run(None, self._check_path_lengths, root, game_name, files)
        async with self._lock:
            # Idle write buffers (megabytes) need not sit through the planning of a long list.
            self._writer.release_buffers()
            await self._scan_root(root)
            signature = await self._run(None, upload_signature, hub_id, game_name, root, files)
            session = await self._find_resumable(signature, files)
            if session is not None:
                session.state = SessionState.PREPARING  # no chunk may land while we plan and carry
            try:
                response = await self._accept(
                    hub_id, request, files, root, session, signature=signature, consume=consume
                )
                # The list's reading and planning freed megabytes all over malloc's heap (a game
                # of 100 000 files: 5 MB kept resident through the whole transfer otherwise).
                await self._run(None, return_free_heap)
                return response
            finally:
                if session is not None and session.state is SessionState.PREPARING:
                    session.state = SessionState.ACTIVE

    async def _accept(
        self,
        hub_id: str,
        request: InitUpload,
        files: FileListing,
        root: Path,
        session: UploadSession | None,
        *,
        signature: Signature,
        consume: bool,
    ) -> UploadInitResponse:
        """The rest of init_upload, under the lock: plan, check space, then (only then) write."""
        game_name = request.config.game_name
        layout = session.layout if session is not None else StagingLayout(root, new_upload_id())
        plan, need, in_place = await self._run(None, _plan_upload, session, layout, game_name, files)
        stale_sessions, stale_dormant = self._stale(hub_id, game_name, root, session)
        await self._check_space(root, need, stale_sessions, stale_dormant)

        # Accepted: from here on the disk changes.
        for stale in stale_sessions:
            await self._discard(stale)
        for dormant in stale_dormant:
            await self._discard_dormant(dormant)
        resumed = session is not None
        if session is None:
            session = await self._create_session(hub_id, request, files, layout, signature)
            session.state = SessionState.PREPARING
        try:
            # Hashes the Hub has learnt since it staged this upload (hashes_fit let it resume).
            # (A new upload's table was made from this very list: nothing to add.)
            hashes_added = resumed and await self._run(session, adopt_hashes, session, files)
            if consume:
                request.files.clear()  # the session lists these files now
            if session.record.executable != request.config.executable or hashes_added:
                session.record.executable = request.config.executable
                await self._run(session, write_session_record, session.layout, session.record)
            if in_place is not None:
                await self._run(session, _hold_in_place, session, in_place)
            elif resumed and session.in_place is not None:
                await self._keep_in_place(session)  # the Hub is back: has the folder changed since?
            elif plan:
                await self._carry(session, plan)
            now = self._clock()
            session.last_active = now
            if now != session.activity_written:
                session.activity_written = now
                await self._run(session, write_activity, session.layout, now)
            resume = await self._run(session, session.resume_from)
        finally:
            if session.state is SessionState.PREPARING:
                session.state = SessionState.ACTIVE
        self._latest = session
        log.info(
            "upload %s of %r from hub %s: %d of %d bytes already held",
            session.upload_id,
            game_name,
            hub_id,
            session.held_bytes,
            session.total_bytes,
        )
        # Built without validation: every value is ours, and `resume` maps the session's paths
        # (checked by this init_upload) to byte counts. Validating 20 000 of them took 22 ms on
        # the event loop, 100 000 over 100 ms.
        return UploadInitResponse.model_construct(
            upload_id=session.upload_id, chunk_size=self.chunk_size, resume_from=resume or None
        )

    async def write_chunk(self, hub_id: str, frame: ChunkFrame) -> UploadChunkResponse:
        """Verify one chunk's checksum and write it at its offset (any order, re-sends allowed)."""
        header = frame.header
        session = self._session_of(hub_id, header.upload_id)
        if session.state is not SessionState.ACTIVE:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"upload {header.upload_id} is {session.state.value}")
        staged = session.files.find(header.file_path)
        if staged is None:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"file {header.file_path!r} is not part of this upload"
            )
        length = len(frame.data)
        if length > self.chunk_size:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"chunk of {length} bytes is larger than the chunk size {self.chunk_size}",
            )
        if header.offset + length > staged.size:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"chunk at offset {header.offset} with {length} bytes is outside {staged.relative_path!r} "
                f"({staged.size} bytes)",
            )
        session.enter()
        try:
            await self._write(session, staged, header.offset, frame.data, header.checksum)
        finally:
            session.leave()
        return UploadChunkResponse(
            upload_id=session.upload_id, bytes_written=length, total_written=session.held_bytes
        )

    async def complete_upload(
        self, hub_id: str, upload_id: str, sha256: Mapping[str, str] | None = None
    ) -> InstalledGame:
        """Check every byte, make it durable and swap it into `<installRoot>/<gameName>`.

        `sha256` holds whole-file hashes the Hub computed while sending (extension
        `complete_sha256`), for files its init_upload listed without one.

        Cancellation-safe: the work runs as a job of the service, which a cancelled caller leaves
        running. A second call for the same upload (a Hub back after a reconnect) waits for that
        job and gets its result; once the job is over, the installed upload is unknown (404).
        """
        self._check_open()
        key = (hub_id, upload_id)
        job = self._completing.get(key)
        if job is None:
            self._session_of(hub_id, upload_id)  # an unknown upload is 404 at once, not after a wait
            job = asyncio.ensure_future(self._complete(hub_id, upload_id, sha256))
            self._completing[key] = job
            job.add_done_callback(functools.partial(self._completion_done, key))
        return await asyncio.shield(job)

    async def _complete(
        self, hub_id: str, upload_id: str, sha256: Mapping[str, str] | None
    ) -> InstalledGame:
        async with self._lock:
            session = self._session_of(hub_id, upload_id)
            if session.state is not SessionState.ACTIVE:
                raise ProtocolError(ErrorCode.BAD_REQUEST, f"upload {upload_id} is {session.state.value}")
            session.state = SessionState.COMPLETING
            try:
                await session.quiesce()
                # Nothing of this upload writes any more: its idle write buffers need not sit
                # through the checks and the install (the peak of a game of many files).
                self._writer.release_buffers()
                claimed = sha256 or {}
                if session.in_place is not None:
                    await self._run(session, _check_claimed_digests, session, claimed)
                    installed = await self._complete_in_place(session, claimed)
                    if installed is not None:
                        self._forget(session)
                        log.info("installed %r in %s: nothing had changed, it stayed in place", installed.game_name, installed.path)
                        return installed
                await self._recheck_carried(session)
                missing = await self._run(session, session.missing)
                if missing:
                    raise ProtocolError(ErrorCode.BAD_REQUEST, _describe_missing(missing))
                await self._run(session, _check_claimed_digests, session, claimed)
                found = await self._verify_digests(session, claimed)
                installed = await self._install_to_the_end(session, self._install, session, found)
            except BaseException:
                if session.state is SessionState.COMPLETING:
                    session.state = SessionState.ACTIVE
                raise
            self._forget(session)
            log.info("installed %r in %s", installed.game_name, installed.path)
            return installed

    async def cancel_upload(self, hub_id: str, upload_id: str) -> None:
        """Delete only the staging folder of an upload; the installed version is not touched."""
        self._check_open()
        async with self._lock:
            dormant = self._dormant.get(upload_id)
            if dormant is not None and dormant.record.hub_id == hub_id:
                await self._discard_dormant(dormant)
                return
            session = self._session_of(hub_id, upload_id)
            await self._discard(session)

    def progress(self) -> UploadProgressInfo | None:
        """The most recently active upload still staged, or None."""
        session = self._latest
        if session is None or session.state is SessionState.CLOSED:
            return None
        return _progress_of(session)

    def upload_game_name(self, upload_id: str) -> str | None:
        session = self._sessions.get(upload_id)
        if session is not None:
            return session.game_name
        dormant = self._dormant.get(upload_id)
        return dormant.record.game_name if dormant is not None else None

    async def discard_expired(self) -> int:
        """Delete staged uploads idle for longer than the staging TTL; return how many.

        Also finishes housekeeping left by a crash (half-done swaps are repaired when their
        install root is first scanned). Call it once at start-up and then periodically.
        """
        self._check_open()
        async with self._lock:
            for root in sorted(self._known_roots):
                await self._scan_root(root)
            now = self._clock()
            count = 0
            for session in list(self._sessions.values()):
                if session.state is SessionState.ACTIVE and now - session.last_active >= self._staging_ttl:
                    log.info("staged upload %s of %r expired", session.upload_id, session.game_name)
                    await self._discard(session)
                    count += 1
            for dormant in list(self._dormant.values()):
                if now - dormant.touched_at >= self._staging_ttl:
                    log.info(
                        "staged upload %s of %r expired", dormant.layout.upload_id, dormant.record.game_name
                    )
                    await self._discard_dormant(dormant)
                    count += 1
            leftovers = sorted(self._leftovers, key=lambda layout: layout.folder)
            self._leftovers.clear()
            roots = sorted(self._known_roots)
            await self._run(None, _remove_leftovers, leftovers, roots)
            return count

    async def delete_game_folder(self, game_name: str, install_path: str | None = None) -> Path:
        """Remove `<root>/<gameName>` (D8); 404 when it is not there."""
        self._check_open()
        try:
            validate_game_name(game_name)
        except PathRuleError as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc)) from None
        root = self.resolve_install_root(install_path)
        target = root / game_name
        async with self._lock:
            if not await self._run(None, os.path.lexists, target):
                raise ProtocolError(ErrorCode.NOT_FOUND, f"game {game_name!r} is not installed in {root}")
            try:
                await self._run(None, delete_installed, root, target)
                await self._run(None, remove_manifest, root, game_name)
            except OSError as exc:
                raise _os_error(f"could not delete {target}", exc) from None
            self._known_roots.add(root)
        log.info("deleted %s", target)
        return target

    async def close(self) -> None:
        """Let running work finish, close every file, stop the worker threads. Staged uploads stay on disk."""
        if self._closed:
            return
        if self._completing:
            await asyncio.wait(list(self._completing.values()))
        async with self._lock:
            self._closed = True
            for session in list(self._sessions.values()):
                await session.quiesce()
                await asyncio.wrap_future(self._pool.submit(_close_files, session))
        await asyncio.to_thread(self._pool.shutdown, True)
        await asyncio.to_thread(self._hash_pool.shutdown, True)

    # --- init_upload helpers ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ProtocolError(ErrorCode.INTERNAL, "the Agent's transfer service is shut down")

    def _check_target(self, root: Path, target: Path) -> None:
        """A game folder that is a symlink may point only at a folder inside the install root."""
        if not target.is_symlink():
            return
        real = Path(os.path.realpath(target))
        if real == root or not is_inside(real, root) or is_inside(real, root / AGENT_DIR_NAME):
            raise ProtocolError(
                ErrorCode.BAD_REQUEST,
                f"{target.name!r} in {root} is a symbolic link that points outside the install root",
            )

    def _check_path_lengths(self, root: Path, game_name: str, files: FileListing) -> None:
        # Refuse now rather than fail with ENAMETOOLONG halfway through the upload.
        staged_prefix = len(os.fsencode(StagingLayout(root, new_upload_id()).tree)) + 1
        target_prefix = len(os.fsencode(root / game_name)) + 1
        room = MAX_PATH_BYTES - max(staged_prefix, target_prefix)
        for path in files.paths:
            if len(path.encode("utf-8")) > room:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"relativePath {path[:80]!r}... is too long for this device "
                    f"(at most {room} bytes below {root})",
                )

    async def _find_resumable(self, signature: Signature, files: Sequence[ListedFile]) -> UploadSession | None:
        # hashes_fit is O(files): it runs in a worker, not on the loop.
        live = [s for s in self._sessions.values() if s.signature == signature]
        for session in live:
            if session.state is SessionState.ACTIVE and await self._run(None, hashes_fit, session.record.files, files):
                # A dropped connection may still have chunks in flight; let them land first.
                await session.quiesce()
                return session
        matches = [
            d
            for d in list(self._dormant.values())
            if d.signature == signature and await self._run(None, hashes_fit, d.record.files, files)
        ]
        if not matches:
            return None
        dormant = max(matches, key=lambda d: d.touched_at)
        del self._dormant[dormant.layout.upload_id]
        try:
            session = await self._run(
                None,
                functools.partial(load_staged_session, signature=dormant.signature),
                dormant.record,
                dormant.layout,
                self._writer,
                dormant.touched_at,
                self.chunk_size,
            )
        except OSError as exc:
            log.warning("could not reload staged upload %s: %s", dormant.layout.upload_id, exc)
            self._leftovers.add(dormant.layout)
            return None
        self._sessions[session.upload_id] = session
        return session

    def _stale(
        self, hub_id: str, game_name: str, root: Path, keep: UploadSession | None
    ) -> tuple[list[UploadSession], list[_Dormant]]:
        """Other staged uploads of the same game from the same hub: the Hub's files changed, they can
        never be resumed, and their space is needed."""
        sessions = [
            s
            for s in self._sessions.values()
            if s is not keep
            and s.hub_id == hub_id
            and s.game_name == game_name
            and s.root == root
            and s.state is SessionState.ACTIVE
        ]
        dormant = [
            d
            for d in self._dormant.values()
            if d.record.hub_id == hub_id and d.record.game_name == game_name and d.layout.root == root
        ]
        return sessions, dormant

    async def _check_space(
        self, root: Path, need: int, stale_sessions: list[UploadSession], stale_dormant: list[_Dormant]
    ) -> None:
        if need <= 0:
            return
        free = await self._run(None, self._free_space, root)
        if free >= need:
            return
        folders = [s.layout.folder for s in stale_sessions] + [d.layout.folder for d in stale_dormant]
        reclaimable = sum([await self._run(None, allocated_bytes, folder) for folder in folders])
        if free + reclaimable < need:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"insufficient space: need {need} bytes, {free} free in {root}"
            )

    async def _create_session(
        self, hub_id: str, request: InitUpload, files: FileListing, layout: StagingLayout, signature: Signature
    ) -> UploadSession:
        now = self._clock()
        record = SessionRecord(
            upload_id=layout.upload_id,
            hub_id=hub_id,
            game_name=request.config.game_name,
            executable=request.config.executable,
            files=[],  # filled in the worker: O(files)
            created_at=now,
        )
        try:
            session = await self._run(None, self._create_staging, record, files, layout, now, signature)
        except OSError as exc:
            raise _os_error(f"could not create the staging folder in {layout.root}", exc) from None
        self._known_roots.add(layout.root)
        self._sessions[session.upload_id] = session
        return session

    def _create_staging(
        self, record: SessionRecord, files: FileListing, layout: StagingLayout, now: float, signature: Signature
    ) -> UploadSession:
        record.files = files  # replaced by the session's staged files
        session = UploadSession(record, layout, self._writer, now, signature)
        layout.folder.mkdir(parents=True)
        try:
            write_session_record(layout, record)
            write_activity(layout, now)
            tree = layout.tree
            tree.mkdir()
            folders = {f.relative_path.rpartition("/")[0] for f in session.files} - {""}
            for folder in sorted(folders):  # parents sort before their children
                (tree / folder).mkdir(parents=True, exist_ok=True)
            for staged in session.files:
                if staged.size == 0:  # nothing will ever be sent for it
                    self._writer.close(self._writer.open(staged.os_path))
            session.journal = ChunkJournal(layout.journal_file)
            return session
        except BaseException:
            remove_path(layout.folder)
            raise

    async def _carry(self, session: UploadSession, plan: CarryPlan) -> None:
        try:
            await self._run(session, self._carry_files, session, plan)
        except OSError as exc:
            raise _os_error("could not carry unchanged files from the installed version", exc) from None

    def _carry_files(self, session: UploadSession, plan: CarryPlan) -> None:
        """Worker job: carry the planned files and record each in the session (O(files), so here
        rather than on the loop; the session is PREPARING, no other job touches it)."""
        assert session.journal is not None
        made_folders: set[str] = set()
        # Whatever was staged for these files is replaced, so a restart must not count it either.
        session.journal.append_resets(plan.indices)
        for item in carry_items(plan, session.files):
            if session.handles:  # a new upload has none open: no Path to build for each file
                session.handles.forget(Path(item.dest))
            result = carry_file(item, self._writer, self.chunk_size, made_folders)
            if result is not None and not result.linked:
                session.journal.append_chunk(ChunkRecord(item.index, 0, item.size, item.sha256))
            _record_carried(session, session.files[item.index], result)

    async def _scan_root(self, root: Path) -> None:
        """Learn the staged uploads a previous run left under `root` (once per root)."""
        if root in self._scanned:
            return
        self._scanned.add(root)
        self._known_roots.add(root)
        result = await self._run(None, _scan_staging, root, frozenset(self._sessions))
        for dormant in result.dormant:
            self._dormant[dormant.layout.upload_id] = dormant
        self._leftovers.update(result.leftovers)

    # --- write_chunk helpers ------------------------------------------------------------------

    async def _write(
        self, session: UploadSession, staged: StagedFile, offset: int, data: memoryview, checksum: str | None
    ) -> None:
        now = self._clock()
        session.last_active = now
        session.current_row = staged.index
        self._latest = session
        touch: float | None = None
        if now - session.activity_written >= ACTIVITY_WRITE_INTERVAL:
            session.activity_written = touch = now

        if staged.sealed:
            # Shares its data with the installed game: verify, acknowledge, never write.
            digest = await self._run(session, _sha256_hex, data)
            if checksum is not None and digest != checksum:
                raise _checksum_error(staged, offset)
            return

        staged.writes += 1
        try:
            await self._write_and_hash(session, staged, offset, data, checksum, touch=touch)
        finally:
            staged.writes -= 1

    async def _write_and_hash(
        self,
        session: UploadSession,
        staged: StagedFile,
        offset: int,
        data: memoryview,
        checksum: str | None,
        *,
        touch: float | None,
    ) -> None:
        end = offset + len(data)
        file_hash = staged.digest
        hash_job: Future[Hasher] | None = None
        claim = file_hash.claim(offset, end)
        if claim is None and offset < file_hash.claimed_end:
            file_hash.invalidate()  # rewriting bytes already hashed
        whole_file = claim is not None and offset == 0 and end == staged.size
        if claim is not None:
            # A file in one chunk: the checksum's hash is the whole file's, no second pass.
            hash_job = None if whole_file else self._submit(session, hash_bytes_after, claim, data, pool=self._hash_pool)
            file_hash.chained(claim, hash_job)
        committed = False
        wrote = True  # unless the checksum failed, the bytes on disk may have changed
        try:
            try:
                chunk = _ChunkWrite(staged, offset, data, checksum, touch, hash_job, whole_file)
                if whole_file and end <= SMALL_FILE_BYTES:
                    store = functools.partial(self._store_chunk, session, chunk)
                    stored, hasher = await self._small_files.run(store, session.jobs.track)
                else:
                    stored, hasher = await self._run(session, self._store_chunk, session, chunk)
            except OSError as exc:
                # The range may now hold a partial write: it no longer counts.
                session.drop_held(staged, offset, end)
                raise _os_error(f"could not write {staged.relative_path!r} at offset {offset}", exc) from None
            if not stored:
                wrote = False
                raise _checksum_error(staged, offset)
            session.add_held(staged, offset, end)
            if claim is not None and hasher is not None:
                committed = file_hash.commit(claim, hasher)
        finally:
            if not committed:
                if claim is not None:
                    file_hash.abandon(claim)
                # Checked again now the bytes have landed: a catch-up that started after the
                # check above may have hashed what was there before.
                if wrote and offset < file_hash.claimed_end:
                    file_hash.invalidate()
        await self._catch_up(session, staged, file_hash)
        staged.settle_finished()

    def _store_chunk(self, session: UploadSession, chunk: _ChunkWrite) -> tuple[bool, Hasher | None]:
        """Worker job: verify, pwrite, journal, then collect the chunk's hash node.

        Returns (False, None) on a checksum mismatch (nothing written). Waiting here for the hash
        node (which runs on its own thread, so it never waits for us) saves the event loop a
        second wake-up per chunk.
        """
        data = chunk.data
        chunk_hash = hashlib.sha256(data)
        digest = chunk_hash.hexdigest()
        if chunk.checksum is not None and digest != chunk.checksum:
            return False, None
        if len(data):
            if chunk.whole_file:
                # Written once and done: opened and closed here, not kept among the handles.
                handle = self._writer.open(chunk.staged.os_path)
                try:
                    write_all(self._writer, handle, data, chunk.offset)
                finally:
                    self._writer.close(handle)
            else:
                path = chunk.staged.path
                handle = session.handles.acquire(path)
                try:
                    write_all(self._writer, handle, data, chunk.offset)
                    _start_writeback(self._writer, handle, chunk.offset, chunk.offset + len(data))
                finally:
                    session.handles.release(path)
            assert session.journal is not None
            session.journal.append_chunk(ChunkRecord(chunk.staged.index, chunk.offset, len(data), digest))
            if chunk.offset == 0:
                chunk.staged.program = looks_like_program(data)
        if chunk.touch is not None:
            try:
                write_activity(session.layout, chunk.touch)
            except OSError as exc:  # only the expiry clock; the chunk itself is safe
                log.warning("could not record activity of upload %s: %s", session.upload_id, exc)
        if chunk.whole_file:
            return True, chunk_hash
        hasher: Hasher | None = None
        if chunk.hash_job is not None:
            try:
                hasher = chunk.hash_job.result()
            except Exception:
                hasher = None  # an earlier node failed; these bytes get hashed from disk later
        return True, hasher

    async def _catch_up(self, session: UploadSession, staged: StagedFile, file_hash: FileHash) -> None:
        """Hash held bytes that arrived out of order, a little per chunk, from the page cache."""
        claim = file_hash.claim_catch_up(held_prefix(staged.held), self.chunk_size * CATCH_UP_CHUNKS)
        if claim is None:
            return
        try:
            job = self._submit(session, self._hash_from_disk, session, staged, claim, pool=self._hash_pool)
        except ProtocolError:
            return  # shutting down
        file_hash.chained(claim, job)
        try:
            hasher = await asyncio.wrap_future(job)
        except OSError as exc:
            file_hash.abandon(claim)
            log.debug("hash catch-up of %s failed: %s", staged.relative_path, exc)
            return
        except BaseException:
            file_hash.abandon(claim)
            raise
        file_hash.commit(claim, hasher)

    def _hash_from_disk(self, session: UploadSession, staged: StagedFile, claim: HashClaim) -> Hasher:
        handle = session.handles.acquire(staged.path)
        try:
            return hash_disk_after(
                claim,
                lambda offset, length: read_exactly(self._writer, handle, length, offset),
                self.chunk_size,
            )
        finally:
            session.handles.release(staged.path)

    # --- complete_upload helpers ----------------------------------------------------------------

    def _completion_done(self, key: tuple[str, str], job: asyncio.Task[InstalledGame]) -> None:
        if self._completing.get(key) is job:
            del self._completing[key]

    async def _install_to_the_end(
        self, session: UploadSession, install: Callable[..., InstalledGame], *args: Any
    ) -> InstalledGame:
        """`install` in a worker, awaited to its end even through a cancellation: a swap cannot be
        stopped halfway, and until it is over the lock stays held and the session COMPLETING. The
        cancellation is raised afterwards, with the session forgotten if the install went through."""
        waiter = asyncio.wrap_future(self._submit(session, install, *args))
        cancelled = False
        while not waiter.done():
            try:
                await asyncio.wait([waiter])
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            if not waiter.cancelled() and waiter.exception() is None:
                self._forget(session)
            raise asyncio.CancelledError
        return waiter.result()

    async def _complete_in_place(self, session: UploadSession, claimed: Mapping[str, str]) -> InstalledGame | None:
        """Complete an upload whose files the installed folder already holds (see in_place); None
        if the folder changed since, with the upload turned into a usual one (`_keep_in_place`)."""
        found = await self._run(session, _found_in_place, session.files.listing, claimed)
        look = await self._keep_in_place(session, give_up=found is None)
        if look is None:
            return None
        assert found is not None
        return await self._install_to_the_end(session, self._install_in_place, session, look.modes, found)

    async def _keep_in_place(self, session: UploadSession, *, give_up: bool = False) -> FolderLook | None:
        """Look at the installed folder again: what it holds if no file changed since init_upload;
        else None, with the upload turned into a usual one: no file counts as held, those
        unchanged since are carried, the others must be sent. `give_up`: turn it at once (a
        hash given for an empty file is not the empty file's; the usual checks answer it)."""
        first = session.in_place
        assert first is not None
        target, listing = session.target, session.files.listing
        if not give_up:
            ours = functools.partial(ours_among, session.layout.root, session.game_name, target)
            again = await self._run(session, look_at, target, listing, first.mtimes, ours)
            if again is not None and again.same_files_as(first):
                return again
        log.info("upload %s of %r: its files are carried the usual way", session.upload_id, session.game_name)
        session.in_place = None
        await self._run(session, _release_in_place, session)
        plan = await self._run(session, carry_plan_since, target, listing, first)
        if plan:
            await self._carry(session, plan)
        return None

    def _install_in_place(self, session: UploadSession, modes: array[int], found: FoundDigests) -> InstalledGame:
        """Worker job: the installed folder is the new version; set its modes, remove staging."""
        target = session.target
        self._check_target(session.root, target)  # again: the folder may have changed since init
        try:
            settle_modes_in_place(target, session.files.listing, modes, session.record.executable, self._writer)
        except OSError as exc:
            raise _os_error(f"could not set the modes of the files in {target}", exc) from None
        return self._installed(session, found)

    async def _recheck_carried(self, session: UploadSession) -> None:
        """A hard-linked file shares data with the installed game; if that changed since, send it again."""
        changed = await self._run(session, _changed_carried_files, session.files)
        if not changed:
            return
        for staged in changed:
            session.reset_file(staged)
        await self._run(session, _forget_files, session, changed)

    async def _verify_digests(self, session: UploadSession, claimed: Mapping[str, str]) -> FoundDigests:
        """Finish each whole-file hash (reading only what was not hashed in order) and compare it
        with the hash the Hub gave, in init_upload or in `claimed`, where it gave one; every
        file's hash goes to the manifest. Returns the hashes of the files the Hub gave none for."""
        try:
            bad, found = await self._run(session, self._check_digests, session, claimed)
        except OSError as exc:
            raise _os_error("could not read back the staged files", exc) from None
        if not bad:
            return found
        for staged in bad:
            session.reset_file(staged)
        await self._run(session, _forget_files, session, bad)
        listed = ", ".join(f.relative_path for f in bad[:MISSING_FILES_LISTED])
        more = f" and {len(bad) - MISSING_FILES_LISTED} more files" if len(bad) > MISSING_FILES_LISTED else ""
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"{SHA256_MISMATCH}: {listed}{more}; their data was discarded, send them again",
        )

    def _check_digests(
        self, session: UploadSession, claimed: Mapping[str, str]
    ) -> tuple[list[StagedFile], FoundDigests]:
        """Worker job: each written file's whole-file hash, settled on its row as it is found
        (its hash state goes at once), checked against the one the Hub gave. Returns the files
        whose hash differs, and the hashes of the files the Hub gave none for."""
        bad: list[StagedFile] = []
        found = FoundDigests()
        table = session.files
        for index in table.written_rows():  # a carried file's hash matched the manifest's
            digest = table.found_digest(index)  # hashed in order as the chunks arrived: the usual case
            if digest is None:
                staged = table[index]
                digest = self._finish_digest(session, staged)
                staged.settle_digest(digest)
            expected = table.listing.given_digest(index)
            path = table.paths[index]
            if expected is None and (claim := claimed.get(path)) is not None:
                expected = bytes.fromhex(claim)
            if expected is None:
                found.add(path, digest)
            elif expected != digest:
                bad.append(table[index])
        return bad, found

    def _finish_digest(self, session: UploadSession, staged: StagedFile) -> bytes:
        finished = staged.finished_digest()
        if finished is not None:  # hashed in order as the chunks arrived: the usual case
            return finished
        file_hash = staged.digest
        hasher = file_hash.hasher.copy()
        if file_hash.upto < staged.size:
            handle = session.handles.acquire(staged.path)
            try:
                offset = file_hash.upto
                while offset < staged.size:
                    length = min(self.chunk_size, staged.size - offset)
                    data = read_exactly(self._writer, handle, length, offset)
                    if len(data) != length:
                        raise OSError(errno.EIO, f"{staged.relative_path} is shorter than expected")
                    hasher.update(data)
                    offset += length
            finally:
                session.handles.release(staged.path)
        return hasher.digest()

    def _install(self, session: UploadSession, found: FoundDigests) -> InstalledGame:
        """Worker job: fsync and modes, keep the game's own files, swap into place, record the
        manifest, remove staging."""
        layout = session.layout
        target = session.target
        session.handles.close_all()
        try:
            mtimes = finalize_tree(layout.tree, session.files, session.record.executable, self._writer)
        except OSError as exc:
            raise _os_error("could not make the staged files durable", exc) from None
        self._check_target(layout.root, target)  # again: the folder may have changed since init
        try:
            # Recorded before the swap, from the staged tree (a rename keeps every mtime), so an
            # Agent that dies right after the swap still has it (recover_install publishes it).
            entries = manifest_entries(layout.tree, session.files.manifest_rows(), mtimes)
            stage_manifest(layout, session.game_name, self._clock(), entries)
        except OSError as exc:
            log.warning("could not record the manifest of %r: %s", session.game_name, exc)
        listing = session.files.listing
        try:
            # As late as possible: the game may be running and writing its saves.
            kept = keep_what_the_game_wrote(layout, session.game_name, target, listing, self._writer)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise _os_error(f"could not keep the files the game wrote in {target}{where}", exc) from None
        try:
            # Stop vouching for the old files before they change (aside, in case the swap fails).
            set_manifest_aside(layout, session.game_name)
            swap_into_place(layout, target)
        except BaseException as exc:
            _quietly(put_manifest_back, layout, session.game_name)
            if isinstance(exc, OSError):
                raise _os_error(f"could not move the new version into {target}", exc) from None
            raise
        if kept:
            log.info(
                "%r: kept %d files and %d folders the game wrote in its folder",
                session.game_name,
                len(kept.files),
                len(kept.folders),
            )
        if os.path.lexists(layout.previous):  # the old folder: what the game wrote since the look
            try:
                catch_up_after_swap(layout.previous, target, listing, kept, session.game_name)
            except Exception:  # the new version is in place: never fail the install from here
                log.exception("%r: catching up with the game's changes failed", session.game_name)
        try:
            publish_manifest(layout, session.game_name)
        except OSError as exc:
            log.warning("installed %r but could not record its manifest: %s", session.game_name, exc)
        return self._installed(session, found)

    def _installed(self, session: UploadSession, found: FoundDigests) -> InstalledGame:
        """Worker job's end, once the game is in place: the staging folder removed, the upload's
        records freed, the installed game."""
        layout, target = session.layout, session.target
        _quietly(_close_files, session)
        try:
            # Deleted after the reply: it may hold the old version, thousands of files.
            self._delete_later(trash_staging(layout, target))
        except OSError as exc:
            log.warning("could not remove staging folder %s: %s", layout.folder, exc)
            self._leftovers.add(layout)
        executable = session.record.executable
        file_count = len(session.files)
        session.release_files()  # here, not on the loop when the session is dropped
        self._writer.release_buffers()  # an Agent between uploads keeps no write buffers
        return InstalledGame(
            game_name=session.game_name,
            path=target,
            executable=target / executable if executable is not None else None,
            file_count=file_count,
            total_bytes=session.total_bytes,
            found_sha256=found,
        )

    # --- bookkeeping ----------------------------------------------------------------------------

    def _session_of(self, hub_id: str, upload_id: str) -> UploadSession:
        session = self._sessions.get(upload_id)
        # Another hub's upload is reported exactly like an unknown one: ids are not to be probed.
        if session is None or session.hub_id != hub_id or session.state is SessionState.CLOSED:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"unknown upload {upload_id!r}")
        return session

    def _forget(self, session: UploadSession) -> None:
        session.state = SessionState.CLOSED
        self._sessions.pop(session.upload_id, None)
        if self._latest is session:
            self._latest = None

    async def _discard(self, session: UploadSession) -> None:
        self._forget(session)
        await session.quiesce()
        try:
            await self._run(None, _close_and_remove, session)
        except OSError as exc:
            log.warning("could not remove staging folder %s: %s", session.layout.folder, exc)
            self._leftovers.add(session.layout)

    async def _discard_dormant(self, dormant: _Dormant) -> None:
        self._dormant.pop(dormant.layout.upload_id, None)
        try:
            target = dormant.layout.root / dormant.record.game_name
            await self._run(None, remove_staging, dormant.layout, target)
        except OSError as exc:
            log.warning("could not remove staging folder %s: %s", dormant.layout.folder, exc)
            self._leftovers.add(dormant.layout)

    def _submit(
        self,
        session: UploadSession | None,
        fn: Callable[..., T],
        *args: Any,
        pool: ThreadPoolExecutor | None = None,
    ) -> Future[T]:
        self._check_open()
        future = (pool or self._pool).submit(fn, *args)
        with self._jobs_lock:
            self._jobs_running += 1
        future.add_done_callback(self._job_done)
        if session is not None:
            session.jobs.track(future)
        return future

    def _job_done(self, _: Future[Any]) -> None:
        with self._jobs_lock:
            self._jobs_running -= 1
            self._last_job_end = time.monotonic()

    def _delete_later(self, folder: Path) -> None:
        """Delete a folder in the trash on a worker thread, without waiting for it."""
        try:
            self._submit(None, _empty_trash_entry, folder)
        except ProtocolError:
            pass  # shutting down: the trash is emptied at the next start

    def release_buffers(self) -> int:
        """Free the write buffers no transfer is using (the Agent calls this once transfers idle)."""
        return self._writer.release_buffers()

    def idle_seconds(self) -> float:
        """Seconds since the last worker job ended, 0 while one runs. Every step of an upload
        that takes time (writing, hashing, carrying, installing) is a worker job."""
        with self._jobs_lock:
            if self._jobs_running:
                return 0.0
            return time.monotonic() - self._last_job_end

    async def _run(self, session: UploadSession | None, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._submit(session, fn, *args))


# --- small pieces run in worker threads ---------------------------------------------------------


def _yield_to_the_loop() -> None:
    """Worker-thread initializer: a lower CPU priority for this thread only (Linux threads have
    their own nice value). On a busy handheld the event loop, shared with the plugin and its UI,
    then wins the CPU over bulk hashing and writing, which keeps its lag low; the workers still
    get every idle cycle."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + WORKER_NICENESS))
    except OSError:
        pass  # not allowed here: run at the normal priority


def _check_claimed_digests(session: UploadSession, claimed: Mapping[str, str]) -> None:
    """complete_upload's `sha256` may add hashes to init_upload's, never change one."""
    for path, digest in claimed.items():
        staged = session.files.find(path)
        if staged is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"sha256: {path!r} is not a file of this upload")
        if staged.sha256 not in (None, digest):
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"sha256: the hash of {path!r} differs from the one in init_upload"
            )


def _hold_in_place(session: UploadSession, look: FolderLook) -> None:
    """Worker job: every file counts as held, its data the installed copy's (see in_place): sealed,
    so a chunk sent for it anyway is checked and acknowledged, never written."""
    for staged in session.files:
        session.add_held(staged, 0, staged.size)
        staged.sealed = True
    session.in_place = look


_EMPTY_DIGEST = hashlib.sha256(b"").digest()


def _found_in_place(listing: FileListing, claimed: Mapping[str, str]) -> FoundDigests | None:
    """Worker job: the hashes an upload completed in place reports (`result_sha256`), those of the
    files the Hub gave none for; None if a hash it gave (listed or in `claimed`) is not the
    file's. Only empty files need a look: the hash of every file with bytes was listed and is the
    one the manifest records for the installed copy (in_place.all_recorded)."""
    found = FoundDigests()
    empty_hex = _EMPTY_DIGEST.hex()
    for index, size in enumerate(listing.sizes):
        if size:
            continue
        given = listing.given_digest(index)
        if given is not None:
            if given != _EMPTY_DIGEST:
                return None
            continue
        path = listing.paths[index]
        claim = claimed.get(path)
        if claim is None:
            found.add(path, _EMPTY_DIGEST)
        elif claim != empty_hex:
            return None
    return found


def _release_in_place(session: UploadSession) -> None:
    """Worker job: the installed folder changed; no file counts as held any more."""
    for staged in session.files:
        session.reset_file(staged)


def _record_carried(session: UploadSession, staged: StagedFile, result: CarryResult | None) -> None:
    session.reset_file(staged)
    if result is None:
        return
    session.add_held(staged, 0, staged.size)
    if result.linked:
        staged.sealed = True
        staged.carried_mtime_ns = result.mtime_ns
    elif result.hasher is not None:
        staged.digest.restore(result.hasher, staged.size)


def _start_writeback(writer: FileWriter, handle: int, start: int, end: int) -> None:
    """Start writing out the block that `[start, end)` just completed, if it crossed a block edge."""
    block = end // WRITEBACK_BLOCK
    if block == start // WRITEBACK_BLOCK or block == 0:
        return
    writer.start_writeback(handle, (block - 1) * WRITEBACK_BLOCK, WRITEBACK_BLOCK)


def _sha256_hex(data: memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _scan_staging(root: Path, live: frozenset[str]) -> _ScanResult:
    dormant: list[_Dormant] = []
    leftovers: list[StagingLayout] = []
    for upload_id in list_staged_ids(root):
        if upload_id in live:
            continue
        layout = StagingLayout(root, upload_id)
        record = read_session_record(layout)
        if record is None:
            leftovers.append(layout)
            continue
        try:
            state = recover_install(layout, root / record.game_name, record.game_name)
        except OSError as exc:
            log.error("could not put back the previous version of %r: %s", record.game_name, exc)
            continue
        if state in (SwapState.FINISHED, SwapState.BROKEN):
            leftovers.append(layout)
            continue
        touched = read_activity(layout)
        signature = upload_signature(record.hub_id, record.game_name, root, record.files)
        dormant.append(_Dormant(layout, record, max(record.created_at, touched or 0.0), signature))
    return _ScanResult(dormant, leftovers)


def _empty_trash_entry(folder: Path) -> None:
    try:
        remove_path(folder)
    except OSError as exc:
        log.warning("could not delete %s (it is removed at the next start): %s", folder, exc)


def _remove_leftovers(layouts: list[StagingLayout], roots: list[Path]) -> None:
    for layout in layouts:
        record = read_session_record(layout)
        try:
            remove_staging(layout, layout.root / record.game_name if record is not None else None)
        except OSError as exc:
            log.warning("could not remove %s: %s", layout.folder, exc)
    for root in roots:
        try:
            remove_path(trash_dir(root))
        except OSError as exc:
            log.warning("could not empty %s: %s", trash_dir(root), exc)


def _changed_carried_files(files: FileTable) -> list[StagedFile]:
    changed: list[StagedFile] = []
    tree = str(files.tree)
    for index, path, size, mtime_ns in files.carried_rows():
        try:
            info = os.lstat(os.path.join(tree, path))
        except OSError:
            changed.append(files[index])
            continue
        if info.st_size != size or info.st_mtime_ns != mtime_ns:
            changed.append(files[index])
    return changed


def _forget_files(session: UploadSession, files: list[StagedFile]) -> None:
    """Journal that these files start over, and drop their staged data."""
    assert session.journal is not None
    for staged in files:
        session.journal.append_reset(staged.index)
        session.handles.forget(staged.path)
        # Unlink rather than truncate: a carried file may be a hard link into the installed game.
        remove_path(staged.path)


def _close_files(session: UploadSession) -> None:
    session.handles.close_all()
    if session.journal is not None:
        session.journal.close()


def _close_and_remove(session: UploadSession) -> None:
    _close_files(session)
    remove_staging(session.layout, session.target)


def _quietly(fn: Callable[..., object], *args: Any) -> None:
    try:
        fn(*args)
    except OSError as exc:
        log.warning("%s failed: %s", getattr(fn, "__name__", fn), exc)


def _progress_of(session: UploadSession) -> UploadProgressInfo:
    return UploadProgressInfo(
        upload_id=session.upload_id,
        hub_id=session.hub_id,
        game_name=session.game_name,
        current_file=session.current_file,
        transferred_bytes=session.held_bytes,
        total_bytes=session.total_bytes,
    )


def _plan_upload(
    session: UploadSession | None, layout: StagingLayout, game_name: str, files: FileListing
) -> tuple[CarryPlan, int, FolderLook | None]:
    """Which files the installed version can supply, how many bytes must still arrive, and, for a
    new upload whose files the installed folder already holds and nothing else, its look (see
    in_place: nothing to carry then).

    For a new upload, plans over the request's file list (the session will list the same files in
    the same order), before anything is written.
    """
    target = layout.root / game_name
    if session is not None:
        table = session.files
        matches = read_manifest_matches(layout.root, game_name, table.listing)
        plan = plan_carry(table.incomplete_rows(), table.listing, matches, target)
        carried = sum(table.sizes[i] - held_total(table[i].held) for i in plan.indices)
        return plan, session.total_bytes - session.held_bytes - carried, None
    matches = read_manifest_matches(layout.root, game_name, files)
    if matches is not None and all_recorded(files, matches):
        look = look_at(target, files, matches, functools.partial(ours_among, layout.root, game_name, target))
        if look is not None:
            return CarryPlan("", array("q")), 0, look  # the installed folder is the new version
    fresh = (index for index, size in enumerate(files.sizes) if size > 0)
    plan = plan_carry(fresh, files, matches, target)
    carried = sum(files.sizes[i] for i in plan.indices)
    return plan, sum(files.sizes) - carried, None


def _describe_missing(missing: list[MissingFile]) -> str:
    """`upload incomplete: 1026 bytes missing in 2 files: a.pak is missing bytes 1024-2047; ...`"""
    total = sum(m.missing_bytes for m in missing)
    parts = []
    for m in missing[:MISSING_FILES_LISTED]:
        ranges = ", ".join(f"{start}-{end - 1}" for start, end in m.gaps[:MISSING_RANGES_LISTED])
        more = (
            f" and {len(m.gaps) - MISSING_RANGES_LISTED} more ranges"
            if len(m.gaps) > MISSING_RANGES_LISTED
            else ""
        )
        parts.append(f"{m.relative_path} is missing bytes {ranges}{more} ({m.missing_bytes} of {m.size})")
    extra = len(missing) - MISSING_FILES_LISTED
    tail = f"; and {extra} more files" if extra > 0 else ""
    return f"{UPLOAD_INCOMPLETE}: {total} bytes missing in {len(missing)} files: {'; '.join(parts)}{tail}"


def _checksum_error(staged: StagedFile, offset: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.BAD_REQUEST,
        f"checksum mismatch for {staged.relative_path!r} at offset {offset}: the chunk was not written",
    )


def _os_error(action: str, exc: OSError) -> ProtocolError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return ProtocolError(ErrorCode.INTERNAL, f"{action}: {reason}")
