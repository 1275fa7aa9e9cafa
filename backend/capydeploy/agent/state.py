"""The Agent's state as a user interface sees it (Decky panel, terminal), and its change signal.

These models are the single source of truth for the panel's TypeScript types
(`src/generated/state.ts` is generated from their JSON Schema).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SnapshotModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


class PendingPairing(SnapshotModel):
    """A pairing code waiting to be typed on the Hub; shown only on the device."""

    code: str
    hub_name: str
    expires_at: float  # Unix time, seconds
    expires_in: float  # seconds left when the snapshot was taken


class ConnectedHub(SnapshotModel):
    id: str
    name: str
    platform: str
    address: str
    authenticated: bool
    connected_at: float


class AuthorizedHub(SnapshotModel):
    id: str
    name: str
    platform: str
    paired_at: float
    last_seen: float


class UploadState(SnapshotModel):
    upload_id: str
    game_name: str
    current_file: str
    transferred_bytes: int
    total_bytes: int
    percentage: float
    bytes_per_second: float
    seconds_remaining: float | None


class InstalledGame(SnapshotModel):
    game_name: str
    path: str
    installed_at: float
    app_id: int | None = None


class AgentSnapshot(SnapshotModel):
    agent_id: str
    name: str
    version: str
    platform: str
    running: bool
    host: str
    port: int
    addresses: list[str]
    accept_connections: bool
    install_dir: str
    pairing: PendingPairing | None
    lockout_remaining: float
    connected_hub: ConnectedHub | None
    authorized_hubs: list[AuthorizedHub]
    upload: UploadState | None
    recent_installs: list[InstalledGame]
    error: str | None = None


StateListener = Callable[[AgentSnapshot], None]
