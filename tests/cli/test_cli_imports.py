"""The hub CLI starts with only what its command needs (issue 4: an unchanged redeploy is mostly start-up).

Each check runs a fresh interpreter, so modules this test process already holds do not count. No
timing is asserted: the guard is which modules get loaded, which is what costs the time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from capydeploy.hub.client import HubClient
from tests.conftest import AgentFactory, code_from_state

# Never needed to deploy to an address: mDNS (zeroconf and its ifaddr), the terminal progress bar,
# SteamGridDB's HTTP client, and the agent's and Steam's code.
HEAVY = (
    "zeroconf",
    "ifaddr",
    "tqdm",
    "aiohttp",
    "capydeploy.agent",
    "capydeploy.steam",
    "capydeploy.decky",
    "capydeploy.hub.discovery",
    "capydeploy.hub.steamgriddb",
)

# Prints, as the last line on stderr, which of the watched modules the run loaded.
PROBE = """
import json, sys
from capydeploy.hub.cli import main
watched = json.loads(sys.argv[1])
try:
    code = main(sys.argv[2:]) if len(sys.argv) > 2 else 0
finally:
    from pydantic import BaseModel
    from capydeploy.protocol import messages
    built = [name for name, value in vars(messages).items()
             if isinstance(value, type) and issubclass(value, BaseModel) and value.__pydantic_complete__]
    loaded = sorted(name for name in sys.modules if any(name == w or name.startswith(w + ".") for w in watched))
    print(json.dumps({"loaded": loaded, "built": built}), file=sys.stderr)
sys.exit(code)
"""


def probe(watched: tuple[str, ...], *argv: str) -> tuple[int, str, dict[str, list[str]]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(watched), *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return result.returncode, result.stdout, report


def test_importing_the_cli_loads_no_heavy_module_and_builds_no_validator() -> None:
    deploy_only = ("capydeploy.hub.deploy", "capydeploy.hub.hashcache", "capydeploy.hub.progress", "capydeploy.memory")
    code, _, report = probe((*HEAVY, *deploy_only, "platformdirs"))

    assert code == 0
    assert report["loaded"] == []
    assert report["built"] == []  # defer_build: a model's validator is built on its first use


async def test_a_deploy_to_an_ip_address_loads_no_heavy_module(
    agent_factory: AgentFactory, tmp_path: Path, hub_config: Path
) -> None:
    agent = await agent_factory()
    address = f"127.0.0.1:{agent.port}"
    async with HubClient(address, config_dir=hub_config, pair=code_from_state(agent)):
        pass
    game = tmp_path / "Light Game"
    game.mkdir()
    (game / "start.sh").write_text("#!/bin/sh\n")
    (game / "start.sh").chmod(0o755)

    for _ in range(2):  # a first deploy, then an unchanged redeploy
        code, out, report = await _deploy(game, address, hub_config)

        assert code == 0, report
        assert json.loads(out)[address]["path"] == str(agent.install_dir / "Light Game")
        assert report["loaded"] == []  # platformdirs too: --config-dir names the folder


async def _deploy(game: Path, address: str, config: Path) -> tuple[int, str, dict[str, list[str]]]:
    return await asyncio.to_thread(
        probe, (*HEAVY, "platformdirs"), "--config-dir", str(config), "--json", "deploy", str(game),
        "--agent", address, "--no-shortcut",
    )
