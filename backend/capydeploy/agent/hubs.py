"""Authorized hubs and their tokens, stored as SHA-256 only, in a private file (D3)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..redaction import SECRETS
from ..storage import atomic_write_json, read_json


def new_token() -> str:
    """32 random bytes, URL-safe base64 without padding."""
    token = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    SECRETS.add(token)
    return token


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class HubRecord:
    id: str
    name: str
    platform: str
    paired_at: float
    last_seen: float
    token_sha256: str


class HubRegistry:
    """The hubs this Agent trusts. Every change is saved atomically with mode 0600."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._hubs: dict[str, HubRecord] = {}
        raw = read_json(path, {"hubs": []})
        for item in raw.get("hubs", []) if isinstance(raw, dict) else []:
            try:
                record = HubRecord(**item)
            except TypeError:
                continue
            self._hubs[record.id] = record
        self._lock = asyncio.Lock()

    def records(self) -> list[HubRecord]:
        return sorted(self._hubs.values(), key=lambda hub: hub.paired_at)

    def get(self, hub_id: str) -> HubRecord | None:
        return self._hubs.get(hub_id)

    def verify(self, hub_id: str, token: str) -> bool:
        """Constant-time check of a presented token against the stored digest."""
        record = self._hubs.get(hub_id)
        expected = record.token_sha256 if record else "0" * 64
        matches = hmac.compare_digest(expected.encode(), token_digest(token).encode())
        return record is not None and bool(token) and matches

    async def authorize(self, hub_id: str, name: str, platform: str) -> str:
        """Create (or replace) the hub's token; returns the token, which is never stored."""
        token = new_token()
        now = self._clock()
        self._hubs[hub_id] = HubRecord(hub_id, name, platform, now, now, token_digest(token))
        await self._save()
        return token

    async def touch(self, hub_id: str, name: str, platform: str) -> None:
        record = self._hubs.get(hub_id)
        if record is None:
            return
        record.last_seen = self._clock()
        record.name = name or record.name
        record.platform = platform or record.platform
        await self._save()

    async def revoke(self, hub_id: str) -> bool:
        if self._hubs.pop(hub_id, None) is None:
            return False
        await self._save()
        return True

    async def clear(self) -> None:
        self._hubs.clear()
        await self._save()

    async def _save(self) -> None:
        data = {"hubs": [asdict(record) for record in self.records()]}
        async with self._lock:
            await asyncio.to_thread(atomic_write_json, self._path, data, True)
