"""The Hub's send window: bytes and chunks in flight are both bounded, so a game of many tiny files
keeps hundreds of chunks in flight while a big file keeps a few megabytes."""

from __future__ import annotations

import asyncio

from capydeploy.hub.window import SendWindow


async def acquired_at_once(window: SendWindow, size: int) -> bool:
    """Whether `acquire(size)` completes without an acknowledgement releasing anything."""
    attempt = asyncio.ensure_future(window.acquire(size))
    for _ in range(5):
        await asyncio.sleep(0)
    if attempt.done():
        return True
    attempt.cancel()
    await asyncio.gather(attempt, return_exceptions=True)
    return False


async def test_small_chunks_fill_the_window_by_count() -> None:
    window = SendWindow(max_bytes=8 * 1024 * 1024, max_chunks=256)
    for _ in range(256):
        assert await acquired_at_once(window, 4096)
    assert (window.chunks, window.bytes) == (256, 256 * 4096)
    assert not await acquired_at_once(window, 4096)  # 1 MiB in flight, yet 256 chunks is the cap


async def test_big_chunks_fill_the_window_by_bytes() -> None:
    window = SendWindow(max_bytes=8 * 1024 * 1024, max_chunks=256)
    for _ in range(8):
        assert await acquired_at_once(window, 1024 * 1024)
    assert not await acquired_at_once(window, 1)


async def test_a_release_lets_the_waiting_sender_go() -> None:
    window = SendWindow(max_bytes=3000, max_chunks=10)
    await window.acquire(2000)
    waiting = asyncio.ensure_future(window.acquire(2000))
    await asyncio.sleep(0)
    assert not waiting.done()
    window.release(2000)
    await asyncio.wait_for(waiting, 5)
    assert (window.chunks, window.bytes) == (1, 2000)


async def test_a_chunk_larger_than_the_window_goes_alone() -> None:
    window = SendWindow(max_bytes=1000, max_chunks=10)
    assert await acquired_at_once(window, 5000)  # nothing in flight: it may go
    assert not await acquired_at_once(window, 1)
    window.release(5000)
    assert await acquired_at_once(window, 1)
