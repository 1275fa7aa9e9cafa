"""The hub's tokens, one per agent id, in a private (0600) file; addresses remember which agent they reached."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..redaction import SECRETS
from ..storage import atomic_write_json, read_json


class TokenStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        raw = read_json(path, {})
        self._agents: dict[str, dict[str, Any]] = dict(raw.get("agents", {})) if isinstance(raw, dict) else {}
        self._addresses: dict[str, str] = dict(raw.get("addresses", {})) if isinstance(raw, dict) else {}

    @property
    def path(self) -> Path:
        return self._path

    def agent_for_address(self, address: str) -> str | None:
        return self._addresses.get(address)

    def token_for(self, agent_id: str | None) -> str:
        if agent_id is None:
            return ""
        entry = self._agents.get(agent_id)
        token = entry.get("token") if entry else None
        if not isinstance(token, str):
            return ""
        SECRETS.add(token)
        return token

    def save_token(self, agent_id: str, token: str, name: str, address: str) -> None:
        SECRETS.add(token)
        self._agents[agent_id] = {"token": token, "name": name, "pairedAt": time.time()}
        self._addresses[address] = agent_id
        self._write()

    def remember_address(self, address: str, agent_id: str) -> None:
        if self._addresses.get(address) != agent_id:
            self._addresses[address] = agent_id
            self._write()

    def forget(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)
        self._addresses = {address: aid for address, aid in self._addresses.items() if aid != agent_id}
        self._write()

    def _write(self) -> None:
        atomic_write_json(self._path, {"agents": self._agents, "addresses": self._addresses}, private=True)
