"""The Steam requests of the protocol (users, shortcuts, artwork, restart), one method per request."""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from ..protocol.constants import MAX_NAME_LENGTH
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import (
    ApplyArtwork,
    Artwork,
    ArtworkFailure,
    ArtworkKey,
    ArtworkResponse,
    CreateShortcut,
    DeleteShortcut,
    ListShortcuts,
    OperationResult,
    ShortcutInfo,
    ShortcutsResponse,
    SteamResponse,
    SteamUser,
    SteamUsersResponse,
)
from ..protocol.types import account_id_of
from ..steam.artwork import remove_artwork
from ..steam.download import ArtworkDownloader, ArtworkDownloadError
from ..steam.process import RestartRefused, SteamProcess, SteamProcessError
from ..steam.roots import find_steam_roots
from ..steam.shortcuts_file import NewShortcut, Shortcut
from ..steam.users import SteamUserDir, list_users
from .shortcuts import ArtworkResults, ShortcutBackend

log = logging.getLogger(__name__)


def exe_inside(exe: str, folder: Path) -> bool:
    """Whether a shortcut's executable lies inside `folder` (compared as written and resolved)."""
    if not exe.startswith("/"):
        return False
    target = PurePosixPath(posixpath.normpath(exe))
    candidates = {PurePosixPath(posixpath.normpath(str(folder))), PurePosixPath(os.path.realpath(folder))}
    return any(target != candidate and target.is_relative_to(candidate) for candidate in candidates)


def _summary(failures: ArtworkResults) -> str | None:
    errors = [f"{key.value}: {error}" for key, error in failures.items() if error is not None]
    return "artwork not applied: " + "; ".join(errors) if errors else None


