"""A fast sample of suite 4 (`make load`): a 32 MiB deploy under 20 idle sockets, 5 competing hubs and
100 pings/s. Correctness only, never timings: the deploy is byte-identical, every competing hub got
409 at its first try (no HTTP 503: the Agent evicts the oldest idle connection past its handshake
limits instead of refusing the newest), every idle socket was closed by the Agent, every ping was
answered.

The Agent runs in-process with a 1 s handshake timeout (the product's is 10 s) so the idle sockets
are closed quickly; `make load` runs the real process with the real timeout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import DeployOptions
from scripts.reliability_lib.games import tree_digest
from scripts.reliability_lib.load_suite import make_load_game, ping_load
from scripts.reliability_lib.peers import run_peers
from tests.conftest import AgentFactory, code_from_state, url_of

MiB = 1024 * 1024


async def test_load_sample(agent_factory: AgentFactory, tmp_path: Path) -> None:
    agent = await agent_factory(handshake_timeout=1.0)
    game = make_load_game(tmp_path / "src" / "Load Game", 32 * MiB)
    client = HubClient(url_of(agent), config_dir=tmp_path / "hub", pair=code_from_state(agent))
    await client.connect()
    try:
        ready = asyncio.Event()
        peers_task = asyncio.create_task(
            run_peers(
                "127.0.0.1", agent.port, raw=10, ws=10, hubs=5, spread=0.2, deadline_after=60,
                hub_dir=tmp_path / "peers", ready=ready,
            )
        )
        await asyncio.wait_for(ready.wait(), 60)  # a hang guard
        stop = asyncio.Event()
        pings = asyncio.create_task(ping_load(client, 100, stop))
        result = await asyncio.wait_for(
            client.deploy(game, DeployOptions(game_name="Load Sample", create_shortcut=False)), 300
        )
        await asyncio.sleep(0.05)  # a few pings more, whatever the deploy's speed
        stop.set()
        ping_stats = await asyncio.wait_for(pings, 60)
        peers = await asyncio.wait_for(peers_task, 120)
    finally:
        await client.close()

    source = tree_digest(game)
    assert tree_digest(agent.install_dir / "Load Sample") == source
    assert result.bytes_sent == sum(size for size, _ in (source or {}).values())

    assert [hub.result for hub in peers.hubs] == ["409"] * 5, [(h.result, h.detail) for h in peers.hubs]
    assert [hub.detail for hub in peers.hubs] == ["another hub is connected"] * 5  # names no hub
    assert peers.refusals_503 == 0

    assert len(peers.sockets) == 20
    raw = [s for s in peers.sockets if s.kind == "raw"]
    ws = [s for s in peers.sockets if s.kind == "ws"]
    assert [s.outcome for s in raw] == ["closed"] * 10, raw
    assert [(s.outcome, s.close_code) for s in ws] == [("closed", 1008)] * 10, ws
    # 8 per address may wait for the handshake timeout; older ones are evicted as newer ones come.
    assert {s.detail for s in ws} <= {"no hub_connected in time", "too many pending connections"}, ws

    assert ping_stats.sent > 0
    assert ping_stats.errors == 0, ping_stats.first_error
    assert ping_stats.answered == ping_stats.sent
