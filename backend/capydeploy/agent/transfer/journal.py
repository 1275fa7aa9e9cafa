"""The append-only record of the chunks a staged upload wrote, so an Agent restart can resume it.

One line per event, each appended with a single `write` on an O_APPEND descriptor (atomic between
threads, no fsync per chunk):

    C <fileIndex> <offset> <length> <sha256>   a verified chunk was written
    R <fileIndex>                              forget every earlier chunk of that file

A record only claims what was written; on restart every chunk is read back and re-hashed before it
counts, so a torn write or a lost page is never mistaken for data.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RESETS_PER_WRITE = 4096

_CHUNK = re.compile(r"^C (\d+) (\d+) (\d+) ([0-9a-f]{64})$")
_RESET = re.compile(r"^R (\d+)$")


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    file_index: int
    offset: int
    length: int
    sha256: str


class ChunkJournal:
    """Appends records for one staged upload; safe to call from several worker threads."""

    def __init__(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(path, flags, 0o644)
        self._lock = threading.Lock()

    def append_chunk(self, record: ChunkRecord) -> None:
        self._append(f"C {record.file_index} {record.offset} {record.length} {record.sha256}\n")

    def append_reset(self, file_index: int) -> None:
        self._append(f"R {file_index}\n")

    def append_resets(self, file_indices: Sequence[int]) -> None:
        """Reset many files, a few thousand records to a write rather than one each."""
        for start in range(0, len(file_indices), RESETS_PER_WRITE):
            self._append("".join(f"R {index}\n" for index in file_indices[start : start + RESETS_PER_WRITE]))

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _append(self, line: str) -> None:
        # The lock only guards the descriptor against close(); O_APPEND keeps lines whole.
        with self._lock:
            if self._fd is None:
                raise OSError("the upload journal is closed")
            os.write(self._fd, line.encode("ascii"))


def read_journal(path: Path, file_count: int) -> dict[int, list[ChunkRecord]]:
    """Records per file index, resets applied; a torn or garbled line is skipped."""
    try:
        text = path.read_bytes().decode("ascii", errors="replace")
    except FileNotFoundError:
        return {}
    lines = text.split("\n")
    # The last element is "" after a complete final line, or a torn record: ignore it either way.
    records: dict[int, list[ChunkRecord]] = {}
    for line in lines[:-1]:
        match = _CHUNK.match(line)
        if match is not None:
            index, offset, length = int(match[1]), int(match[2]), int(match[3])
            if index < file_count and length > 0:
                records.setdefault(index, []).append(ChunkRecord(index, offset, length, match[4]))
            continue
        reset = _RESET.match(line)
        if reset is not None:
            records.pop(int(reset[1]), None)
    return records
