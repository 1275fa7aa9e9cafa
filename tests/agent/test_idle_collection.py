"""Full garbage collections wait until the Agent's transfers are idle (memory.defer_full_collections).

A full collection of a process holding a game of many files stalls the shared event loop for
up to 100 ms; the Agent runs them only once no worker job has run for a while.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from capydeploy.agent import server as server_module
from capydeploy.agent.server import Agent


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic GC frees it


def garbage_in_the_oldest_generation() -> weakref.ref[Node]:
    node = Node()
    gone = weakref.ref(node)
    gc.collect(1)  # it survives the young generations
    return gone


async def wait_for(condition: object, seconds: float) -> bool:
    for _ in range(int(seconds / 0.02)):
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


async def test_idle_seconds_count_from_the_last_worker_job(agent: Agent) -> None:
    transfer = agent.transfer
    release = threading.Event()
    job = transfer._submit(None, release.wait, 10)
    assert transfer.idle_seconds() == 0.0
    await asyncio.sleep(0.05)
    assert transfer.idle_seconds() == 0.0  # still running
    release.set()
    await asyncio.wrap_future(job)
    await asyncio.sleep(0.05)
    assert transfer.idle_seconds() >= 0.05


async def test_a_full_collection_runs_once_transfers_are_idle_and_not_before(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "GC_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(server_module, "GC_AFTER_IDLE_SECONDS", 0.3)
    release = threading.Event()
    job = agent.transfer._submit(None, release.wait, 10)  # a transfer step in progress
    try:
        gone = garbage_in_the_oldest_generation()
        for _ in range(20):
            [Node() for _ in range(1000)]  # young collections go on meanwhile
        await asyncio.sleep(0.6)  # several checks of the collector
        assert gone() is not None, "a full collection ran during a transfer"
    finally:
        release.set()
        await asyncio.wrap_future(job)
    assert await wait_for(lambda: gone() is None, 5.0), "no full collection after the transfer"


async def test_stopping_the_last_agent_restores_the_usual_threshold(agent: Agent) -> None:
    assert gc.get_threshold()[2] > 10_000  # deferred while an Agent runs
    await agent.stop()
    assert gc.get_threshold()[2] < 10_000


async def test_write_buffers_are_freed_once_transfers_are_idle(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "GC_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(server_module, "GC_AFTER_IDLE_SECONDS", 0.3)
    released: list[float] = []
    real_release = agent.transfer.release_buffers

    def counting_release() -> int:
        released.append(asyncio.get_running_loop().time())
        return real_release()

    monkeypatch.setattr(agent.transfer, "release_buffers", counting_release)
    release = threading.Event()
    job = agent.transfer._submit(None, release.wait, 10)  # an upload being received
    try:
        await asyncio.sleep(0.6)
        assert released == [], "buffers were freed while a transfer ran"
    finally:
        release.set()
        await asyncio.wrap_future(job)
    assert await wait_for(lambda: released, 5.0), "buffers were not freed once the transfer went idle"


async def test_the_free_heap_goes_back_every_few_seconds_while_transfers_run(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst of large frames or a long list leaves malloc's heap holding free megabytes that
    # would stay resident for the whole transfer; they are handed back at an interval meanwhile.
    monkeypatch.setattr(server_module, "GC_CHECK_INTERVAL", 0.02)
    monkeypatch.setattr(server_module, "GC_AFTER_IDLE_SECONDS", 0.3)
    monkeypatch.setattr(server_module, "TRIM_WHILE_BUSY_INTERVAL", 0.1)
    trims: list[float] = []
    monkeypatch.setattr(server_module, "return_free_heap", lambda: trims.append(0.0))
    await asyncio.sleep(1.3)  # past the collector's first (unpatched) 1 s wait, all idle
    assert trims == [], "trimmed while no transfer ran (the idle path has its own)"
    release = threading.Event()
    job = agent.transfer._submit(None, release.wait, 10)  # an upload being received
    started = asyncio.get_running_loop().time()
    try:
        assert await wait_for(lambda: len(trims) >= 3, 5.0), "no trims while a transfer ran"
        elapsed = asyncio.get_running_loop().time() - started
        assert len(trims) <= elapsed / 0.1 + 1  # at the interval, not at every check (0.02 s)
    finally:
        release.set()
        await asyncio.wrap_future(job)
