"""Fixtures for the transfer tests: an install root and services that are always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from capydeploy.agent.transfer import TransferService
from tests.agent.transfer.transfer_helpers import CHUNK

ServiceFactory = Callable[..., TransferService]


@pytest.fixture
def games(tmp_path: Path) -> Path:
    folder = tmp_path / "Games"
    folder.mkdir()
    return folder


@pytest.fixture
async def make_service(games: Path) -> AsyncIterator[ServiceFactory]:
    """Build services over `games` (several may share it, as after an Agent restart)."""
    made: list[TransferService] = []

    def build(**options: Any) -> TransferService:
        options.setdefault("chunk_size", CHUNK)
        install_dir = options.pop("install_dir", games)
        service = TransferService(install_dir, **options)
        made.append(service)
        return service

    yield build
    for service in made:
        await service.close()


@pytest.fixture
def service(make_service: ServiceFactory) -> TransferService:
    return make_service()