class SteamService:
    """What the connection layer calls for Steam requests; raises ProtocolError for error replies."""

    def __init__(
        self,
        *,
        backend: ShortcutBackend,
        process: SteamProcess,
        downloader: ArtworkDownloader,
        roots: Sequence[Path] | None = None,
        home: Path | None = None,
    ) -> None:
        self.backend = backend
        self.process = process
        self.downloader = downloader
        self._roots = list(roots) if roots is not None else None
        self._home = home

    # --- users ------------------------------------------------------------------------------

    def roots(self) -> list[Path]:
        """Searched on every call: Steam may be installed or logged in after the Agent starts."""
        return find_steam_roots(self._home, self._roots)

    def _users(self) -> list[SteamUserDir]:
        users: dict[int, SteamUserDir] = {}
        for root in self.roots():
            for user in list_users(root):
                users.setdefault(user.account_id, user)  # the preferred root wins
        return sorted(users.values(), key=lambda user: user.account_id)

    async def users(self) -> list[SteamUserDir]:
        return await asyncio.to_thread(self._users)

    async def resolve_user(self, user_id: int | str | None) -> SteamUserDir:
        """The user a request means: 404 if unknown; without userId the only or most recent one."""
        users = await self.users()
        if user_id is not None:
            try:
                account_id = account_id_of(user_id)
            except ValueError as error:
                raise ProtocolError(ErrorCode.BAD_REQUEST, f"userId {error}") from error
            for user in users:
                if user.account_id == account_id:
                    return user
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no Steam user {user_id} on this device")
        if not users:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no Steam user on this device (log in to Steam once)")
        if len(users) == 1:
            return users[0]
        recent = [user for user in users if user.most_recent]
        if len(recent) == 1:
            return recent[0]
        ids = ", ".join(str(user.steam_id64) for user in users)
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"several Steam users on this device; give userId (one of {ids})"
        )

    async def get_steam_users(self) -> SteamUsersResponse:
        return SteamUsersResponse(
            users=[
                SteamUser(
                    id=str(user.steam_id64),
                    name=user.display_name[:MAX_NAME_LENGTH],
                    account_id=user.account_id,
                )
                for user in await self.users()
            ]
        )

    # --- shortcuts ----------------------------------------------------------------------------

    async def list_shortcuts(self, request: ListShortcuts) -> ShortcutsResponse:
        user = await self.resolve_user(request.user_id)
        shortcuts = await self.backend.list_shortcuts(user)
        return ShortcutsResponse(
            shortcuts=[
                ShortcutInfo(
                    app_id=shortcut.app_id,
                    name=shortcut.name,
                    exe=shortcut.exe,
                    start_dir=shortcut.start_dir,
                    launch_options=shortcut.launch_options,
                    tags=list(shortcut.tags),
                )
                for shortcut in shortcuts
            ]
        )

    async def _download(self, artwork: Artwork | None) -> tuple[dict[ArtworkKey, bytes], ArtworkResults]:
        """Every image of `artwork`, downloaded concurrently; failures per key, never raised."""
        if artwork is None:
            return {}, {}
        urls = dict(artwork.items())
        outcomes = await self.downloader.fetch_many(urls)
        images: dict[ArtworkKey, bytes] = {}
        failures: ArtworkResults = {}
        for key, outcome in outcomes.items():
            if isinstance(outcome, ArtworkDownloadError):
                log.warning("artwork %s from %s: %s", key.value, outcome.url, outcome.reason)
                failures[key] = outcome.reason
            else:
                images[key] = outcome.data
        return images, failures

    async def _create(
        self, user: SteamUserDir, shortcut: NewShortcut, artwork: Artwork | None, restart_steam: bool
    ) -> tuple[int, ArtworkResults]:
        # Images first, so that the file backend writes entry, images and icon in one Steam stop.
        images, failures = await self._download(artwork)
        outcome = await self.backend.create(user, shortcut, images, restart_steam=restart_steam)
        return outcome.app_id, {**failures, **outcome.artwork}

    async def create_shortcut(self, request: CreateShortcut) -> OperationResult:
        user = await self.resolve_user(request.user_id)
        spec = request.shortcut
        shortcut = NewShortcut(
            name=spec.name,
            exe=spec.exe,
            start_dir=spec.start_dir or posixpath.dirname(spec.exe) or "/",
            launch_options=spec.launch_options or "",
            tags=tuple(spec.tags or ()),
        )
        app_id, artwork = await self._create(user, shortcut, spec.artwork, bool(request.restart_steam))
        return OperationResult(success=True, app_id=app_id, message=_summary(artwork))

    async def delete_shortcut(self, request: DeleteShortcut) -> OperationResult:
        user = await self.resolve_user(request.user_id)
        await self._delete(user, request.app_id, bool(request.restart_steam))
        return OperationResult(success=True)

    async def _delete(self, user: SteamUserDir, app_id: int, restart_steam: bool) -> None:
        await self.backend.delete(user, app_id, restart_steam=restart_steam)
        removed = await asyncio.to_thread(remove_artwork, user.grid_dir, app_id)
        log.info("removed shortcut %s of user %s and %d artwork files", app_id, user.account_id, len(removed))

    async def apply_artwork(self, request: ApplyArtwork) -> ArtworkResponse:
        user = await self.resolve_user(request.user_id)
        images, failures = await self._download(request.artwork)
        results: ArtworkResults = dict(failures)
        if images:
            results.update(
                await self.backend.apply_artwork(
                    user, request.app_id, images, restart_steam=bool(request.restart_steam)
                )
            )
        order = [key for key in ArtworkKey if key in results]
        return ArtworkResponse(
            applied=[key.value for key in order if results[key] is None],
            failed=[
                ArtworkFailure(type=key.value, error=error)
                for key in order
                if (error := results[key]) is not None
            ],
        )

    async def restart_steam(self) -> SteamResponse:
        try:
            message = await self.process.restart()
        except RestartRefused as error:
            return SteamResponse(success=False, message=str(error))
        except SteamProcessError as error:
            return SteamResponse(success=False, message=f"Steam restart failed: {error}")
        return SteamResponse(success=True, message=message)

    # --- helpers for complete_upload and delete_game ------------------------------------------

    async def create_for_install(
        self,
        *,
        game_name: str,
        exe_path: Path,
        start_dir: Path,
        user_id: int | str | None = None,
        name: str | None = None,
        launch_options: str | None = None,
        tags: Iterable[str] | None = None,
        artwork: Artwork | None = None,
        restart_steam: bool = False,
    ) -> int:
        """The shortcut of a freshly installed game; returns its app id (artwork failures are logged)."""
        user = await self.resolve_user(user_id)
        shortcut = NewShortcut(
            name=name or game_name,
            exe=str(exe_path),
            start_dir=str(start_dir),
            launch_options=launch_options or "",
            tags=tuple(tags or ()),
        )
        app_id, artwork_results = await self._create(user, shortcut, artwork, restart_steam)
        summary = _summary(artwork_results)
        if summary:
            log.warning("%s (app %s): %s", game_name, app_id, summary)
        return app_id

    async def find_for_game(
        self, game_dir: Path, user_id: int | str | None = None
    ) -> list[tuple[SteamUserDir, Shortcut]]:
        """Shortcuts whose executable lies inside `game_dir`, for one user or (None) every user."""
        users = [await self.resolve_user(user_id)] if user_id is not None else await self.users()
        found: list[tuple[SteamUserDir, Shortcut]] = []
        for user in users:
            for shortcut in await self.backend.list_shortcuts(user):
                if exe_inside(shortcut.exe, game_dir):
                    found.append((user, shortcut))
        return found

    async def delete_for_game(
        self,
        game_dir: Path,
        *,
        user_id: int | str | None = None,
        app_ids: Iterable[int] = (),
        restart_steam: bool = False,
    ) -> list[int]:
        """Remove the game's shortcuts and their artwork (before its folder goes); returns the ids removed.

        `app_ids` (e.g. recorded at install) are removed too when they still exist: with the
        Steam-client backend the file may not list a shortcut Steam created moments ago.
        """
        by_user: dict[int, tuple[SteamUserDir, list[int]]] = {}
        for user, shortcut in await self.find_for_game(game_dir, user_id):
            by_user.setdefault(user.account_id, (user, []))[1].append(shortcut.app_id)
        extra = list(app_ids)
        if extra:
            for user in await self._users_for_ids(user_id):
                by_user.setdefault(user.account_id, (user, []))[1].extend(extra)
        removed: list[int] = []
        for user, ids in by_user.values():
            # One write per user, so the file backend restarts Steam at most once for each.
            gone = await self.backend.delete_many(user, ids, restart_steam=restart_steam)
            for app_id in gone:
                await asyncio.to_thread(remove_artwork, user.grid_dir, app_id)
            removed.extend(gone)
        return removed

    async def _users_for_ids(self, user_id: int | str | None) -> list[SteamUserDir]:
        """The given user, else the default one, else (several users, none most recent) all of them."""
        try:
            return [await self.resolve_user(user_id)]
        except ProtocolError as error:
            if user_id is not None or error.code == ErrorCode.NOT_FOUND:
                if user_id is None:
                    return []
                raise
            return await self.users()
