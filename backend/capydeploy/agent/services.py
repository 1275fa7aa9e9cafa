"""Builds the Agent's transfer and Steam services from its configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..steam.download import ArtworkDownloader, default_address_allowed
from ..steam.process import SteamProcess, default_pid_files
from ..steam.roots import find_steam_roots
from .config import AgentConfig
from .shortcuts import FileShortcutBackend, ShortcutBackend, SteamClientShortcutBackend
from .steam_service import SteamService
from .transfer import TransferService

RequestListener = Callable[[dict[str, Any]], None]


def build_transfer_service(install_dir: Path) -> TransferService:
    return TransferService(install_dir)


def build_steam_service(
    config: AgentConfig, on_steam_request: RequestListener
) -> tuple[SteamService, SteamClientShortcutBackend | None]:
    """The Steam service with the backend the config asks for (file, or the Decky panel's SteamClient)."""
    home = config.resolved_home()
    roots = find_steam_roots(home, config.steam_root)
    process = SteamProcess(steam_command=[config.steam_command], pid_files=default_pid_files(home, roots))
    client_backend: SteamClientShortcutBackend | None = None
    backend: ShortcutBackend
    if config.shortcut_backend == "steam-client":
        client_backend = SteamClientShortcutBackend(Path(config.data_dir) / "steam-requests", on_steam_request)
        backend = client_backend
    else:
        backend = FileShortcutBackend(process)
    downloader = ArtworkDownloader(address_allowed=config.artwork_address_allowed or default_address_allowed)
    service = SteamService(backend=backend, process=process, downloader=downloader, roots=roots, home=home)
    return service, client_backend
