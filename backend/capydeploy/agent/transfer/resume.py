"""Rebuild a staged upload after an Agent restart: re-verify every journaled chunk against the disk.

Runs in a worker thread before the session is visible to anyone else. A chunk counts only if the
bytes on disk still hash to what the journal recorded, so a write torn by a crash, a page lost with
the power, or a file edited by hand is simply sent again.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from .file_table import StagedFile
from .filehash import Hasher, new_hasher
from .filesystem import FileWriter, read_exactly, remove_path
from .journal import ChunkJournal, ChunkRecord, read_journal
from .session import Signature, UploadSession
from .staging import SessionRecord, StagingLayout


def load_staged_session(
    record: SessionRecord, layout: StagingLayout, writer: FileWriter, now: float, piece: int, *, signature: Signature
) -> UploadSession:
    session = UploadSession(record, layout, writer, now, signature)
    journaled = read_journal(layout.journal_file, len(session.files))
    for staged in session.files:
        _discard_foreign_file(staged.path)
        records = journaled.get(staged.index)
        if records:
            _verify_file(session, staged, records, writer, piece)
    session.journal = ChunkJournal(layout.journal_file)
    return session


def _discard_foreign_file(path: Path) -> None:
    """A staged path that is not a plain, unshared file must not be written through.

    Hard links are made only for carried files, which are never journaled; one found here may
    share its data with an installed game, so writing into it could damage that game.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        remove_path(path)


def _verify_file(
    session: UploadSession, staged: StagedFile, records: list[ChunkRecord], writer: FileWriter, piece: int
) -> None:
    if not staged.path.exists():
        return
    hasher: Hasher = new_hasher()
    upto = 0
    handle = session.handles.acquire(staged.path)
    try:
        # In offset order, so the whole-file hash can be rebuilt from the same reads.
        for rec in sorted(records, key=lambda r: (r.offset, r.length)):
            end = rec.offset + rec.length
            if end > staged.size:
                continue
            feeds = rec.offset <= upto < end
            extend = (hasher.copy(), upto) if feeds else None
            ok, extended = _check_record(writer, handle, rec, piece, extend)
            if not ok:
                continue
            session.add_held(staged, rec.offset, end)
            if extended is not None:
                hasher, upto = extended, end
    finally:
        session.handles.release(staged.path)
    staged.digest.restore(hasher, upto)


def _check_record(
    writer: FileWriter, handle: int, rec: ChunkRecord, piece: int, extend: tuple[Hasher, int] | None
) -> tuple[bool, Hasher | None]:
    """Stream the record's bytes once: verify its sha256 and, when given a (file hash, upto), extend
    that whole-file hash past `upto` with the same reads."""
    file_hasher, upto = extend if extend is not None else (None, 0)
    chunk_hasher = hashlib.sha256()
    offset = rec.offset
    end = rec.offset + rec.length
    while offset < end:
        length = min(piece, end - offset)
        data = read_exactly(writer, handle, length, offset)
        if len(data) != length:
            return False, None
        chunk_hasher.update(data)
        if file_hasher is not None and offset + length > upto:
            file_hasher.update(memoryview(data)[max(0, upto - offset) :])
        offset += length
    if chunk_hasher.hexdigest() != rec.sha256:
        return False, None
    return True, file_hasher
