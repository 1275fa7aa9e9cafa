"""The Hub's send window: how many chunks may be in flight, unacknowledged, at once."""

from __future__ import annotations

import asyncio


class SendWindow:
    """Chunks in flight: at most `max_bytes` of data and `max_chunks` chunks, but always one (a
    chunk larger than the window still goes, alone). One task sends; acknowledgements release."""

    def __init__(self, max_bytes: int, max_chunks: int) -> None:
        self._max_bytes = max_bytes
        self._max_chunks = max_chunks
        self.bytes = 0
        self.chunks = 0
        self._waiter: asyncio.Future[None] | None = None

    def _room_for(self, size: int) -> bool:
        if self.chunks == 0:
            return True
        return self.chunks < self._max_chunks and self.bytes + size <= self._max_bytes

    async def acquire(self, size: int) -> None:
        while not self._room_for(size):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.bytes += size
        self.chunks += 1

    def release(self, size: int) -> None:
        self.bytes -= size
        self.chunks -= 1
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
