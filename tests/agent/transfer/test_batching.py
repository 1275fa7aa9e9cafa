"""BatchedJobs (many tiny worker jobs, one thread hand-off per batch) and remove_path racing another
deleter. Real threads throughout."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from capydeploy.agent.transfer import filesystem
from capydeploy.agent.transfer.batching import BatchedJobs
from capydeploy.agent.transfer.filesystem import remove_path


class Workers:
    """A real pool that counts how many worker jobs were started."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.started = 0
        self.refuse = False

    def start(self, job: Callable[[], None]) -> Future[None]:
        if self.refuse:
            raise RuntimeError("shutting down")
        self.started += 1
        return self.pool.submit(job)


@pytest.fixture
def workers() -> Workers:
    made = Workers()
    yield made
    made.pool.shutdown(wait=True)


async def test_every_job_runs_once_in_order_and_returns_its_own_result(workers: Workers) -> None:
    batched = BatchedJobs(workers.start)
    ran: list[int] = []
    results = await asyncio.gather(*[batched.run(lambda n=n: ran.append(n) or n * n) for n in range(500)])
    assert results == [n * n for n in range(500)]
    assert ran == list(range(500))


async def test_jobs_queued_while_a_batch_runs_share_one_worker_job(workers: Workers) -> None:
    batched = BatchedJobs(workers.start)
    gate = threading.Event()
    tracked: list[Future[object]] = []
    first = batched.run(gate.wait, tracked.append)  # holds the worker job until the others are queued
    rest = [batched.run(lambda n=n: n) for n in range(100)]
    gate.set()
    assert await first is True
    assert await asyncio.gather(*rest) == list(range(100))
    assert workers.started == 1  # the 100 ran as the next batch of the same worker job
    # Once that worker job has drained the queue and ended, the next job starts a new one.
    await asyncio.wrap_future(tracked[0])
    assert await batched.run(lambda: "later") == "later"
    assert workers.started == 2


async def test_a_failing_job_fails_only_its_caller(workers: Workers) -> None:
    batched = BatchedJobs(workers.start)

    def broken() -> None:
        raise OSError(28, "No space left on device")

    results = await asyncio.gather(
        batched.run(lambda: 1), batched.run(broken), batched.run(lambda: 3), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], OSError) and results[1].errno == 28


async def test_a_cancelled_caller_still_has_its_job_run_and_tracked(workers: Workers) -> None:
    """Like any worker job, a queued one runs even if its caller stops waiting; `track` gets a
    future that says when (a session waits for it before its staging folder is removed)."""
    batched = BatchedJobs(workers.start)
    gate = threading.Event()
    tracked: list[Future[object]] = []
    blocker = batched.run(gate.wait)
    ran = threading.Event()
    waiting = asyncio.ensure_future(batched.run(ran.set, tracked.append))
    await asyncio.sleep(0)
    waiting.cancel()
    gate.set()
    await blocker
    await asyncio.wrap_future(tracked[0])
    assert ran.is_set()
    assert waiting.cancelled()


async def test_a_worker_that_cannot_start_fails_the_caller_and_the_next_one_starts(workers: Workers) -> None:
    batched = BatchedJobs(workers.start)
    workers.refuse = True
    tracked: list[Future[object]] = []
    with pytest.raises(RuntimeError, match="shutting down"):
        batched.run(lambda: 1, tracked.append)
    assert tracked == []  # no job to wait for
    workers.refuse = False
    assert await batched.run(lambda: 2, tracked.append) == 2
    assert len(tracked) == 1
    await asyncio.wrap_future(tracked[0])  # the job that ran it ends


async def test_jobs_of_one_batch_are_tracked_as_their_one_worker_job(workers: Workers) -> None:
    batched = BatchedJobs(workers.start)
    gate = threading.Event()
    tracked: list[Future[object]] = []
    first = batched.run(gate.wait, tracked.append)
    rest = [batched.run(lambda n=n: n, tracked.append) for n in range(10)]
    assert len(set(tracked)) == 1  # the running worker job runs them all before it ends
    assert not tracked[0].done()
    gate.set()
    await asyncio.wrap_future(tracked[0])
    assert await first is True
    assert await asyncio.gather(*rest) == list(range(10))


def make_tree(root: Path) -> None:
    for folder in range(3):
        (root / f"d{folder}" / "deeper").mkdir(parents=True)
        for name in range(5):
            (root / f"d{folder}" / f"f{name}").write_bytes(b"x")
            (root / f"d{folder}" / "deeper" / f"g{name}").write_bytes(b"y")


def test_remove_path_finishes_a_folder_someone_else_is_deleting_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file vanishes just before we delete it (another thread got there first): the folder is
    still removed, with no error (the trash is emptied by two jobs at times)."""
    root = tmp_path / "trash" / "old-version"
    make_tree(root)
    real_unlink = os.unlink

    def beaten_to_it(path: str | Path, *, dir_fd: int | None = None) -> None:
        real_unlink(path, dir_fd=dir_fd)
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(filesystem.shutil.os, "unlink", beaten_to_it)
    remove_path(root)
    assert not root.exists()


def test_remove_path_still_reports_other_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "folder"
    make_tree(root)

    def refused(path: str | Path, *, dir_fd: int | None = None) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(filesystem.shutil.os, "unlink", refused)
    with pytest.raises(PermissionError):
        remove_path(root)
    assert root.exists()
