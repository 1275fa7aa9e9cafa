"""D4's Write Wait: a send stuck longer than it (a hub that stopped reading) closes the connection,
so one stuck hub never holds the Agent's event loop or memory. Real sockets on loopback."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from capydeploy.agent.connection import SessionClosed
from tests.conftest import AgentFactory, RawPeer


async def test_a_hub_that_stops_reading_is_dropped_after_write_wait(agent_factory: AgentFactory) -> None:
    agent = await agent_factory(write_wait=0.5, handshake_timeout=60)
    # max_queue=1: the peer's client stops reading its socket once one message waits unread.
    peer = await RawPeer.open(agent, max_queue=1)
    try:
        await peer.send("ping", None, "first")
        assert (await peer.recv())["type"] == "pong"
        (session,) = agent._handshaking
        big = "x" * (1 << 20)
        with pytest.raises(SessionClosed):
            # The kernel's buffers take a few megabytes, then a send waits: at most write_wait.
            async with asyncio.timeout(60):  # a hang guard, not a timing
                while True:
                    await session._send(big)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(30):
                while True:
                    await peer.ws.recv()
    finally:
        peer.ws.transport.abort()
