"""Many tiny worker jobs run a batch at a time, with one thread hand-off per batch instead of one each.

For a game of thousands of small files, storing one file's only chunk (check, create, write,
journal) takes a few dozen microseconds; handing it to a worker thread and its result back to the
event loop cost more than that (a thread wake-up each way, the GIL passed to and fro: measured,
half of the Agent's CPU for 20 000 files of 4 KiB). Jobs queued here run on one worker job in the
order they came; whatever is queued while a batch runs forms the next one, and each batch's
results return to the event loop in a single callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# (the waiting caller's future, the job's result, or the exception it raised)
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


@dataclass(frozen=True, slots=True)
class _Queued(Generic[T]):
    fn: Callable[[], T]
    result: asyncio.Future[T]  # what the caller awaits, settled on the event loop


class BatchedJobs:
    """Runs queued jobs a batch at a time in a worker job that `start_worker` starts."""

    def __init__(self, start_worker: Callable[[Callable[[], None]], Future[Any]]) -> None:
        self._start_worker = start_worker
        self._lock = threading.Lock()
        self._queue: list[_Queued[Any]] = []
        self._draining = False
        self._worker: Future[Any] | None = None  # the worker job that drains the queue

    def run(self, fn: Callable[[], T], track: Callable[[Future[Any]], None] | None = None) -> asyncio.Future[T]:
        """Queue `fn`; the future resolves with its result on this loop. `track` is given the
        worker job that will run it: done once `fn` has run, whatever becomes of the caller."""
        loop = asyncio.get_running_loop()
        queued: _Queued[T] = _Queued(fn, loop.create_future())
        with self._lock:
            self._queue.append(queued)
            start, self._draining = not self._draining, True
        if start:
            try:
                self._worker = self._start_worker(lambda: self._drain(loop))
            except BaseException:
                with self._lock:  # nothing queued can run: the worker never started
                    failed, self._queue = self._queue, []
                    self._draining = False
                for item in failed:
                    item.result.cancel()
                raise
        # A worker job already draining runs this one too: it stops only once the queue is empty.
        if track is not None and self._worker is not None:
            track(self._worker)
        return queued.result

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Worker job: run batches until the queue is empty."""
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            outcomes: list[_Outcome] = []
            for queued in batch:
                try:
                    outcomes.append((queued.result, queued.fn(), None))
                except BaseException as exc:  # handed to its caller, like any worker job's error
                    outcomes.append((queued.result, None, exc))
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[_Outcome]) -> None:
    for result, value, exc in outcomes:
        if result.done():  # its caller was cancelled
            continue
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set_result(value)
