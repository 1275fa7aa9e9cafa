"""The file layer under staging: a replaceable writer (for fault tests) and a few careful path helpers."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import shutil
import stat
import sys
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from ...libc import linux_libc_function

# A path as os.open takes it: per-file paths are plain strings where a Path would intern each
# file's name (pathlib does), for up to 100 000 files.
StrPath = str | os.PathLike[str]

BytesLike = bytes | bytearray | memoryview

# Linux PATH_MAX counts the terminating NUL; longer paths fail with ENAMETOOLONG.
MAX_PATH_BYTES = 4095

STAGED_FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
DIRECTORY_MODE = 0o755


@runtime_checkable
class FileWriter(Protocol):
    """Every byte of staged data is written through one of these.

    Handles are opaque ints (file descriptors for the real writer). A test substitutes a writer
    that raises `OSError(errno.ENOSPC)` at a chosen byte to prove a failing disk never damages the
    installed game.
    """

    def open(self, path: StrPath) -> int:
        """Open `path` for reading and writing, creating it (mode 0644) when missing."""
        ...

    def pwrite(self, handle: int, data: BytesLike, offset: int) -> int:
        """Write at `offset`; may write fewer bytes than given (like os.pwrite)."""
        ...

    def pread(self, handle: int, length: int, offset: int) -> bytes: ...

    def truncate(self, handle: int, size: int) -> None: ...

    def fsync(self, handle: int) -> None: ...

    def start_writeback(self, handle: int, offset: int, length: int) -> None:
        """Ask the OS to start writing `[offset, offset+length)` to disk now, without waiting.

        Only a hint: the fsync at completion still guarantees durability; this just lets the disk
        work during the upload instead of all at the end.
        """
        ...

    def sync_filesystem(self, folder: Path) -> bool:
        """Make everything written to the filesystem that holds `folder` durable, in one call;
        False when this platform cannot (the caller then fsyncs each file)."""
        ...

    def close(self, handle: int) -> None: ...

    def release_buffers(self) -> int:
        """Free the memory kept for writing between uploads (called when none is being received);
        returns how many buffers were freed."""
        ...


_SYNCFS = linux_libc_function("syncfs", (ctypes.c_int,))
_SYNC_FILE_RANGE = linux_libc_function("sync_file_range", (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint))
_SYNC_FILE_RANGE_WRITE = 2  # start write-out of dirty pages, do not wait

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_OPEN_FLAGS = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
# Direct I/O wants the buffer, the offset and the length aligned to the device's logical block
# (512 B or 4 KiB); 4 KiB suits both.
DIRECT_ALIGNMENT = 4096
# Smaller writes (small files, a file's last piece) go through the page cache: a direct write
# waits for the device, which only pays off for large pieces.
DIRECT_MIN_BYTES = 256 * 1024


class _AlignedBufferPool:
    """Page-aligned buffers (anonymous mmaps) for direct writes, reused: at most one per writing
    thread exists at a time. `release` unmaps those not in use, so an Agent between uploads holds
    none (each is a chunk's size, 1 MiB)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[mmap.mmap] = []

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            while self._free:
                buffer = self._free.pop()
                if len(buffer) >= size:
                    return buffer
                buffer.close()
        return mmap.mmap(-1, size)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            self._free.append(buffer)

    def release(self) -> int:
        with self._lock:
            free, self._free = self._free, []
        for buffer in free:
            buffer.close()
        return len(free)


class OsFileWriter:
    """The real writer: plain file descriptors, positional I/O (no shared file offset between threads).

    Large aligned pieces are written with `O_DIRECT` through a second descriptor of the same file,
    straight from an aligned buffer to the disk. A game is written once and not read back during
    the upload, so the page cache only costs: the copy into it is the largest CPU cost of a
    chunk (docs/performance.md), and gigabytes of dirty pages would push out what the running
    system (a game, Steam) keeps cached. Every other write, and every read, uses the ordinary
    descriptor; the kernel keeps the two coherent. A filesystem that refuses `O_DIRECT` (EINVAL,
    e.g. some FUSE mounts) gets page-cache writes only.
    """

    def __init__(self, direct_io: bool = True) -> None:
        self._direct_io = direct_io and _O_DIRECT != 0
        # The path of each open file that may still get its O_DIRECT twin: opened at its first
        # large aligned write, so a small file (most of a game of many files) costs one open.
        self._paths: dict[int, StrPath] = {}
        self._direct_handles: dict[int, int] = {}  # ordinary descriptor -> its O_DIRECT twin
        # Files whose twin could not be opened or failed with EINVAL; a refused twin is closed with
        # the file, not at once, as another thread may be writing through it.
        self._direct_refused: set[int] = set()
        self._twin_lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._buffers = _AlignedBufferPool()

    def open(self, path: StrPath) -> int:
        # One creation at a time: the kernel serialises them per folder anyway, and worker threads
        # racing for a folder's lock spin on it (ext4: twice the CPU for a game of many small files).
        with self._create_lock:
            handle = os.open(path, _OPEN_FLAGS | os.O_CREAT, STAGED_FILE_MODE)
        if self._direct_io:
            self._paths[handle] = path
        return handle

    def writes_directly(self, handle: int) -> bool:
        """Whether large aligned writes to this file bypass the page cache (so far: a file whose
        twin has not been needed yet is expected to)."""
        return handle in self._paths and handle not in self._direct_refused

    def _twin(self, handle: int) -> int | None:
        """The O_DIRECT descriptor of `handle`, opened on first use; None if there is none."""
        direct = self._direct_handles.get(handle)
        if direct is not None or handle not in self._paths or handle in self._direct_refused:
            return direct
        with self._twin_lock:  # two threads may write large pieces of one file at once
            direct = self._direct_handles.get(handle)
            if direct is None and handle not in self._direct_refused:
                try:
                    direct = self._direct_handles[handle] = os.open(self._paths[handle], _OPEN_FLAGS | _O_DIRECT)
                except OSError:
                    self._direct_refused.add(handle)  # no direct I/O on this filesystem
        return direct

    def pwrite(self, handle: int, data: BytesLike, offset: int) -> int:
        aligned_and_large = offset % DIRECT_ALIGNMENT == 0 and len(data) >= DIRECT_MIN_BYTES
        direct = self._twin(handle) if aligned_and_large else None
        if direct is not None and handle not in self._direct_refused:
            length = len(data) - len(data) % DIRECT_ALIGNMENT
            buffer = self._buffers.take(length)
            try:
                buffer[:length] = memoryview(data)[:length]
                with memoryview(buffer) as view, view[:length] as piece:
                    # A short count leaves the rest (and the unaligned tail) to write_all's next call.
                    return os.pwrite(direct, piece, offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct_refused.add(handle)  # refused after all: this file goes through the cache
            finally:
                self._buffers.give(buffer)
        return os.pwrite(handle, data, offset)

    def release_buffers(self) -> int:
        return self._buffers.release()

    def pread(self, handle: int, length: int, offset: int) -> bytes:
        return os.pread(handle, length, offset)

    def truncate(self, handle: int, size: int) -> None:
        os.ftruncate(handle, size)

    def fsync(self, handle: int) -> None:
        os.fsync(handle)

    def start_writeback(self, handle: int, offset: int, length: int) -> None:
        # A hint, so failures are ignored: the final fsync reports any real I/O error.
        if _SYNC_FILE_RANGE is not None:
            _SYNC_FILE_RANGE(handle, offset, length, _SYNC_FILE_RANGE_WRITE)

    def sync_filesystem(self, folder: Path) -> bool:
        if _SYNCFS is None:
            return False
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            if _SYNCFS(handle) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(handle)
        return True

    def close(self, handle: int) -> None:
        self._paths.pop(handle, None)
        self._direct_refused.discard(handle)
        direct = self._direct_handles.pop(handle, None)
        if direct is not None:
            os.close(direct)
        os.close(handle)


def write_all(writer: FileWriter, handle: int, data: BytesLike, offset: int) -> None:
    """pwrite until every byte is down; a short write is retried, a zero-byte one is an I/O error."""
    view = memoryview(data)
    done = 0
    total = len(view)
    while done < total:
        written = writer.pwrite(handle, view[done:], offset + done)
        if written <= 0:
            raise OSError(errno.EIO, "the disk accepted no bytes")
        done += written


def read_exactly(writer: FileWriter, handle: int, length: int, offset: int) -> bytes:
    """pread `length` bytes, or fewer only when the file ends first."""
    data = writer.pread(handle, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = writer.pread(handle, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def disk_free_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the filesystem that holds (or will hold) `path`."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def is_inside(path: Path, root: Path) -> bool:
    """True when `path` is `root` or below it (both already resolved)."""
    return path == root or path.is_relative_to(root)


def remove_path(path: Path) -> None:
    """Remove a file, a symlink (never what it points to) or a whole folder; missing is fine."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        # Another thread may be deleting part of the same tree (the trash is emptied both by the
        # job after an install and by the periodic clean-up): what it removed first is done.
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=_unless_vanished)
        else:
            shutil.rmtree(path, onerror=lambda _fn, _path, exc_info: _unless_vanished(_fn, _path, exc_info[1]))
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _unless_vanished(_fn: object, _path: object, exc: BaseException) -> None:
    """rmtree's error handler: an entry already gone is fine, anything else is raised."""
    if not isinstance(exc, FileNotFoundError):
        raise exc


def allocated_bytes(folder: Path) -> int:
    """Disk space a folder's files take that deleting it would free (hard-linked files free nothing)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            try:
                info = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                total += info.st_blocks * 512
    return total
