"""`capydeploy-hub discover` finds a running Agent advertised by mDNS, and AGENT accepts its name."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from capydeploy.agent.server import Agent
from capydeploy.hub.client import HubClient
from capydeploy.hub.resolve import resolve_agent
from tests.conftest import AgentFactory, code_from_state


async def _hub(config: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "capydeploy.hub.cli", "--config-dir", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _advertised(agent: Agent) -> None:
    task = agent._mdns_start
    assert task is not None
    await asyncio.wait_for(task, 30)


async def test_discover_lists_the_agent_and_names_resolve(agent_factory: AgentFactory, hub_config: Path) -> None:
    agent = await agent_factory(mdns=True, mdns_interfaces=["127.0.0.1"], name="Shelf Deck 7")
    await _advertised(agent)
    code, out, err = await _hub(hub_config, "--json", "discover", "--interface", "127.0.0.1", "--timeout", "3")
    assert code == 0, err
    found = [entry for entry in json.loads(out) if entry["id"] == agent.settings.agent_id]
    assert found and found[0]["name"] == "Shelf Deck 7" and found[0]["port"] == agent.port
    assert found[0]["platform"] == "linux"
    # Pair by the advertised name, as a user would type it.
    address = await resolve_agent("shelf deck 7", interfaces=["127.0.0.1"])
    assert address.port == agent.port
    async with HubClient(address, config_dir=hub_config, pair=code_from_state(agent)) as client:
        assert (await client.get_info()).agent.id == agent.settings.agent_id
