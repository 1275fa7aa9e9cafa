"""Where the hub keeps its files, and its own identity (hub id and name)."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from ..storage import atomic_write_json, read_json

CONFIG_DIR_ENV = "CAPYDEPLOY_HUB_CONFIG_DIR"


def hub_config_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """`--config-dir`, else $CAPYDEPLOY_HUB_CONFIG_DIR, else the platform's user config folder."""
    if override:
        return Path(override)
    from_env = os.environ.get(CONFIG_DIR_ENV)
    if from_env:
        return Path(from_env)
    import platformdirs  # noqa: PLC0415 - not needed (nor loaded) when the folder is given

    return Path(platformdirs.user_config_dir("capydeploy", appauthor=False))


@dataclass(frozen=True)
class HubIdentity:
    hub_id: str
    name: str

    @classmethod
    def load_or_create(cls, config_dir: Path) -> HubIdentity:
        path = config_dir / "hub.json"
        raw = read_json(path, {})
        hub_id = raw.get("hubId") if isinstance(raw, dict) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(hub_id, str) and hub_id and isinstance(name, str) and name:
            return cls(hub_id, name)
        identity = cls(f"hub-{secrets.token_hex(8)}", f"CapyDeploy Hub on {socket.gethostname() or 'PC'}")
        atomic_write_json(path, {"hubId": identity.hub_id, "name": identity.name}, private=True)
        return identity
