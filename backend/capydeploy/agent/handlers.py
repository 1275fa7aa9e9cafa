"""What the Agent does for each authenticated request; each handler returns the reply payload."""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..protocol import ErrorCode, MessageType, ProtocolError
from ..protocol import messages as m
from ..protocol.paths import RESERVED_NAMES, PathRuleError, validate_game_name
from .state import InstalledGame

if TYPE_CHECKING:
    from .connection import Handler, HubSession

log = logging.getLogger(__name__)


def _hub(session: HubSession) -> str:
    assert session.hub_id is not None
    return session.hub_id


async def _event(session: HubSession, status: m.OperationStatus, game: str, progress: float, message: str) -> None:
    await session.push(
        MessageType.OPERATION_EVENT,
        m.OperationEvent(type="install", status=status, game_name=game, progress=progress, message=message),
    )


async def get_info(session: HubSession, _: m.Empty) -> m.InfoResponse:
    return session.agent.info()


async def get_config(session: HubSession, _: m.Empty) -> m.ConfigResponse:
    return m.ConfigResponse(install_path=str(session.agent.install_dir))


async def get_steam_users(session: HubSession, _: m.Empty) -> m.SteamUsersResponse:
    return await session.agent.steam.get_steam_users()


async def list_shortcuts(session: HubSession, request: m.ListShortcuts) -> m.ShortcutsResponse:
    return await session.agent.steam.list_shortcuts(request)


async def create_shortcut(session: HubSession, request: m.CreateShortcut) -> m.OperationResult:
    return await session.agent.steam.create_shortcut(request)


async def delete_shortcut(session: HubSession, request: m.DeleteShortcut) -> m.OperationResult:
    return await session.agent.steam.delete_shortcut(request)


async def apply_artwork(session: HubSession, request: m.ApplyArtwork) -> m.ArtworkResponse:
    return await session.agent.steam.apply_artwork(request)


async def restart_steam(session: HubSession, _: m.Empty) -> m.SteamResponse:
    return await session.agent.steam.restart_steam()


async def init_upload(session: HubSession, request: m.InitUpload) -> m.UploadInitResponse:
    agent = session.agent
    # The request is not read again past its config: its entries go once the upload lists them.
    reply = await agent.transfer.init_upload(_hub(session), request, consume=True)
    held = sum((reply.resume_from or {}).values())
    verb = "Resuming" if held else "Receiving"
    await _event(session, m.OperationStatus.START, request.config.game_name, 0, f"{verb} {request.config.game_name}")
    agent.progress_changed()
    return reply


async def complete_upload(session: HubSession, request: m.CompleteUpload) -> m.OperationResult:
    agent = session.agent
    game_name = agent.transfer.upload_game_name(request.upload_id) or ""
    try:
        installed = await agent.transfer.complete_upload(_hub(session), request.upload_id, request.sha256)
    except ProtocolError as error:
        if game_name and error.code != ErrorCode.BAD_REQUEST:
            await _event(session, m.OperationStatus.ERROR, game_name, 0, f"Install failed: {error.message}")
        raise
    # Built without validation: the path is ours, and found_sha256 holds the staged files' paths
    # (checked by init_upload) with digests we computed. Validating 20 000 of them took ~100 ms
    # on the event loop.
    result = m.OperationResult.model_construct(
        success=True, path=str(installed.path), sha256=installed.found_sha256 or None
    )
    if request.create_shortcut:
        try:
            result.app_id = await _create_shortcut_for(session, request, installed)
        except ProtocolError as error:
            result.shortcut_error = error.message
        except Exception as error:
            log.exception("shortcut for %s failed", installed.game_name)
            result.shortcut_error = f"shortcut failed: {error}"
    agent.game_installed(
        InstalledGame(
            game_name=installed.game_name, path=str(installed.path), installed_at=time.time(), app_id=result.app_id
        )
    )
    await _event(session, m.OperationStatus.COMPLETE, installed.game_name, 100, "Installation complete")
    return result


