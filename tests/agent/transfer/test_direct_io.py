"""The real writer's O_DIRECT path: large aligned pieces skip the page cache, nothing else changes.

Every test compares the file on disk with a model of what was written, so the direct path, the
page-cache path, their mix in one file and the fallbacks must all give the same bytes.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capydeploy.agent.transfer import OsFileWriter
from capydeploy.agent.transfer import filesystem as filesystem_module
from capydeploy.agent.transfer.filesystem import DIRECT_ALIGNMENT, DIRECT_MIN_BYTES, write_all
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import HUB, all_frames, make_request, send

MiB = 1024 * 1024


def direct_io_supported(folder: Path) -> bool:
    """Whether the filesystem under `folder` accepts O_DIRECT (tmpfs before Linux 6.6 does not)."""
    if not hasattr(os, "O_DIRECT"):
        return False
    probe = folder / ".direct-probe"
    try:
        handle = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(handle)
    probe.unlink()
    return True


def write_and_read_back(writer: OsFileWriter, path: Path, writes: list[tuple[int, bytes]]) -> bytes:
    handle = writer.open(path)
    try:
        for offset, data in writes:
            write_all(writer, handle, data, offset)
        writer.fsync(handle)
    finally:
        writer.close(handle)
    return path.read_bytes()


def model_of(writes: list[tuple[int, bytes]]) -> bytes:
    content = bytearray()
    for offset, data in writes:
        if not data:
            continue  # an empty write does not extend a file
        if len(content) < offset + len(data):
            content.extend(bytes(offset + len(data) - len(content)))
        content[offset : offset + len(data)] = data
    return bytes(content)


def test_large_aligned_writes_use_the_direct_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not direct_io_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    real_open = os.open
    direct_opens: list[object] = []

    def recording_open(path: object, flags: int, *args: int) -> int:
        if flags & filesystem_module._O_DIRECT:
            direct_opens.append(path)
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", recording_open)
    writer = OsFileWriter()
    small = {"small.bin": [(0, os.urandom(50 * 1024))], "tail.bin": [(0, os.urandom(DIRECT_MIN_BYTES - 1))]}
    for name, writes in small.items():
        assert write_and_read_back(writer, tmp_path / name, writes) == model_of(writes)
    assert direct_opens == []  # a file with no large aligned piece costs one open, not two
    handle = writer.open(tmp_path / "big.bin")
    try:
        write_all(writer, handle, os.urandom(MiB), 0)
        write_all(writer, handle, os.urandom(MiB), MiB)
        assert writer.writes_directly(handle)
        assert direct_opens == [tmp_path / "big.bin"]  # opened once, at the first large write
    finally:
        writer.close(handle)
    assert not OsFileWriter(direct_io=False).writes_directly(-1)


def test_chunks_tails_and_small_writes_land_byte_for_byte(tmp_path: Path) -> None:
    # Whole 1 MiB chunks (direct), a file's unaligned last piece (direct for its aligned part,
    # the page cache for the rest), a small file-sized write and an unaligned offset (page cache).
    writes = [
        (0, os.urandom(MiB)),
        (MiB, os.urandom(MiB)),
        (2 * MiB, os.urandom(DIRECT_MIN_BYTES + DIRECT_ALIGNMENT + 123)),
        (4 * MiB, os.urandom(50 * 1024)),
        (5 * MiB + 7, os.urandom(DIRECT_MIN_BYTES * 2)),
    ]
    assert write_and_read_back(OsFileWriter(), tmp_path / "game.bin", writes) == model_of(writes)


def test_a_resent_chunk_over_cached_bytes_replaces_them(tmp_path: Path) -> None:
    # The first copy goes through the page cache (unaligned), the re-send directly over it: the
    # kernel must not let the stale cached pages win, neither for a read nor on disk.
    first = os.urandom(2 * MiB)
    second = os.urandom(MiB)
    writes = [(1, first[: MiB + 10]), (0, second), (MiB, first[:MiB])]
    writer = OsFileWriter()
    path = tmp_path / "resent.bin"
    handle = writer.open(path)
    try:
        for offset, data in writes:
            write_all(writer, handle, data, offset)
        assert writer.pread(handle, MiB, 0) == second  # through the ordinary descriptor
    finally:
        writer.close(handle)
    assert path.read_bytes() == model_of(writes)


def test_a_filesystem_that_refuses_o_direct_gets_page_cache_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refusing_open(path: object, flags: int, *args: int) -> int:
        if flags & filesystem_module._O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    writer = OsFileWriter()
    writes = [(0, os.urandom(MiB)), (MiB, os.urandom(MiB + 5))]
    path = tmp_path / "fuse.bin"
    handle = writer.open(path)
    try:
        for offset, data in writes:
            write_all(writer, handle, data, offset)
        assert not writer.writes_directly(handle)  # the twin was refused at its first use
    finally:
        writer.close(handle)
    assert path.read_bytes() == model_of(writes)


def test_a_direct_write_refused_later_falls_back_for_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not direct_io_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    writer = OsFileWriter()
    path = tmp_path / "odd.bin"
    handle = writer.open(path)
    direct_handle = writer._twin(handle)  # opened now rather than at the first large write
    real_pwrite = os.pwrite
    refused: list[int] = []

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if fd == direct_handle:
            refused.append(offset)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    writes = [(0, os.urandom(MiB)), (MiB, os.urandom(MiB))]
    try:
        for offset, data in writes:
            write_all(writer, handle, data, offset)
        assert refused == [0]  # tried once, then never again for this file
        assert not writer.writes_directly(handle)
    finally:
        writer.close(handle)
    assert path.read_bytes() == model_of(writes)


def test_other_direct_write_errors_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A full disk must reach the caller (an error reply), not be hidden by a retry elsewhere.
    if not direct_io_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    writer = OsFileWriter()
    handle = writer.open(tmp_path / "full.bin")
    direct_handle = writer._twin(handle)  # opened now rather than at the first large write
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if fd == direct_handle:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    try:
        with pytest.raises(OSError) as caught:
            write_all(writer, handle, os.urandom(MiB), 0)
        assert caught.value.errno == errno.ENOSPC
    finally:
        writer.close(handle)


piece = st.tuples(
    st.integers(min_value=0, max_value=24).map(lambda blocks: blocks * 64 * 1024),
    st.integers(min_value=0, max_value=3),  # 0: aligned offset; otherwise nudged off alignment
    st.integers(min_value=0, max_value=MiB + DIRECT_ALIGNMENT),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(piece, min_size=1, max_size=6), seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_any_mix_of_writes_matches_the_model(
    tmp_path: Path, pieces: list[tuple[int, int, int]], seed: int
) -> None:
    rng = random.Random(seed)
    writes = [(base + nudge * 513, rng.randbytes(length)) for base, nudge, length in pieces]
    path = tmp_path / f"mix-{seed}.bin"
    assert write_and_read_back(OsFileWriter(), path, writes) == model_of(writes)
    path.unlink()


def test_write_buffers_are_reused_and_freed_on_release(tmp_path: Path) -> None:
    if not direct_io_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    writer = OsFileWriter()
    first = [(0, os.urandom(MiB)), (MiB, os.urandom(MiB))]
    assert write_and_read_back(writer, tmp_path / "a.bin", first) == model_of(first)
    assert writer.release_buffers() == 1  # one thread wrote: one buffer, used for both chunks
    assert writer.release_buffers() == 0
    # Writing after a release maps a new buffer; the bytes are as good.
    again = [(0, os.urandom(2 * MiB))]
    assert write_and_read_back(writer, tmp_path / "b.bin", again) == model_of(again)
    assert writer.release_buffers() == 1


def test_threads_writing_at_once_each_get_their_own_buffer(tmp_path: Path) -> None:
    if not direct_io_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    writer = OsFileWriter()
    payloads = {index: os.urandom(4 * MiB) for index in range(4)}
    start = threading.Barrier(len(payloads))

    def write(index: int) -> bytes:
        start.wait()
        writes = [(offset, payloads[index][offset : offset + MiB]) for offset in range(0, 4 * MiB, MiB)]
        return write_and_read_back(writer, tmp_path / f"{index}.bin", writes)

    with ThreadPoolExecutor(len(payloads)) as pool:
        results = dict(zip(payloads, pool.map(write, payloads), strict=True))
    assert results == payloads  # no buffer was shared between two writes in flight
    assert 1 <= writer.release_buffers() <= len(payloads)


async def test_an_installed_upload_leaves_no_write_buffer_behind(
    make_service: ServiceFactory, games: Path
) -> None:
    if not direct_io_supported(games):
        pytest.skip("this filesystem refuses O_DIRECT")
    writer = OsFileWriter()
    service = make_service(filesystem=writer, chunk_size=MiB)
    files = {"game.bin": os.urandom(3 * MiB)}
    reply = await service.init_upload(HUB, make_request("Game", files))
    await send(service, all_frames(reply.upload_id, files, chunk=MiB))
    await service.complete_upload(HUB, reply.upload_id)
    assert (games / "Game" / "game.bin").read_bytes() == files["game.bin"]
    # The chunks were written directly (through a buffer), and completion freed it.
    assert writer.release_buffers() == 0
    # The control: writing without completing keeps the buffer until someone releases it.
    reply = await service.init_upload(HUB, make_request("Other", files))
    await send(service, all_frames(reply.upload_id, files, chunk=MiB)[:1])
    assert service.release_buffers() == 1


def test_files_are_created_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Worker threads racing to create files in one folder spin on its lock in the kernel.
    real_open = os.open
    state = {"now": 0, "most": 0}
    guard = threading.Lock()

    def slow_open(path: object, flags: int, *args: int) -> int:
        with guard:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(0.002)  # long enough for the other threads to arrive
            return real_open(path, flags, *args)  # type: ignore[arg-type]
        finally:
            with guard:
                state["now"] -= 1

    monkeypatch.setattr(os, "open", slow_open)
    writer = OsFileWriter()

    def create(index: int) -> None:
        writer.close(writer.open(tmp_path / f"{index}.bin"))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(40)))
    assert state["most"] == 1
    assert len(list(tmp_path.iterdir())) == 40
