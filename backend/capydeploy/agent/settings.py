"""The Agent's persistent settings (name, id, accept-connections, install folder)."""

from __future__ import annotations

import asyncio
import secrets
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..storage import atomic_write_json, read_json


def _default_name() -> str:
    return socket.gethostname() or "CapyDeploy Agent"


@dataclass
class AgentSettings:
    agent_id: str = field(default_factory=lambda: f"agent-{secrets.token_hex(6)}")
    name: str = field(default_factory=_default_name)
    accept_connections: bool = True
    install_dir: str | None = None

    @classmethod
    def load(cls, path: Path, defaults: dict[str, object] | None = None) -> AgentSettings:
        """Read settings, falling back to `defaults` (e.g. the plugin's defaults file) then built-ins."""
        merged: dict[str, object] = {}
        for source in (defaults or {}, read_json(path, {})):
            if isinstance(source, dict):
                merged.update({key: value for key, value in source.items() if key in cls.__dataclass_fields__})
        settings = cls(**merged)  # type: ignore[arg-type]
        return settings

    async def save(self, path: Path) -> None:
        await asyncio.to_thread(atomic_write_json, path, asdict(self), True)