async def _create_shortcut_for(session: HubSession, request: m.CompleteUpload, installed: Any) -> int:
    """D6: exe = installed absolute path of the executable, start dir = the folder holding it."""
    spec = request.shortcut or m.CompleteShortcut()
    if spec.exe is not None:
        exe_path = installed.path / spec.exe
    elif installed.executable is not None:
        exe_path = installed.executable
    else:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "no executable: give config.executable or shortcut.exe")
    if not exe_path.is_file():
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"the executable {exe_path.name!r} is not in the installed game")
    app_id: int = await session.agent.steam.create_for_install(
        game_name=installed.game_name,
        exe_path=exe_path,
        start_dir=exe_path.parent,
        user_id=request.user_id,
        name=spec.name or installed.game_name,
        launch_options=spec.launch_options,
        tags=spec.tags,
        artwork=spec.artwork,
        restart_steam=bool(request.restart_steam),
    )
    return app_id


async def cancel_upload(session: HubSession, request: m.CancelUpload) -> m.OperationResult:
    agent = session.agent
    game_name = agent.transfer.upload_game_name(request.upload_id)
    await agent.transfer.cancel_upload(_hub(session), request.upload_id)
    if game_name:
        await _event(session, m.OperationStatus.ERROR, game_name, 0, "Upload cancelled")
    agent.state_changed()
    return m.OperationResult(success=True)


async def delete_game(session: HubSession, request: m.DeleteGame) -> m.OperationResult:
    """D8: remove the game's shortcuts (and their artwork), then its folder, only inside the install root."""
    agent = session.agent
    root = agent.transfer.resolve_install_root(None)
    game_name = request.game_name or await _game_of_app(session, request)
    game_dir = root / game_name
    await asyncio.to_thread(_check_game_dir, root, game_dir)
    removed = await agent.steam.delete_for_game(
        game_dir,
        user_id=request.user_id,
        app_ids=[request.app_id] if request.app_id is not None else [],
        restart_steam=bool(request.restart_steam),
    )
    await agent.transfer.delete_game_folder(game_name)
    agent.state_changed()
    shortcuts = f" and {len(removed)} shortcut(s)" if removed else ""
    return m.OperationResult(success=True, path=str(game_dir), message=f"removed {game_name}{shortcuts}")


def _check_game_dir(root: Path, game_dir: Path) -> None:
    """A game folder delete_game may act on: a folder in the install root, or a symlink to one in it.

    Checked before any shortcut is removed: shortcuts are matched by the folder's real path, so a
    link out of the root (made on the device) must not lead to the shortcuts of whatever it points at.
    """
    if not game_dir.is_dir():
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no installed game {game_dir.name!r}")
    if not game_dir.is_symlink():
        return
    real = Path(os.path.realpath(game_dir))
    if (
        real == root
        or not real.is_relative_to(root)
        or any(part in RESERVED_NAMES for part in real.relative_to(root).parts)
    ):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"{game_dir.name!r} in {root} is a symbolic link that points outside the install folder; "
            "it is not a game this agent installed",
        )


async def _game_of_app(session: HubSession, request: m.DeleteGame) -> str:
    """The installed game folder a shortcut's executable points into."""
    agent = session.agent
    assert request.app_id is not None
    root = agent.transfer.resolve_install_root(None)
    user = await agent.steam.resolve_user(request.user_id)
    for shortcut in await agent.steam.backend.list_shortcuts(user):
        if shortcut.app_id != request.app_id:
            continue
        # Normalised first: '..' in a shortcut's exe must not climb out of (or around) the root.
        try:
            relative = PurePosixPath(posixpath.normpath(shortcut.exe)).relative_to(root)
        except ValueError:
            break
        if len(relative.parts) >= 2:
            try:
                return validate_game_name(relative.parts[0])
            except PathRuleError:
                break
        break
    raise ProtocolError(ErrorCode.NOT_FOUND, f"app {request.app_id} is not a game installed by this agent")


HANDLERS: dict[MessageType, Handler] = {
    MessageType.GET_INFO: get_info,
    MessageType.GET_CONFIG: get_config,
    MessageType.GET_STEAM_USERS: get_steam_users,
    MessageType.LIST_SHORTCUTS: list_shortcuts,
    MessageType.CREATE_SHORTCUT: create_shortcut,
    MessageType.DELETE_SHORTCUT: delete_shortcut,
    MessageType.APPLY_ARTWORK: apply_artwork,
    MessageType.RESTART_STEAM: restart_steam,
    MessageType.INIT_UPLOAD: init_upload,
    MessageType.COMPLETE_UPLOAD: complete_upload,
    MessageType.CANCEL_UPLOAD: cancel_upload,
    MessageType.DELETE_GAME: delete_game,
}
