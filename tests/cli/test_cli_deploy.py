"""`capydeploy-hub deploy` as a user runs it: several agents at once, one failing, --exe rules, --json."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from capydeploy.hub.client import HubClient
from tests.conftest import AgentFactory, code_from_state, url_of


async def run_hub(config: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "capydeploy.hub.cli", "--config-dir", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses every connection while the block runs: bound, never listening.

    A port found free and then released (the old `free_port()`) could be taken before the hub
    dialled it, by any other test's or session's server (the hub then reached a real agent), or
    picked as the hub's own source port (a socket connected to itself). Held bound, neither can
    happen: the kernel gives that port to no one else, and a SYN to it gets a reset.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def sample_game(folder: Path) -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "start.sh").write_text("#!/bin/sh\n")
    (folder / "start.sh").chmod(0o755)
    (folder / "bin" / "data.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    return folder


async def test_deploy_to_several_agents_one_failing(
    agent_factory: AgentFactory, tmp_path: Path, hub_config: Path
) -> None:
    agents = [await agent_factory(name=f"Deck {i}") for i in range(2)]
    for agent in agents:
        async with HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent)):
            pass
    game = sample_game(tmp_path / "Shelf Game")
    with refused_port() as port:
        dead = f"127.0.0.1:{port}"
        code, out, err = await run_hub(
            hub_config, "--json", "deploy", str(game), *[a for agent in agents for a in ("--agent", url_of(agent))],
            "--agent", dead, "--no-shortcut",
        )
    assert code == 1, err
    results = json.loads(out)
    for agent in agents:
        result = results[url_of(agent)]
        assert result["path"] == str(agent.install_dir / "Shelf Game")
        assert (agent.install_dir / "Shelf Game" / "bin" / "data.bin").read_bytes() == (game / "bin" / "data.bin").read_bytes()
    assert "cannot connect" in results[dead]["error"]
    assert f"{dead}: " in err


async def test_deploy_exe_rules_and_shortcut(agent_factory: AgentFactory, tmp_path: Path, hub_config: Path) -> None:
    agent = await agent_factory()
    async with HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent)):
        pass
    game = sample_game(tmp_path / "Two Exes")
    (game / "other.x86_64").write_text("binary")
    code, _, err = await run_hub(hub_config, "deploy", str(game), "--agent", url_of(agent))
    assert code == 1 and "several executables" in err and "--exe" in err
    code, out, err = await run_hub(
        hub_config, "--json", "deploy", str(game), "--agent", url_of(agent), "--exe", "start.sh", "--name", "Renamed"
    )
    assert code == 0, err
    result = json.loads(out)[url_of(agent)]
    installed = agent.install_dir / "Renamed"
    assert result["path"] == str(installed)
    assert result["app_id"] is not None and result["shortcut_error"] is None
    code, out, err = await run_hub(hub_config, "--json", "shortcuts", url_of(agent))
    assert code == 0, err
    shortcuts = json.loads(out)["shortcuts"]
    assert [(s["appId"], s["name"], s["exe"]) for s in shortcuts] == [
        (result["app_id"], "Renamed", str(installed / "start.sh"))
    ]
    assert shortcuts[0]["startDir"] == str(installed)
