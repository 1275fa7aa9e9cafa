"""Everything an Agent needs to start: where to listen, where to keep files, and the timings."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Literal

from .. import __version__
from ..protocol import constants as c


def default_platform() -> str:
    return platform.system().lower() or "linux"


@dataclass
class AgentConfig:
    data_dir: Path
    host: str = "0.0.0.0"  # noqa: S104 - the Agent serves the LAN on purpose
    port: int = c.DEFAULT_PORT
    install_dir: Path | None = None  # None: settings, else ~/Games
    home: Path = field(default_factory=Path.home)
    steam_root: Path | None = None
    name: str | None = None
    mdns: bool = True
    mdns_interfaces: list[str] | None = None  # None: every interface
    version: str = __version__
    platform: str = field(default_factory=default_platform)
    shortcut_backend: Literal["file", "steam-client"] = "file"
    steam_command: str = "steam"
    # Address guard for artwork downloads: tests allow their own loopback server.
    artwork_address_allowed: Callable[[IPv4Address | IPv6Address, int], bool] | None = None
    defaults: dict[str, object] = field(default_factory=dict)
    handshake_timeout: float = c.HANDSHAKE_TIMEOUT
    ping_period: float = c.PING_PERIOD
    pong_wait: float = c.PONG_WAIT
    write_wait: float = c.WRITE_WAIT
    pairing_code_ttl: float = c.PAIRING_CODE_TTL
    pairing_lockout: float = c.PAIRING_LOCKOUT
    max_pending_handshakes: int = c.MAX_PENDING_HANDSHAKES
    max_pending_per_address: int = c.MAX_PENDING_PER_ADDRESS
    progress_interval: float = c.PROGRESS_INTERVAL

    def resolved_home(self) -> Path:
        return Path(os.path.expanduser(self.home))
