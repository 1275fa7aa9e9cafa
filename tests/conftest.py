"""Shared fixtures: a real Agent on a loopback socket, hubs that talk to it, raw WebSocket peers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from capydeploy.agent.config import AgentConfig
from capydeploy.agent.server import Agent
from capydeploy.hub.client import HubClient
from capydeploy.protocol import messages as m

AgentFactory = Callable[..., Awaitable[Agent]]


@pytest.fixture
def fake_home(tmp_path: Path) -> Path:
    """A device home with an install folder and a Steam root holding one user."""
    home = tmp_path / "home"
    config = home / ".local/share/Steam/userdata/52079950/config"
    config.mkdir(parents=True)
    (home / "Games").mkdir()
    return home


@pytest.fixture
async def agent_factory(tmp_path: Path, fake_home: Path) -> AsyncIterator[AgentFactory]:
    started: list[Agent] = []

    async def start(**overrides: Any) -> Agent:
        options: dict[str, Any] = {
            "data_dir": tmp_path / f"agent-data-{len(started)}",
            "host": "127.0.0.1",
            "port": 0,
            "home": fake_home,
            "install_dir": fake_home / "Games",
            "steam_root": fake_home / ".local/share/Steam",
            "mdns": False,
            "name": "Test Deck",
            "platform": "linux",
        }
        options.update(overrides)
        agent = Agent(AgentConfig(**options))
        await agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        await agent.stop()


@pytest.fixture
async def agent(agent_factory: AgentFactory) -> Agent:
    return await agent_factory()


def url_of(agent: Agent) -> str:
    return f"ws://127.0.0.1:{agent.port}/ws"


def code_from_state(agent: Agent) -> Callable[[m.PairingRequired], Awaitable[str]]:
    """The pairing callback a person would be: read the code off the device's screen."""

    async def read(_: m.PairingRequired) -> str:
        snapshot = agent.snapshot()
        assert snapshot.pairing is not None, "the device shows no pairing code"
        return snapshot.pairing.code

    return read


@pytest.fixture
def hub_config(tmp_path: Path) -> Path:
    return tmp_path / "hub-config"


@pytest.fixture
async def paired_hub(agent: Agent, hub_config: Path) -> AsyncIterator[HubClient]:
    client = HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent))
    await client.connect()
    yield client
    await client.close()


class RawPeer:
    """A bare WebSocket client speaking JSON frames by hand, to test the agent's edges."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.sent: list[str] = []

    @classmethod
    async def open(cls, agent: Agent, **kwargs: Any) -> RawPeer:
        ws = await websockets.connect(url_of(agent), ping_interval=None, max_size=None, **kwargs)
        return cls(ws)

    async def send(self, message_type: str, payload: Any = None, message_id: str = "r1") -> None:
        frame: dict[str, Any] = {"id": message_id, "type": message_type}
        if payload is not None:
            frame["payload"] = payload
        await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        await self.ws.send(text)

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        import asyncio

        text = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(text, str)
        frame = json.loads(text)
        assert isinstance(frame, dict)
        return frame

    async def hello(self, hub_id: str = "raw-hub", token: str = "", name: str = "Raw Hub") -> dict[str, Any]:
        await self.send("hub_connected", {"name": name, "version": "1", "hubId": hub_id, "token": token}, "hello")
        return await self.recv()

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def raw_peer(agent: Agent) -> AsyncIterator[Callable[[], Awaitable[RawPeer]]]:
    peers: list[RawPeer] = []

    async def open_peer() -> RawPeer:
        peer = await RawPeer.open(agent)
        peers.append(peer)
        return peer

    yield open_peer
    for peer in peers:
        try:
            await peer.close()
        except Exception:
            logging.getLogger(__name__).debug("peer already closed")
