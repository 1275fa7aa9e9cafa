"""HubClient against peers that misbehave: a silent agent, a chunk rejected once, bad addresses."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.server import ServerConnection

from capydeploy.agent.server import Agent
from capydeploy.hub import deploy as deploy_module
from capydeploy.hub.address import parse_agent_address
from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import DeployOptions
from capydeploy.hub.errors import ConnectionLost


async def test_silent_agent_is_dropped_after_pong_wait(tmp_path: Path) -> None:
    """An agent that answers the handshake and then goes quiet: the hub's JSON pings go unanswered."""
    pings: list[str] = []

    async def silent_agent(ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        status = {"name": "Quiet", "version": "1", "platform": "linux", "acceptConnections": True}
        await ws.send(json.dumps({"id": hello["id"], "type": "agent_status", "payload": status}))
        info = json.loads(await ws.recv())  # the hub asks who we are once
        agent = {"id": "agent-quiet", "name": "Quiet", "platform": "linux", "capabilities": []}
        await ws.send(json.dumps({"id": info["id"], "type": "info_response", "payload": {"agent": agent}}))
        async for message in ws:
            pings.append(str(message))  # never answered

    async with websockets.serve(silent_agent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = HubClient(
            f"ws://127.0.0.1:{port}/ws", config_dir=tmp_path, ping_period=0.05, pong_wait=0.3, reconnect=False
        )
        await client.connect()
        for _ in range(400):
            if not client.connected:
                break
            await asyncio.sleep(0.05)
        assert not client.connected
        assert any('"type":"ping"' in ping for ping in pings)
        with pytest.raises(ConnectionLost):
            await client.get_config()
        await client.close()


async def test_rejected_chunk_is_read_again_and_resent(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    game = tmp_path / "Flaky"
    game.mkdir()
    (game / "a.bin").write_bytes(data)
    real_read = deploy_module._read_chunk
    corrupted: list[int] = []

    def flaky_read(handle, offset, length, *rest):  # type: ignore[no-untyped-def]
        chunk, checksum = real_read(handle, offset, length, *rest)
        if offset == 1024 * 1024 and not corrupted:
            corrupted.append(offset)  # a bit flips on the way: the checksum no longer matches
            return bytes([chunk[0] ^ 1]) + chunk[1:], checksum
        return chunk, checksum

    monkeypatch.setattr(deploy_module, "_read_chunk", flaky_read)
    result = await paired_hub.deploy(game, DeployOptions(game_name="Flaky", create_shortcut=False))
    assert corrupted == [1024 * 1024]
    assert result.bytes_sent == len(data) + 1024 * 1024
    assert (agent.install_dir / "Flaky" / "a.bin").read_bytes() == data


@pytest.mark.parametrize(
    ("text", "host", "port", "path"),
    [
        ("deck", "deck", 9999, "/ws"),
        ("deck:1234", "deck", 1234, "/ws"),
        ("192.168.1.9", "192.168.1.9", 9999, "/ws"),
        ("ws://deck.lan:9000/ws", "deck.lan", 9000, "/ws"),
        ("[fe80::1]:9999", "fe80::1", 9999, "/ws"),
    ],
)
def test_agent_address_forms(text: str, host: str, port: int, path: str) -> None:
    address = parse_agent_address(text)
    assert (address.host, address.port, address.path) == (host, port, path)


@pytest.mark.parametrize("text", ["", "http://deck/ws", "deck:notaport", "ws://:9/ws"])
def test_bad_agent_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_agent_address(text)
