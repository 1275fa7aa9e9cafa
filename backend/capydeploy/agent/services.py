"""Builds the Agent's transfer and Steam services from its configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Agent
    from .transfer import TransferService


def build_transfer_service(install_dir: Path) -> TransferService:
    from .transfer import TransferService  # noqa: PLC0415

    return TransferService(install_dir)


def build_steam_service(agent: Agent) -> Any:
    return None  # filled in with the Steam integration
