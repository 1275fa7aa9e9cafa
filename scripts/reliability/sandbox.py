"""A sandboxed device for the reliability suites: loopback only, no Steam process, no name lookups.

Imports only the product and the standard library, so `agent_runner.py` (a separate process) can
load it from its own folder and the in-process suites can import it as part of the package.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from capydeploy.agent.config import AgentConfig
from capydeploy.agent.server import Agent
from capydeploy.steam.download import ArtworkDownloader

# A command that does not exist: `restart_steam` and friends fail cleanly instead of starting Steam.
NO_STEAM_COMMAND = "capydeploy-reliability-no-steam"
STEAM_ACCOUNT = 52079950
STEAM_ID64 = 76561197960265728 + STEAM_ACCOUNT


class NoLookupResolver(AbstractResolver):
    """Resolves nothing: a fuzzed artwork URL never makes the sandbox ask DNS about the world."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(f"no name resolution in the reliability sandbox ({host!r})")

    async def close(self) -> None:
        return None


def refuse_every_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
    """Artwork address policy of the fuzz sandbox: nothing may be fetched, not even public addresses."""
    return False


def make_device(base: Path) -> Path:
    """A device home under `base`: an install folder and a Steam root with one user. Returns home."""
    home = base / "home"
    (home / ".local/share/Steam/userdata" / str(STEAM_ACCOUNT) / "config").mkdir(parents=True, exist_ok=True)
    (home / "Games").mkdir(parents=True, exist_ok=True)
    return home


def sandbox_config(base: Path, **overrides: Any) -> AgentConfig:
    """An Agent on 127.0.0.1 (free port) over the device made by `make_device(base)`."""
    home = make_device(base)
    options: dict[str, Any] = {
        "data_dir": base / "agent-data",
        "host": "127.0.0.1",
        "port": 0,
        "home": home,
        "install_dir": home / "Games",
        "steam_root": home / ".local/share/Steam",
        "mdns": False,
        "name": "Reliability Deck",
        "platform": "linux",
        "steam_command": NO_STEAM_COMMAND,
        "artwork_address_allowed": refuse_every_address,
    }
    options.update(overrides)
    return AgentConfig(**options)


def seal_network(agent: Agent) -> None:
    """Swap the Agent's artwork downloader for one that refuses every address and resolves no name."""
    agent.steam.downloader = ArtworkDownloader(address_allowed=refuse_every_address, resolver=NoLookupResolver())
