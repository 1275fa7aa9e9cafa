"""Helpers for the transfer tests: requests, chunk frames, tree snapshots, a fake clock, a failing disk."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from capydeploy.agent.transfer import OsFileWriter, TransferService, install
from capydeploy.agent.transfer.filesystem import BytesLike, StrPath
from capydeploy.protocol.frames import ChunkFrame
from capydeploy.protocol.messages import ChunkHeader, InitUpload, UploadConfig, UploadFile

HUB = "hub-a"
OTHER_HUB = "hub-b"
CHUNK = 1024  # small chunks: many per file, fast tests


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_request(
    game: str,
    files: dict[str, bytes],
    *,
    exe: str | None = None,
    install_path: str | None = None,
    with_sha: bool = True,
) -> InitUpload:
    return InitUpload(
        config=UploadConfig(game_name=game, executable=exe, install_path=install_path),
        total_size=sum(len(data) for data in files.values()),
        files=[
            UploadFile(relative_path=path, size=len(data), sha256=sha(data) if with_sha else None)
            for path, data in files.items()
        ],
    )


def game_version(seed: int) -> dict[str, bytes]:
    """A small game whose version `seed` differs from others in notes.txt (and nowhere else if the
    seed is the same): an executable, files in a folder, some of several chunks."""
    rng = random.Random(seed)
    return {
        "game.exe": rng.randbytes(3 * CHUNK + 1),
        "data/level1.pak": rng.randbytes(4 * CHUNK),
        "data/level2.pak": rng.randbytes(2 * CHUNK + 7),
        "notes.txt": b"v%d" % seed,
    }


def frame(upload_id: str, path: str, offset: int, data: bytes, checksum: str | None = "auto") -> ChunkFrame:
    header = ChunkHeader(
        id=f"c-{offset}",
        upload_id=upload_id,
        file_path=path,
        offset=offset,
        checksum=sha(data) if checksum == "auto" else checksum,
    )
    return ChunkFrame(header=header, data=memoryview(data))


def frames_for(
    upload_id: str, path: str, data: bytes, start: int = 0, chunk: int = CHUNK
) -> list[ChunkFrame]:
    return [
        frame(upload_id, path, offset, data[offset : offset + chunk])
        for offset in range(start, len(data), chunk)
    ]


def all_frames(
    upload_id: str, files: dict[str, bytes], resume_from: dict[str, int] | None = None, chunk: int = CHUNK
) -> list[ChunkFrame]:
    """Frames for every byte not covered by `resume_from` (the Hub resumes from that offset)."""
    held = resume_from or {}
    frames: list[ChunkFrame] = []
    for path, data in files.items():
        frames.extend(frames_for(upload_id, path, data, start=held.get(path, 0), chunk=chunk))
    return frames


async def send(service: TransferService, frames: Iterable[ChunkFrame], hub: str = HUB) -> int:
    total = 0
    for item in frames:
        total = (await service.write_chunk(hub, item)).total_written
    return total


async def upload(
    service: TransferService,
    game: str,
    files: dict[str, bytes],
    *,
    exe: str | None = None,
    hub: str = HUB,
    install_path: str | None = None,
) -> Path:
    """A whole upload through the service; returns the installed folder."""
    reply = await service.init_upload(hub, make_request(game, files, exe=exe, install_path=install_path))
    await send(service, all_frames(reply.upload_id, files, reply.resume_from), hub)
    installed = await service.complete_upload(hub, reply.upload_id)
    return installed.path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative '/' path -> content), folders as b'<dir>'."""
    result: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        for name in dirnames:
            result[(base / name).relative_to(folder).as_posix() + "/"] = b"<dir>"
        for name in filenames:
            path = base / name
            result[path.relative_to(folder).as_posix()] = path.read_bytes()
    return result


def tree_of(files: dict[str, bytes]) -> dict[str, bytes]:
    """`snapshot`'s view of a game of `files`: its folders too."""
    expected = dict(files)
    for path in files:
        parent = path.rpartition("/")[0]
        while parent:
            expected[parent + "/"] = b"<dir>"
            parent = parent.rpartition("/")[0]
    return expected


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative '/' path -> content), without the folders."""
    return {path: data for path, data in snapshot(folder).items() if not path.endswith("/")}


def listing(folder: Path) -> set[str]:
    """Every entry under `folder`, hidden ones included (to prove nothing was written)."""
    if not folder.exists():
        return set()
    return {
        Path(dirpath, name).relative_to(folder).as_posix()
        for dirpath, dirs, files in os.walk(folder)
        for name in dirs + files
    }


def staging_root(games: Path) -> Path:
    return games / ".capydeploy" / "staging"


def staged_file(games: Path, upload_id: str, path: str) -> Path:
    return staging_root(games) / upload_id / "tree" / path


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FailingWriter(OsFileWriter):
    """Accepts `budget` bytes of staged data, then fails like a full (or broken) disk."""

    def __init__(self, budget: int, error: int = errno.ENOSPC) -> None:
        super().__init__()
        self.budget = budget
        self.error = error
        self.written = 0
        self.fail_fsync = False
        self._lock = threading.Lock()

    def pwrite(self, handle: int, data: BytesLike, offset: int) -> int:
        with self._lock:
            room = self.budget - self.written
            if room <= 0:
                raise OSError(self.error, os.strerror(self.error))
            count = min(room, len(data))
            self.written += count
        return super().pwrite(handle, memoryview(data)[:count], offset)

    def fsync(self, handle: int) -> None:
        if self.fail_fsync:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fsync(handle)

    def sync_filesystem(self, folder: Path) -> bool:
        if self.fail_fsync:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return super().sync_filesystem(folder)


class BlockingFsync(OsFileWriter):
    """fsync blocks, once armed, until released: the install is caught in its worker thread."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def fsync(self, handle: int) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(60)  # a hang guard
        super().fsync(handle)


@contextlib.contextmanager
def swap_failing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """While inside, moving a staged tree into place fails with EIO, as a disk error would."""
    real_rename = os.rename

    def failing_rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if Path(src).name == "tree":
            raise OSError(errno.EIO, "I/O error")
        real_rename(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(install.os, "rename", failing_rename)
        yield


class RecordingWriter(OsFileWriter):
    """Notes which files were fsynced (by the path they were opened with), and each syncfs."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: dict[int, str] = {}
        self.fsynced: list[str] = []
        self.synced_filesystems: list[Path] = []

    def open(self, path: StrPath) -> int:
        handle = super().open(path)
        self.opened[handle] = os.fspath(path)
        return handle

    def fsync(self, handle: int) -> None:
        self.fsynced.append(self.opened[handle])
        super().fsync(handle)

    def sync_filesystem(self, folder: Path) -> bool:
        self.synced_filesystems.append(folder)
        return super().sync_filesystem(folder)
