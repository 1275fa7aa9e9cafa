"""HandleCache: worker threads share open staged files; a handle is closed only while unused."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from capydeploy.agent.transfer import OsFileWriter
from capydeploy.agent.transfer.handles import HandleCache


class TrackingWriter(OsFileWriter):
    """Records which handles are open, and fails loudly on a close of a handle not open."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.open_handles: dict[int, Path] = {}
        self.opens = 0

    def open(self, path: Path) -> int:
        handle = super().open(path)
        with self.lock:
            self.open_handles[handle] = path
            self.opens += 1
        return handle

    def close(self, handle: int) -> None:
        with self.lock:
            assert handle in self.open_handles, f"closing {handle}, which is not open"
            del self.open_handles[handle]
        super().close(handle)


def test_threads_share_handles_and_never_lose_one_in_use(tmp_path: Path) -> None:
    writer = TrackingWriter()
    cache = HandleCache(writer, limit=4)
    paths = [tmp_path / f"{index}.bin" for index in range(12)]
    problems: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            path = rng.choice(paths)
            handle = cache.acquire(path)
            with writer.lock:
                if writer.open_handles.get(handle) != path:
                    problems.append(f"{handle} is not an open handle of {path}")
            writer.pwrite(handle, b"x", rng.randrange(64))  # a closed or reused fd would fail or stray
            cache.release(path)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))
    assert problems == []
    assert len(writer.open_handles) <= 4  # idle handles beyond the limit were closed
    assert set(writer.open_handles.values()) <= set(paths)
    cache.close_all()
    assert writer.open_handles == {}


def test_a_handle_in_use_is_neither_evicted_nor_forgotten(tmp_path: Path) -> None:
    writer = TrackingWriter()
    cache = HandleCache(writer, limit=1)
    busy = tmp_path / "busy.bin"
    handle = cache.acquire(busy)
    for index in range(3):  # each new file pushes the cache past its limit
        other = tmp_path / f"{index}.bin"
        cache.acquire(other)
        cache.release(other)
    cache.forget(busy)
    assert writer.open_handles.get(handle) == busy  # still open: it is in use
    assert cache.acquire(busy) == handle  # and shared, not opened again
    cache.release(busy)
    cache.release(busy)
    cache.forget(busy)
    assert handle not in writer.open_handles
    assert writer.opens == 4


def test_the_least_recently_used_idle_handles_are_closed_first(tmp_path: Path) -> None:
    """Past the limit, the oldest idle handles go, oldest first, and only as many as needed;
    handles in use are skipped, however old."""
    writer = TrackingWriter()
    cache = HandleCache(writer, limit=3)
    paths = [tmp_path / f"{name}.bin" for name in "abcdef"]
    a, b, c, d, e, f = paths
    held = cache.acquire(a)  # the oldest, and kept in use throughout
    for path in (b, c):
        cache.acquire(path)
        cache.release(path)
    cache.acquire(b)  # b is now more recent than c
    cache.release(b)
    cache.acquire(d)  # 4 open, limit 3: c is the oldest idle one
    cache.release(d)
    assert set(writer.open_handles.values()) == {a, b, d}
    for path in (e, f):  # then b, then d
        cache.acquire(path)
        cache.release(path)
    assert set(writer.open_handles.values()) == {a, e, f}
    assert writer.open_handles[held] == a
    assert len(cache) == 3
    cache.release(a)
    cache.close_all()
    assert writer.open_handles == {}
