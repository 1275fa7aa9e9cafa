"""Deploy a folder to an agent: scan, hash (cached), init_upload, pipelined chunks, resume, complete."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..memory import keep_freed_memory
from ..protocol import MessageType, encode_message, new_message_id
from ..protocol import constants as c
from ..protocol import messages as m
from ..protocol.constants import SHA256_MISMATCH, UPLOAD_INCOMPLETE
from ..protocol.fitting import keep_what_fits
from .client import HubClient
from .errors import AgentError, ConnectionLost, HubError
from .hashcache import READ_BUFFER, FileChangedError, HashCache, hash_files, sha256_of_file
from .scan import LocalFile, scan_folder
from .window import SendWindow

log = logging.getLogger(__name__)

DEFAULT_WINDOW_BYTES = 8 * 1024 * 1024
# Chunks in flight at most, whatever their size: small files' chunks are many and tiny, and the
# window must not shrink to a few KiB for them (each would then wait for a round trip).
WINDOW_CHUNKS = 256
CHUNK_RETRIES = 3
MAX_RESUMES = 20
INSTALL_RATE = 100 * 1024 * 1024  # bytes/s assumed for complete_upload's timeout
# The Agent capability (extension) that lets complete_upload carry the whole-file hashes.
HASH_ON_COMPLETE = "complete_sha256"
# The Agent capability (extension) by which complete_upload's reply carries the hashes the Agent
# found for files the Hub gave none for.
HASH_FROM_AGENT = "result_sha256"
ETA_AFTER_BYTES = 1024 * 1024  # time left is shown once this much was acknowledged
# The sender's read-ahead: a batch of chunks is read on a worker thread while the one before is sent.
READ_BATCH_BYTES = 4 * 1024 * 1024
READ_BATCH_PIECES = 64


@dataclass
class DeployOptions:
    game_name: str
    executable: str | None = None
    install_path: str | None = None
    create_shortcut: bool = True
    shortcut_name: str | None = None
    launch_options: str | None = None
    user_id: int | str | None = None
    artwork: m.Artwork | None = None
    restart_steam: bool = False
    window_bytes: int = DEFAULT_WINDOW_BYTES


@dataclass
class DeployProgress:
    phase: str  # "hashing", "uploading", "installing", "done"
    game_name: str
    current_file: str
    done_bytes: int
    total_bytes: int
    bytes_per_second: float
    seconds_remaining: float | None


@dataclass
class DeployResult:
    game_name: str
    path: str
    app_id: int | None
    shortcut_error: str | None
    files: int
    total_bytes: int
    bytes_sent: int  # file data actually sent over the wire, re-sends included
    bytes_skipped: int  # held already (resume) or unchanged (incremental)
    resumes: int
    seconds: float
    upload_id: str = ""
    messages: list[str] = field(default_factory=list)


ProgressCallback = Callable[[DeployProgress], None]


@dataclass
class _Pass:
    """One init_upload → chunks attempt; a dropped connection starts a new pass that resumes."""

    upload_id: str = ""
    chunk_size: int = 0
    skipped: int = 0


# Upper bounds, to encode a request twice only when it may be too large: a path's character
# takes at most 6 bytes in JSON (an escape) per byte of UTF-8; an entry's keys, size and sha256
# at most 128 more; the rest of the frame (config, ids) at most 64 KiB.
_ESCAPED_BYTES_PER_BYTE = 6
_ENTRY_BYTES = 128
_FRAME_BYTES = 64 * 1024
_HASH_FIELD_BYTES = len(',"sha256":""') + 64


def _may_pass_message_limit(paths: Iterable[str]) -> bool:
    """Whether a frame listing these paths (with a hash each) might pass the message limit (D4)."""
    bound = _FRAME_BYTES + sum(_ESCAPED_BYTES_PER_BYTE * len(path.encode()) + _ENTRY_BYTES for path in paths)
    return bound > c.MAX_MESSAGE


def _without_hash(entry: m.UploadFile) -> m.UploadFile:
    """The entry as sent when its hash does not fit: sent again rather than carried over."""
    return m.UploadFile.unchecked(entry.relative_path, entry.size, None)


class Deployment:
    """One deployment of a scanned folder to one agent.

    Files the hash cache knows go into init_upload with their `sha256` (that is what makes
    unchanged files free). The others:
    * with an Agent that has `result_sha256`, a file whose every staged byte this deployment
      sent is not hashed here at all: each chunk's checksum proves the Agent holds exactly the
      bytes read, so the whole-file hash the Agent reports after the install is this file's;
    * with `complete_sha256` (and for a file the Agent held part of before this deployment began,
      maybe from an older version of it), it is hashed from the very reads that send it and the
      hash goes with complete_upload, which the Agent checks, so no separate hashing pass delays
      the upload;
    * otherwise it is hashed before init_upload.
    The whole-file hash is fed by the same worker-thread read that computes each chunk's checksum,
    from the same buffer, so both always describe the same bytes.
    """

    def __init__(
        self,
        client: HubClient,
        files: list[LocalFile],
        hashes: dict[str, str],
        options: DeployOptions,
        progress: ProgressCallback | None = None,
        *,
        cache: HashCache | None = None,
    ) -> None:
        self.client = client
        self.files = files
        self.hashes = dict(hashes)
        self.options = options
        self.cache = cache
        self._request: m.InitUpload | None = None
        self._computed: dict[str, str] = {}  # hashes found while sending, for complete_upload
        # Files whose staged bytes all come from this deployment (nothing held when it began):
        # their hashes come from the Agent, when it reports them (`result_sha256`).
        self._sent_whole: set[str] | None = None
        self._reported: dict[str, str] = {}  # hashes the Agent reported, for the cache
        self._progress = progress
        self.total = sum(file.size for file in files)
        self.sent = 0
        self.acked = 0
        self.skipped = 0
        self.resumes = 0
        self.upload_id = ""
        self._started = time.monotonic()
        self._current = ""
        self._last_report = 0.0

    def init_request(self) -> m.InitUpload:
        """The init_upload of this deployment; built once, so every resume sends the very same list."""
        return m.InitUpload(
            config=m.UploadConfig(
                game_name=self.options.game_name,
                install_path=self.options.install_path,
                executable=self.options.executable,
            ),
            total_size=self.total,
            # Built without re-validating each entry (70 us a file; over a second for 20 000):
            # the scan checked every path with the protocol's rules, sizes come from stat, and
            # hashes from our own hashing or the cache, which keeps only well-formed ones.
            files=[
                m.UploadFile.unchecked(file.relative_path, file.size, self.hashes.get(file.relative_path))
                for file in self.files
            ],
        )

    def _init_request_within_limit(self) -> m.InitUpload:
        """The init_upload, with `sha256` left out of as many entries as it takes to fit in one
        message (D4; see protocol.fitting). A file sent without its hash is not carried over from
        the installed version but sent again, so the smallest files go without."""
        request = self.init_request()
        listed = request.files
        assert isinstance(listed, list)  # the Hub's own list (a listing is what the Agent reads)
        if not _may_pass_message_limit(entry.relative_path for entry in listed):
            return request
        hashed = [index for index, entry in enumerate(listed) if entry.sha256 is not None]
        hashed.sort(key=lambda index: listed[index].size, reverse=True)  # kept first

        def encode(count: int) -> str:
            files = list(listed)
            for index in hashed[count:]:
                files[index] = _without_hash(files[index])
            return encode_message(MessageType.INIT_UPLOAD, request.model_copy(update={"files": files}), new_message_id())

        # Each hash takes the same bytes (`,"sha256":"` and 64 hex digits and `"`): the count to
        # leave out follows from the excess, so two more encodings of a 12 MB list, not seventeen.
        kept, text = keep_what_fits(len(hashed), encode, lambda excess: len(hashed) - -(-excess // _HASH_FIELD_BYTES))
        if text is None:
            raise HubError(
                f"the list of {len(listed)} files is too long for one message (the protocol allows "
                f"{c.MAX_MESSAGE // (1024 * 1024)} MiB); shorter file paths would fit"
            )
        if kept < len(hashed):
            log.warning("%d of %d file hashes left out of init_upload to fit in one message", len(hashed) - kept, len(hashed))
            for index in hashed[kept:]:
                entry = listed[index]
                listed[index] = _without_hash(entry)
                del self.hashes[entry.relative_path]
        return request

    async def run(self) -> DeployResult:
        try:
            return await self._run()
        except asyncio.CancelledError:
            await self._cancel_quietly()
            raise

    async def _hash_before_init(self) -> None:
        """Hash up front what the cache does not know, unless the Agent takes hashes at completion."""
        missing = [f for f in self.files if f.relative_path not in self.hashes]
        if not missing:
            return
        status = self.client.status
        if status is not None and HASH_ON_COMPLETE in (status.capabilities or []):
            return
        self._report("hashing", force=True)
        self.hashes.update(await hash_files(missing, self.cache))

    async def _run(self) -> DeployResult:
        mismatch_retried = incomplete_retried = False
        while True:
            try:
                await self.client.wait_connected()
                if self._request is None:
                    await self._hash_before_init()
                    self._request = await asyncio.to_thread(self._init_request_within_limit)
                reply = await self.client.init_upload(self._request)
                self.upload_id = reply.upload_id
                await self._send_pass(reply)
                self._report("installing", force=True)
                result = await self.client.complete_upload(self._complete_request(), timeout=self._complete_timeout())
                self._take_reported(result.sha256 or {})
                break
            except AgentError as error:
                if error.code != 400:
                    raise
                if error.message.startswith(SHA256_MISMATCH) and not mismatch_retried and self._computed:
                    # Data held from an earlier attempt was not this file's (it changed in between,
                    # same size): the Agent dropped it; one more pass sends those files again.
                    mismatch_retried = True
                    self._computed.clear()
                    log.info("the agent discarded data that did not match (%s); sending it again", error.message)
                elif error.message.startswith(UPLOAD_INCOMPLETE) and not incomplete_retried:
                    # Files the Agent was to carry from the installed version changed or went away
                    # before completion (the game rewrote one, the folder was removed): one more
                    # pass sends what it now lacks.
                    incomplete_retried = True
                    log.info("the agent lacks data it was to carry (%s); sending it", error.message)
                else:
                    raise
            except ConnectionLost as error:
                # Resume: the agent keeps what it verified (or, if the install went through, the
                # unchanged files), so the next pass sends only what is missing.
                self.resumes += 1
                if self.resumes > MAX_RESUMES:
                    raise
                log.info("connection lost during the deploy (%s); resuming", error)
                await self.client.wait_connected()
        self._report("done", force=True)
        await self._remember_hashes()
        return DeployResult(
            game_name=self.options.game_name,
            path=result.path or "",
            app_id=result.app_id,
            shortcut_error=result.shortcut_error,
            files=len(self.files),
            total_bytes=self.total,
            bytes_sent=self.sent,
            bytes_skipped=self.skipped,
            resumes=self.resumes,
            seconds=time.monotonic() - self._started,
            upload_id=self.upload_id,
        )

    def _complete_request(self) -> m.CompleteUpload:
        request = self._complete_request_with(self._computed)
        if not _may_pass_message_limit(self._computed):
            return request
        # Hashes sent with complete_upload are checked by the Agent, not needed: keep what fits.
        digests = list(self._computed.items())
        kept, _ = keep_what_fits(
            len(digests),
            lambda count: encode_message(
                MessageType.COMPLETE_UPLOAD, self._complete_request_with(dict(digests[:count])), new_message_id()
            ),
        )
        return request if kept == len(digests) else self._complete_request_with(dict(digests[:kept]))

    def _complete_request_with(self, digests: dict[str, str]) -> m.CompleteUpload:
        return m.CompleteUpload(
            upload_id=self.upload_id,
            create_shortcut=self.options.create_shortcut or None,
            shortcut=self._shortcut() if self.options.create_shortcut else None,
            user_id=self.options.user_id,
            restart_steam=self.options.restart_steam or None,
            sha256=dict(digests) or None,
        )

    def _agent_reports_hashes(self) -> bool:
        status = self.client.status
        return status is not None and HASH_FROM_AGENT in (status.capabilities or [])

    def _take_reported(self, reported: Mapping[str, str]) -> None:
        """Keep the Agent's hashes of the files this deployment sent whole and did not hash."""
        for relative_path in self._sent_whole or set():
            digest = reported.get(relative_path)
            if digest is not None and self._hash_unknown_path(relative_path):
                self._reported[relative_path] = digest  # lowercase: validated as Sha256Hex

    async def _remember_hashes(self) -> None:
        """Hashes found while sending (or reported by the Agent) go to the cache only now: a hub
        that restarts a failed deploy must send the same init_upload (without them) for the
        Agent to resume it."""
        learnt = {**self._reported, **self._computed}
        if self.cache is None or not learnt:
            return
        by_path = {file.relative_path: file for file in self.files}
        for relative_path, digest in learnt.items():
            self.cache.store(by_path[relative_path], digest)
        try:
            await asyncio.to_thread(self.cache.save)
        except OSError as exc:
            log.warning("could not save the hash cache %s: %s", self.cache.path, exc)

    def _complete_timeout(self) -> float:
        """complete_upload verifies and installs: allow time for big games beyond the 30 s default."""
        return max(self.client.request_timeout, self.total / INSTALL_RATE)

    def _shortcut(self) -> m.CompleteShortcut:
        return m.CompleteShortcut(
            name=self.options.shortcut_name or self.options.game_name,
            exe=self.options.executable,
            launch_options=self.options.launch_options,
            artwork=self.options.artwork,
        )

    async def _cancel_quietly(self) -> None:
        if not self.upload_id:
            return
        with contextlib.suppress(HubError, asyncio.TimeoutError, OSError):
            await asyncio.wait_for(self.client.cancel_upload(self.upload_id), 5)

    async def _send_pass(self, reply: m.UploadInitResponse) -> None:
        """Send every byte the agent does not hold, keeping a window of chunks in flight."""
        held = reply.resume_from or {}
        chunk_size = reply.chunk_size
        plan: list[_PlannedFile] = []
        self.skipped = 0
        if self._sent_whole is None:  # the first pass: what the Agent holds now is not ours
            self._sent_whole = set()
            if self._agent_reports_hashes():
                self._sent_whole = {f.relative_path for f in self.files if held.get(f.relative_path, 0) == 0}
        for file in self.files:
            held_bytes = min(held.get(file.relative_path, 0), file.size)
            # resumeFrom is a verified prefix; resume at the chunk boundary at or before it.
            start = file.size if held_bytes >= file.size else held_bytes - held_bytes % chunk_size
            self.skipped += start
            if start < file.size:
                plan.append(_PlannedFile(file, start, self._running_hash(file), self._hash_unknown(file)))
        self.acked = 0
        window = SendWindow(self.options.window_bytes, WINDOW_CHUNKS)
        inflight: set[asyncio.Future[m.UploadChunkResponse]] = set()
        rejected: list[tuple[LocalFile, int, int, str]] = []
        lost: list[BaseException] = []

        def settle(file: LocalFile, offset: int, length: int, ack: asyncio.Future[m.UploadChunkResponse]) -> None:
            window.release(length)
            inflight.discard(ack)
            if ack.cancelled():
                return
            error = ack.exception()
            if error is None:
                self.acked += length
                self._report("uploading")
            elif isinstance(error, AgentError) and error.code == 400:
                rejected.append((file, offset, length, error.message))
            else:
                lost.append(error)

        for file in self.files:
            if self._hash_unknown(file) and held.get(file.relative_path, 0) >= file.size:
                if file.relative_path in self._sent_whole:
                    # Sent whole by an earlier pass; the Agent reports its hash.
                    _check_unchanged(file, await asyncio.to_thread(os.stat, file.path))
                else:
                    # Held already (maybe an older version of it), yet its hash is still needed.
                    self._computed[file.relative_path] = await asyncio.to_thread(sha256_of_file, file)
        reader = _PlanReader(plan, chunk_size)
        try:
            while not lost and (batch := await reader.next_batch()):
                for piece in batch:
                    if lost:
                        break
                    self._current = piece.file.relative_path
                    await window.acquire(len(piece.data))
                    ack = await self._send(piece.file, piece.offset, piece.data, piece.checksum, window)
                    inflight.add(ack)
                    ack.add_done_callback(functools.partial(settle, piece.file, piece.offset, len(piece.data)))
                    if piece.whole_file_sha256 is not None:
                        self._computed[piece.file.relative_path] = piece.whole_file_sha256
        finally:
            await reader.close()
        if inflight:
            await asyncio.wait(set(inflight))
        if lost:
            error = lost[0]
            raise error if isinstance(error, HubError) else ConnectionLost(str(error))
        await self._resend(rejected)

    def _hash_unknown(self, file: LocalFile) -> bool:
        """init_upload did not carry this file's hash and this deployment has not found it yet."""
        return self._hash_unknown_path(file.relative_path)

    def _hash_unknown_path(self, relative_path: str) -> bool:
        return relative_path not in self.hashes and relative_path not in self._computed

    def _running_hash(self, file: LocalFile) -> hashlib._Hash | None:
        """A fresh whole-file hash for a file whose hash is still unknown and that the Agent will
        not report, else None."""
        if not self._hash_unknown(file) or file.relative_path in (self._sent_whole or set()):
            return None
        return hashlib.sha256()

    async def _send(
        self, file: LocalFile, offset: int, data: bytes, checksum: str, window: SendWindow
    ) -> asyncio.Future[m.UploadChunkResponse]:
        header = _chunk_header(self.upload_id, file.relative_path, offset, checksum)
        try:
            ack = await self.client.send_chunk(header, data)
        except BaseException:
            window.release(len(data))
            raise
        self.sent += len(data)
        return ack

    async def _resend(self, rejected: list[tuple[LocalFile, int, int, str]]) -> None:
        """A chunk the agent rejected (checksum mismatch, say) is read again and re-sent, a few times."""
        for file, offset, length, first_error in rejected:
            reason = first_error
            for _ in range(CHUNK_RETRIES):
                data, checksum = await asyncio.to_thread(_read_chunk_at, file.path, offset, length)
                header = _chunk_header(self.upload_id, file.relative_path, offset, checksum)
                ack = await self.client.send_chunk(header, data)
                self.sent += len(data)
                try:
                    await ack
                except AgentError as error:
                    if error.code != 400:
                        raise
                    reason = error.message
                    continue
                self.acked += length
                break
            else:
                raise AgentError(400, f"{file.relative_path} at {offset}: rejected {CHUNK_RETRIES + 1} times ({reason})")

    def _report(self, phase: str, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < 0.1:
            return
        self._last_report = now
        elapsed = max(now - self._started, 1e-6)
        speed = self.acked / elapsed
        done = min(self.total, self.skipped + self.acked)
        left = self.total - done
        self._progress(
            DeployProgress(
                phase=phase,
                game_name=self.options.game_name,
                current_file=self._current,
                done_bytes=done,
                total_bytes=self.total,
                bytes_per_second=speed,
                # No guess from the first few bytes (an empty file acknowledged at once is no speed).
                seconds_remaining=left / speed if speed > 0 and self.acked >= ETA_AFTER_BYTES else None,
            )
        )


def _chunk_header(upload_id: str, relative_path: str, offset: int, checksum: str) -> m.ChunkHeader:
    """A chunk header built without validation: every field is already known good (the upload
    id from the Agent's validated reply, the path checked by the scan, a fresh id and digest),
    and validating a path per chunk costs a millisecond per file for games of many small files."""
    return m.ChunkHeader.model_construct(
        id=new_message_id(), upload_id=upload_id, file_path=relative_path, offset=offset, checksum=checksum
    )


def _read_chunk(
    handle: BinaryIO, offset: int, length: int, whole_file: hashlib._Hash | None = None
) -> tuple[bytes, str]:
    """Read one slice and its SHA-256, feeding `whole_file` too when given (chunks of a file are
    read in order). Runs in a worker thread; portable seek+read, no pread."""
    handle.seek(offset)
    data = handle.read(length)
    if len(data) != length:
        raise HubError(f"{handle.name} changed while deploying (short read at {offset})")
    if whole_file is not None:
        whole_file.update(data)
    return data, hashlib.sha256(data).hexdigest()


def _read_chunk_at(path: str, offset: int, length: int) -> tuple[bytes, str]:
    """`_read_chunk` of a file opened for it (runs in a worker thread)."""
    with open(path, "rb") as handle:
        return _read_chunk(handle, offset, length)


@dataclass(frozen=True, slots=True)
class _PlannedFile:
    file: LocalFile
    start: int  # the first byte to send (the Agent holds what comes before)
    running: hashlib._Hash | None  # the whole-file hash to feed as it is read, if the Hub computes it
    check: bool  # its hash is still unknown: make sure it is the scanned file once read


@dataclass(frozen=True, slots=True)
class _Piece:
    file: LocalFile
    offset: int
    data: bytes
    checksum: str
    whole_file_sha256: str | None  # with the file's last piece, when the Hub computed its hash


class _PlanReader:
    """The chunks of every planned file, in order, read and checksummed on a worker thread one
    batch ahead of the sender.

    A batch is up to READ_BATCH_BYTES or READ_BATCH_PIECES chunks, across file boundaries: a game
    of many small files costs a thread round trip per batch rather than per file, and its files are
    opened and closed on the worker thread, not on the event loop.
    """

    def __init__(self, plan: list[_PlannedFile], chunk_size: int) -> None:
        self._plan = plan
        self._chunk_size = chunk_size
        # Where the worker thread is; touched only by the one batch being read at a time.
        self._index = 0
        self._handle: BinaryIO | None = None
        self._offset = 0
        self._next = self._read_ahead()

    def _read_ahead(self) -> asyncio.Future[list[_Piece]] | None:
        if self._index >= len(self._plan):
            return None
        return asyncio.ensure_future(asyncio.to_thread(self._read_batch))

    async def next_batch(self) -> list[_Piece]:
        """The next batch of chunks; empty once every planned byte was read."""
        if self._next is None:
            return []
        batch = await self._next
        self._next = self._read_ahead()
        return batch

    def _read_batch(self) -> list[_Piece]:
        pieces: list[_Piece] = []
        size = 0
        while self._index < len(self._plan) and size < READ_BATCH_BYTES and len(pieces) < READ_BATCH_PIECES:
            planned = self._plan[self._index]
            file = planned.file
            if self._handle is None:
                self._handle = open(file.path, "rb")  # noqa: SIM115 - closed by the reader, file by file
                self._offset = planned.start
                if planned.running is not None and planned.start:
                    _feed_prefix(self._handle, planned.start, planned.running)
            offset = self._offset
            data, checksum = _read_chunk(self._handle, offset, min(self._chunk_size, file.size - offset), planned.running)
            self._offset += len(data)
            size += len(data)
            digest = None
            if self._offset >= file.size:
                if planned.check:
                    # Whoever hashes it (here or the Agent), the hash is kept only for the file
                    # that was scanned.
                    _check_unchanged(file, os.fstat(self._handle.fileno()))
                if planned.running is not None:
                    digest = planned.running.hexdigest()
                self._handle.close()
                self._handle = None
                self._index += 1
            pieces.append(_Piece(file, offset, data, checksum, digest))
        return pieces

    async def close(self) -> None:
        """Wait for a batch still being read (its thread uses the handle about to be closed)."""
        pending, self._next = self._next, None
        if pending is not None:
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # read, so an error of a chunk never sent is not reported
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _feed_prefix(handle: BinaryIO, end: int, hasher: hashlib._Hash) -> None:
    """Hash the part of a file the Agent already holds (a resumed upload), without sending it."""
    handle.seek(0)
    done = 0
    while done < end:
        data = handle.read(min(READ_BUFFER, end - done))
        if not data:
            raise FileChangedError(f"{handle.name} changed while deploying (it ends at {done})")
        hasher.update(data)
        done += len(data)


def _check_unchanged(file: LocalFile, now: os.stat_result) -> None:
    """A hash is only worth keeping if the file is still the one that was scanned."""
    if (now.st_size, now.st_mtime_ns) != (file.size, file.mtime_ns):
        raise FileChangedError(f"{file.relative_path} changed while deploying; deploy again")


async def prepare(
    folder: Path,
    cache: HashCache | None = None,
    progress: ProgressCallback | None = None,
    *,
    hash_uncached: bool = True,
) -> tuple[list[LocalFile], dict[str, str]]:
    """Scan the folder and hash its files (only those the cache does not know).

    With `hash_uncached=False`, only the cache is consulted: a `Deployment` hashes the rest as
    it sends them (or up front, for an Agent without the `complete_sha256` capability).
    """
    files = await asyncio.to_thread(scan_folder, folder)
    if cache is not None and cache.forget_missing(folder, files):
        try:
            await asyncio.to_thread(cache.save)
        except OSError as exc:
            log.warning("could not save the hash cache %s: %s", cache.path, exc)
    if not hash_uncached:
        known = {f.relative_path: h for f in files if cache is not None and (h := cache.lookup(f)) is not None}
        return files, known
    hashes = await hash_files(files, cache) if cache is not None else await hash_files(files, None)
    return files, hashes


async def deploy_folder(
    client: HubClient,
    folder: Path,
    options: DeployOptions,
    progress: ProgressCallback | None = None,
    *,
    cache: HashCache | None = None,
    prepared: tuple[list[LocalFile], dict[str, str]] | None = None,
) -> DeployResult:
    keep_freed_memory()
    files, hashes = prepared if prepared is not None else await prepare(folder, cache, hash_uncached=False)
    return await Deployment(client, files, hashes, options, progress, cache=cache).run()
