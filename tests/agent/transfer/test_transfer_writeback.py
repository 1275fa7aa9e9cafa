"""Staged data is handed to the disk during the upload, so the fsync at completion has little left."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest

from capydeploy.agent.transfer import OsFileWriter
from capydeploy.agent.transfer import service as service_module
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import HUB, all_frames, make_request, send

BLOCK = 4096


class RecordingWriter(OsFileWriter):
    def __init__(self) -> None:
        super().__init__()
        self.hints: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def start_writeback(self, handle: int, offset: int, length: int) -> None:
        with self._lock:
            self.hints.append((offset, length))
        super().start_writeback(handle, offset, length)


@pytest.mark.parametrize("order", ["in order", "reversed"])
async def test_each_completed_block_is_handed_to_the_disk_once(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    monkeypatch.setattr(service_module, "WRITEBACK_BLOCK", BLOCK)
    writer = RecordingWriter()
    service = make_service(filesystem=writer)
    data = os.urandom(3 * BLOCK + 100)  # three whole blocks and a tail
    reply = await service.init_upload(HUB, make_request("Game", {"big.bin": data}))
    frames = all_frames(reply.upload_id, {"big.bin": data})
    await send(service, frames if order == "in order" else list(reversed(frames)))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "big.bin").read_bytes() == data
    if order == "in order":
        # The chunk that ends a block (or crosses its edge) starts the write-out of that block.
        assert writer.hints == [(0, BLOCK), (BLOCK, BLOCK), (2 * BLOCK, BLOCK)]
    else:
        # Out of order a block edge may be crossed before the block is whole; still one hint per
        # edge, each for a whole block, and never past the data.
        assert sorted(writer.hints) == [(0, BLOCK), (BLOCK, BLOCK), (2 * BLOCK, BLOCK)]


def test_the_real_writers_hint_leaves_the_data_intact(tmp_path: Path) -> None:
    writer = OsFileWriter()
    path = tmp_path / "staged.bin"
    handle = writer.open(path)
    try:
        data = os.urandom(3 * BLOCK)
        assert writer.pwrite(handle, data, 0) == len(data)
        writer.start_writeback(handle, 0, 2 * BLOCK)
        writer.start_writeback(handle, 10 * BLOCK, BLOCK)  # beyond the end: harmless
        writer.fsync(handle)
    finally:
        writer.close(handle)
    assert path.read_bytes() == data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
async def test_disk_and_hash_workers_run_below_the_event_loop(make_service: ServiceFactory) -> None:
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    service = make_service()

    def own_nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    worker_nice = await asyncio.wrap_future(service._pool.submit(own_nice))
    hash_nice = await asyncio.wrap_future(service._hash_pool.submit(own_nice))
    expected = min(19, loop_nice + service_module.WORKER_NICENESS)
    assert worker_nice == hash_nice == expected
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice  # the loop keeps its own


class SyncCountingWriter(OsFileWriter):
    def __init__(self, can_sync_filesystem: bool = True) -> None:
        super().__init__()
        self.fsyncs = 0
        self.filesystem_syncs = 0
        self.can_sync_filesystem = can_sync_filesystem
        self._lock = threading.Lock()

    def fsync(self, handle: int) -> None:
        with self._lock:
            self.fsyncs += 1
        super().fsync(handle)

    def sync_filesystem(self, folder: Path) -> bool:
        if not self.can_sync_filesystem:
            return False
        with self._lock:
            self.filesystem_syncs += 1
        return super().sync_filesystem(folder)


def _many_files(count: int) -> dict[str, bytes]:
    return {f"data/{i // 10}/f{i}.bin": os.urandom(100 + i) for i in range(count)}


@pytest.mark.parametrize("can_sync_filesystem", [True, False], ids=["syncfs", "no syncfs: fsync each"])
async def test_many_files_are_made_durable_with_one_filesystem_sync(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, can_sync_filesystem: bool
) -> None:
    from capydeploy.agent.transfer import install

    monkeypatch.setattr(install, "SYNCFS_FROM_FILES", 8)
    writer = SyncCountingWriter(can_sync_filesystem)
    service = make_service(filesystem=writer)
    files = _many_files(30)
    reply = await service.init_upload(HUB, make_request("Many", files))
    await send(service, all_frames(reply.upload_id, files))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert {p: (installed.path / p).read_bytes() for p in files} == files
    if can_sync_filesystem and sys.platform.startswith("linux"):
        assert (writer.filesystem_syncs, writer.fsyncs) == (1, 0)
    else:
        assert (writer.filesystem_syncs, writer.fsyncs) == (0, 30)
    # The manifest took each file's mtime from completion's own look at it: right, since the
    # next deploy of the same files carries every one of them.
    again = await service.init_upload(HUB, make_request("Many", files))
    assert again.resume_from == {path: len(data) for path, data in files.items()}


async def test_few_files_are_fsynced_one_by_one(make_service: ServiceFactory) -> None:
    writer = SyncCountingWriter()
    service = make_service(filesystem=writer)
    files = _many_files(5)
    reply = await service.init_upload(HUB, make_request("Few", files))
    await send(service, all_frames(reply.upload_id, files))
    await service.complete_upload(HUB, reply.upload_id)
    assert (writer.filesystem_syncs, writer.fsyncs) == (0, 5)
