"""Sends the panel the Agent's state and events through Decky's async `emit`, without flooding it.

Decky drops events nobody hears, so the panel pulls `get_state()` when it mounts and treats these
as live updates: only the latest state matters, and a burst of progress updates during an upload
is coalesced to at most one event per `interval` (trailing edge: the last state always goes out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..agent.state import AgentSnapshot

Emit = Callable[..., Awaitable[Any]]
"""`await emit(event, *args)`: Decky's `decky.emit`."""

STATE_EVENT = "state"
DEFAULT_INTERVAL = 0.25  # at most 4 state events a second during an upload
DEFAULT_SEND_TIMEOUT = 5.0


class StateEmitter:
    """One sender task: every change is sent at once, except during an upload (then throttled)."""

    def __init__(
        self,
        emit: Emit,
        logger: logging.Logger,
        *,
        interval: float = DEFAULT_INTERVAL,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._log = logger
        self.interval = interval
        self.send_timeout = send_timeout
        self._clock = clock
        self._latest: AgentSnapshot | None = None
        self._dirty = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_sent = float("-inf")
        self._last_uploading = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: asyncio.Task[None] | None = None
        self._events: set[asyncio.Task[None]] = set()
        self.sent = 0  # state events handed to emit, for tests and logs

    def start(self) -> None:
        if self._sender is None:
            self._loop = asyncio.get_running_loop()
            self._sender = asyncio.create_task(self._run(), name="capydeploy-state-emitter")

    def update(self, snapshot: AgentSnapshot) -> None:
        """Called by the Agent's state listener (synchronous); the sending happens in the task."""
        loop = self._loop
        if loop is not None and not _in_loop(loop):
            loop.call_soon_threadsafe(self.update, snapshot)
            return
        self._latest = snapshot
        self._idle.clear()
        self._dirty.set()

    def event(self, name: str, data: dict[str, Any]) -> None:
        """Forward one event (`game_installed`, `steam_request`) in its own task, kept until done."""
        loop = self._loop
        if loop is not None and not _in_loop(loop):
            loop.call_soon_threadsafe(self.event, name, data)
            return
        task = asyncio.get_running_loop().create_task(self._send(name, data))
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def flush(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until the latest state and pending events were handed to emit."""
        pending: list[Awaitable[Any]] = [self._idle.wait(), *self._events] if self._sender else list(self._events)
        if not pending:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Stop sending; nothing is awaited, so this never delays an unload."""
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
        for task in list(self._events):
            task.cancel()

    # --- the sender ---------------------------------------------------------------------------

    def _throttled(self, snapshot: AgentSnapshot) -> bool:
        return snapshot.upload is not None or self._last_uploading

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            snapshot = self._latest
            if snapshot is not None and self._throttled(snapshot):
                wait = self._last_sent + self.interval - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)  # updates keep arriving; the latest one is sent
            self._dirty.clear()
            snapshot = self._latest
            if snapshot is None:
                self._idle.set()
                continue
            self._last_sent = self._clock()
            self._last_uploading = snapshot.upload is not None
            self.sent += 1
            await self._send(STATE_EVENT, snapshot.to_wire())
            if not self._dirty.is_set():
                self._idle.set()

    async def _send(self, name: str, payload: dict[str, Any]) -> None:
        try:
            await asyncio.wait_for(self._emit(name, payload), self.send_timeout)
        except TimeoutError:
            self._log.warning("emitting %r took longer than %.0f s; dropped", name, self.send_timeout)
        except Exception:
            self._log.exception("emitting %r failed", name)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    with contextlib.suppress(RuntimeError):
        return asyncio.get_running_loop() is loop
    return False
