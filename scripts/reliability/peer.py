"""A raw WebSocket peer for the reliability suites: hand-made frames, every received frame kept.

Unlike the product's HubClient it validates nothing before sending, so it can say what a hostile
Hub would say; and it records every frame the Agent sends, so a suite can search them all.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

PUSH_TYPES = frozenset({"upload_progress", "operation_event", "agent_status"})
CodeReader = Callable[[], Awaitable[str]]


def chunk_frame(header: Any, data: bytes, *, raw_header: bytes | None = None) -> bytes:
    """`[u32 BE header length][JSON header][data]`; `raw_header` sends those bytes as the header."""
    encoded = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(encoded)) + encoded + data


class Peer:
    """One WebSocket connection to an Agent, spoken to by hand."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[str | bytes] = []  # every frame the Agent sent, in order
        self.pushes: list[dict[str, Any]] = []
        self._backlog: list[dict[str, Any]] = []
        self._next_id = 0

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Peer:
        options: dict[str, Any] = {"ping_interval": None, "max_size": None, "open_timeout": 10}
        options.update(kwargs)
        return cls(await websockets.connect(url, **options))

    def new_id(self) -> str:
        self._next_id += 1
        return f"p{self._next_id}"

    async def send_frame(self, message_type: str, payload: Any = None, message_id: str | None = None) -> str:
        message_id = self.new_id() if message_id is None else message_id
        frame: dict[str, Any] = {"id": message_id, "type": message_type}
        if payload is not None:
            frame["payload"] = payload
        await self.ws.send(json.dumps(frame))
        return message_id

    async def recv_frame(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next text frame the Agent sends (binary frames are kept but never expected)."""
        if self._backlog:
            return self._backlog.pop(0)
        while True:
            message = await asyncio.wait_for(self.ws.recv(), timeout)
            self.received.append(message)
            if isinstance(message, str):
                frame = json.loads(message)
                assert isinstance(frame, dict), message
                return frame

    async def reply_to(self, message_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Read until the frame answering `message_id`; push events on the way are kept in `pushes`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                frame = await self.recv_frame(max(0.01, deadline - loop.time()))
                if frame.get("id") == message_id and frame.get("type") not in PUSH_TYPES:
                    return frame
                if frame.get("type") in PUSH_TYPES:
                    self.pushes.append(frame)
                else:
                    skipped.append(frame)
        finally:
            self._backlog[:0] = skipped

    async def request(
        self, message_type: str, payload: Any = None, message_id: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        message_id = await self.send_frame(message_type, payload, message_id)
        return await self.reply_to(message_id, timeout)

    async def send_chunk(self, header: Any, data: bytes, timeout: float = 30.0) -> dict[str, Any]:
        await self.ws.send(chunk_frame(header, data))
        header_id = header.get("id", "") if isinstance(header, dict) else ""
        return await self.reply_to(header_id if isinstance(header_id, str) else "", timeout)

    async def hello(self, hub_id: str, token: str = "", name: str = "Reliability Hub") -> dict[str, Any]:
        return await self.request(
            "hub_connected", {"name": name, "version": "1", "hubId": hub_id, "token": token}, "hello"
        )

    async def pair(self, read_code: CodeReader, hub_id: str) -> str:
        """hub_connected, read the code off the device, pair_confirm; returns the token."""
        reply = await self.hello(hub_id)
        if reply["type"] == "agent_status":
            return ""
        assert reply["type"] == "pairing_required", reply
        success = await self.request("pair_confirm", {"code": await read_code()})
        assert success["type"] == "pair_success", success
        token = success["payload"]["token"]
        assert isinstance(token, str)
        status = await self.recv_frame()
        assert status["type"] == "agent_status", status
        return token

    async def closed_code(self, timeout: float = 15.0) -> int | None:
        """Read (and keep) frames until the Agent closes the connection; its close code."""
        try:
            while True:
                self.received.append(await asyncio.wait_for(self.ws.recv(), timeout))
        except ConnectionClosed:
            pass
        return self.ws.close_code

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 5.0)
        except (TimeoutError, ConnectionClosed, OSError):
            self.ws.transport.abort()
