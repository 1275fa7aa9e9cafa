"""The shortcut interface and its two backends: the shortcuts.vdf file and the Decky Steam-client bridge."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from ..protocol.constants import UINT32_MAX
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import ArtworkKey
from ..steam.artwork import (
    STEAM_CLIENT_ASSET_TYPES,
    InvalidImageError,
    client_format,
    sniff_image_type,
    write_artwork,
)
from ..steam.process import RestartRefused, SteamProcess, SteamProcessError
from ..steam.shortcuts_file import (
    DEFAULT_BACKUPS,
    DuplicateShortcutError,
    NewShortcut,
    Shortcut,
    ShortcutsFile,
    ShortcutsFileError,
)
from ..steam.users import SteamUserDir
from ..storage import atomic_write_bytes, atomic_write_json, read_json

log = logging.getLogger(__name__)

STEAM_RUNNING: Final = (
    "Steam is running; it keeps its shortcut list in memory and would overwrite shortcuts.vdf on exit. "
    "Close Steam, or send restartSteam: true to let the Agent restart it"
)
DEFAULT_CLIENT_TIMEOUT: Final = 20.0  # below the Hub's 30 s request timeout, so the Hub hears why
DEFAULT_REQUEST_MAX_AGE: Final = 24 * 3600.0

# Per artwork key: None when applied, else the reason it was not.
ArtworkResults = dict[ArtworkKey, str | None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class CreateOutcome:
    app_id: int
    artwork: ArtworkResults = field(default_factory=dict)


class ShortcutBackend(Protocol):
    """What the Steam service needs from a way of changing Steam's shortcuts."""

    async def list_shortcuts(self, user: SteamUserDir) -> list[Shortcut]: ...

    async def create(
        self,
        user: SteamUserDir,
        shortcut: NewShortcut,
        artwork: Mapping[ArtworkKey, bytes],
        *,
        restart_steam: bool = False,
    ) -> CreateOutcome: ...

    async def rename(
        self, user: SteamUserDir, app_id: int, name: str, *, restart_steam: bool = False
    ) -> None: ...

    async def delete(self, user: SteamUserDir, app_id: int, *, restart_steam: bool = False) -> None: ...

    async def delete_many(
        self, user: SteamUserDir, app_ids: Iterable[int], *, restart_steam: bool = False
    ) -> list[int]: ...

    async def apply_artwork(
        self,
        user: SteamUserDir,
        app_id: int,
        artwork: Mapping[ArtworkKey, bytes],
        *,
        restart_steam: bool = False,
    ) -> ArtworkResults: ...


def _file_error(error: Exception) -> ProtocolError:
    if isinstance(error, ShortcutsFileError):
        return ProtocolError(ErrorCode.INTERNAL, f"shortcuts.vdf cannot be changed safely: {error}")
    if isinstance(error, DuplicateShortcutError):
        return ProtocolError(ErrorCode.CONFLICT, str(error))
    return ProtocolError(ErrorCode.BAD_REQUEST, str(error))


def _load(user: SteamUserDir) -> ShortcutsFile:
    try:
        return ShortcutsFile.load(user.shortcuts_path)
    except ShortcutsFileError as error:
        raise _file_error(error) from error


def _not_found(user: SteamUserDir, app_id: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.NOT_FOUND, f"no shortcut with appId {app_id} for Steam user {user.account_id}"
    )


def _write_images(
    user: SteamUserDir, app_id: int, artwork: Mapping[ArtworkKey, bytes]
) -> tuple[ArtworkResults, Path | None]:
    """Write image files; returns the per-key results and the icon's path when it was written."""
    results: ArtworkResults = {}
    icon: Path | None = None
    for key, data in artwork.items():
        try:
            path = write_artwork(user.grid_dir, app_id, key, data)
        except InvalidImageError as error:
            results[key] = str(error)
            continue
        except OSError as error:
            results[key] = f"cannot write the image: {error.strerror or error}"
            continue
        results[key] = None
        if key is ArtworkKey.ICON:
            icon = path
    return results, icon


def _write_artwork_into(
    shortcuts_file: ShortcutsFile,
    user: SteamUserDir,
    app_id: int,
    artwork: Mapping[ArtworkKey, bytes],
    results: ArtworkResults,
) -> None:
    """Inside an edit: write the image files, then point the shortcut's `icon` field at the icon."""
    written, icon = _write_images(user, app_id, artwork)
    results.update(written)
    if icon is not None and not shortcuts_file.update(app_id, icon=str(icon)):
        results[ArtworkKey.ICON] = f"no shortcut with appId {app_id} to set the icon of"


class FileShortcutBackend:
    """Edits shortcuts.vdf directly, only while Steam is stopped (it rewrites the file on exit)."""

    def __init__(self, process: SteamProcess, *, backups: int = DEFAULT_BACKUPS) -> None:
        self.process = process
        self.backups = backups
        self._lock = asyncio.Lock()

    async def list_shortcuts(self, user: SteamUserDir) -> list[Shortcut]:
        shortcuts_file = await asyncio.to_thread(_load, user)
        return shortcuts_file.shortcuts()

    @contextlib.asynccontextmanager
    async def _steam_stopped(self, restart_steam: bool) -> AsyncIterator[None]:
        """Hold the write lock while Steam is not running: stopped and restarted when allowed."""
        async with self._lock:
            if not await self.process.is_running():
                yield
                return
            if not restart_steam:
                raise ProtocolError(ErrorCode.CONFLICT, STEAM_RUNNING)
            try:
                async with self.process.stopped():
                    yield
            except RestartRefused as error:
                raise ProtocolError(
                    ErrorCode.CONFLICT, f"Steam is running and cannot be restarted now: {error}"
                ) from error
            except SteamProcessError as error:
                raise ProtocolError(ErrorCode.INTERNAL, f"{error}; nothing was written") from error

    def _change(self, user: SteamUserDir, change: Callable[[ShortcutsFile], _T], save: bool) -> _T:
        shortcuts_file = _load(user)
        try:
            result = change(shortcuts_file)
            if save:
                shortcuts_file.save(self.backups)
        except (ShortcutsFileError, ValueError) as error:
            raise _file_error(error) from error
        return result

    async def _edit(
        self,
        user: SteamUserDir,
        restart_steam: bool,
        change: Callable[[ShortcutsFile], _T],
        dry_run: Callable[[ShortcutsFile], object] | None = None,
    ) -> _T:
        # A dry run first (`change` itself unless given, never saved), so that a bad request or an
        # unreadable file never costs a Steam restart.
        await asyncio.to_thread(self._change, user, dry_run or change, False)
        async with self._steam_stopped(restart_steam):
            # Re-read after Steam stopped: its exit may have rewritten the file.
            return await asyncio.to_thread(self._change, user, change, True)

    async def create(
        self,
        user: SteamUserDir,
        shortcut: NewShortcut,
        artwork: Mapping[ArtworkKey, bytes],
        *,
        restart_steam: bool = False,
    ) -> CreateOutcome:
        def change(shortcuts_file: ShortcutsFile) -> int:
            app_id, _created = shortcuts_file.upsert(shortcut)
            return app_id

        results: ArtworkResults = {}

        def change_with_artwork(shortcuts_file: ShortcutsFile) -> int:
            app_id = change(shortcuts_file)
            _write_artwork_into(shortcuts_file, user, app_id, artwork, results)
            return app_id

        # The dry run writes no image: only the real run, with Steam stopped, does.
        app_id = await self._edit(user, restart_steam, change_with_artwork, dry_run=change)
        return CreateOutcome(app_id=app_id, artwork=results)

    async def rename(
        self, user: SteamUserDir, app_id: int, name: str, *, restart_steam: bool = False
    ) -> None:
        def change(shortcuts_file: ShortcutsFile) -> None:
            if not shortcuts_file.update(app_id, name=name):
                raise _not_found(user, app_id)

        await self._edit(user, restart_steam, change)

    async def delete(self, user: SteamUserDir, app_id: int, *, restart_steam: bool = False) -> None:
        def change(shortcuts_file: ShortcutsFile) -> None:
            if not shortcuts_file.remove(app_id):
                raise _not_found(user, app_id)

        await self._edit(user, restart_steam, change)

    async def delete_many(
        self, user: SteamUserDir, app_ids: Iterable[int], *, restart_steam: bool = False
    ) -> list[int]:
        """Remove those of `app_ids` that exist, in one write (one Steam restart at most)."""
        wanted = list(dict.fromkeys(app_ids))
        current = await asyncio.to_thread(_load, user)
        if not any(current.find(app_id) is not None for app_id in wanted):
            return []

        def change(shortcuts_file: ShortcutsFile) -> list[int]:
            return [app_id for app_id in wanted if shortcuts_file.remove(app_id)]

        return await self._edit(user, restart_steam, change)

    async def apply_artwork(
        self,
        user: SteamUserDir,
        app_id: int,
        artwork: Mapping[ArtworkKey, bytes],
        *,
        restart_steam: bool = False,
    ) -> ArtworkResults:
        images: dict[ArtworkKey, bytes] = {
            key: data for key, data in artwork.items() if key is not ArtworkKey.ICON
        }
        icon = artwork.get(ArtworkKey.ICON)
        restart_error: str | None = None
        if restart_steam and await self.process.is_running():
            try:
                # One restart, after which Steam shows every new image and the icon field.
                return await self._apply_with_restart(user, app_id, artwork)
            except ProtocolError as error:
                # Steam could not be stopped (or the file is unsafe): do what needs no restart.
                restart_error = error.message
        # grid/ files are read by Steam, never rewritten by it: safe while it runs.
        results, _ = await asyncio.to_thread(_write_images, user, app_id, images)
        if icon is not None:
            results[ArtworkKey.ICON] = (
                restart_error if restart_error is not None else await self._apply_icon(user, app_id, icon)
            )
        return results

    async def _apply_with_restart(
        self, user: SteamUserDir, app_id: int, artwork: Mapping[ArtworkKey, bytes]
    ) -> ArtworkResults:
        results: ArtworkResults = {}

        def change(shortcuts_file: ShortcutsFile) -> None:
            _write_artwork_into(shortcuts_file, user, app_id, artwork, results)

        async with self._steam_stopped(True):
            await asyncio.to_thread(self._change, user, change, True)
        return results

    async def _apply_icon(self, user: SteamUserDir, app_id: int, data: bytes) -> str | None:
        """The icon is a file plus the shortcut's `icon` field: the field needs Steam stopped."""
        if sniff_image_type(data) is None:
            return "not a PNG, JPEG or WebP image"
        try:
            shortcuts_file = await asyncio.to_thread(_load, user)
        except ProtocolError as error:
            return error.message
        if shortcuts_file.find(app_id) is None:
            return f"no shortcut with appId {app_id} to set the icon of"

        def change(shortcuts_file: ShortcutsFile) -> None:
            path = write_artwork(user.grid_dir, app_id, ArtworkKey.ICON, data)
            if not shortcuts_file.update(app_id, icon=str(path)):
                raise _not_found(user, app_id)

        try:
            async with self._steam_stopped(False):
                await asyncio.to_thread(self._change, user, change, True)
        except ProtocolError as error:
            return error.message
        except OSError as error:
            return f"cannot write the icon: {error.strerror or error}"
        return None


# --- the Steam-client bridge ------------------------------------------------------------------

RequestListener = Callable[[dict[str, Any]], Awaitable[None] | None]

QUEUE_FILE: Final = "shortcut-requests.json"
BLOB_FOLDER: Final = "shortcut-requests"


def _created_at(request: Mapping[str, Any], default: float) -> float:
    value = request.get("createdAt")
    return float(value) if isinstance(value, int | float) else default


def _result_ok(result: Mapping[str, Any]) -> bool:
    # The panel answers {ok, appId} or {ok: false, error}; "success" is accepted as a synonym.
    return bool(result.get("ok", result.get("success", False)))


class SteamClientShortcutBackend:
    """Asks the Decky panel to act through `SteamClient.Apps`; requests wait on disk until answered.

    A request is `{id, kind, accountId, createdAt, ...}` with kind `create` (name, exe, startDir,
    launchOptions, tags), `rename` (appId, name), `remove` (appId), `artwork` (appId,
    artwork: [{assetType, format, data (base64)}]) or `icon` (appId, path). It is written to the
    queue file, announced through `on_request`, and finished by `complete_request(id, result)`
    with `{ok: true, appId}` or `{ok: false, error, code?}`. The panel also pulls
    `pending_requests()` when it starts, since Decky drops events nobody hears. SteamClient acts
    on the logged-in Steam user; `accountId` lets the panel check it is the same one.
    """

    def __init__(
        self,
        folder: Path,
        on_request: RequestListener | None = None,
        *,
        timeout: float = DEFAULT_CLIENT_TIMEOUT,
        max_age: float = DEFAULT_REQUEST_MAX_AGE,
    ) -> None:
        self.folder = Path(folder)
        self.on_request = on_request
        self.timeout = timeout
        self.max_age = max_age
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    # --- the queue on disk --------------------------------------------------------------------

    @property
    def queue_path(self) -> Path:
        return self.folder / QUEUE_FILE

    def _blob_path(self, request_id: str) -> Path:
        return self.folder / BLOB_FOLDER / f"{request_id}.bin"

    def _read_queue(self) -> list[dict[str, Any]]:
        stored = read_json(self.queue_path, {})
        requests = stored.get("requests") if isinstance(stored, dict) else None
        if not isinstance(requests, list):
            return []
        return [
            request
            for request in requests
            if isinstance(request, dict) and isinstance(request.get("id"), str)
        ]

    def _write_queue(self, requests: list[dict[str, Any]]) -> None:
        atomic_write_json(self.queue_path, {"version": 1, "requests": requests}, private=True)

    def _add(self, request: dict[str, Any], blob: bytes | None) -> None:
        # Image bytes live beside the queue, so the queue file stays small to rewrite.
        if blob is not None:
            atomic_write_bytes(self._blob_path(request["id"]), blob, mode=0o600)
        self._write_queue([*self._read_queue(), request])

    def _remove(self, request_id: str) -> dict[str, Any] | None:
        requests = self._read_queue()
        found = next((request for request in requests if request["id"] == request_id), None)
        if found is None:
            return None
        self._write_queue([request for request in requests if request["id"] != request_id])
        self._blob_path(request_id).unlink(missing_ok=True)
        return found

    def _presented(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request as the panel gets it: artwork bytes inline, base64 (SetCustomArtworkForApp)."""
        if request.get("kind") != "artwork":
            return dict(request)
        try:
            data = base64.b64encode(self._blob_path(request["id"]).read_bytes()).decode("ascii")
        except OSError:
            data = ""
        images = request.get("artwork")
        artwork = [{**image, "data": data} for image in images] if isinstance(images, list) else []
        return {**request, "artwork": artwork}

    def _pending(self) -> list[dict[str, Any]]:
        now = time.time()
        requests = self._read_queue()
        fresh = [request for request in requests if now - _created_at(request, now) < self.max_age]
        if len(fresh) != len(requests):
            kept = {request["id"] for request in fresh}
            for stale in requests:
                if stale["id"] not in kept:
                    log.warning(
                        "dropping shortcut request %s (%s): never answered", stale["id"], stale.get("kind")
                    )
                    self._blob_path(stale["id"]).unlink(missing_ok=True)
            self._write_queue(fresh)
        return [self._presented(request) for request in fresh]

    async def pending_requests(self) -> list[dict[str, Any]]:
        """Every request not yet answered, oldest first (those made before a restart included)."""
        async with self._lock:
            return await asyncio.to_thread(self._pending)

    async def complete_request(self, request_id: str, result: Mapping[str, Any] | None) -> bool:
        """The panel's answer; False when the id is unknown (already answered, or timed out)."""
        answer = (
            dict(result)
            if isinstance(result, Mapping)
            else {"ok": False, "error": "the panel gave no result"}
        )
        async with self._lock:
            request = await asyncio.to_thread(self._remove, request_id)
        waiter = self._waiters.get(request_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)
            return True
        if request is not None:
            # Made before a restart: nobody waits for it any more, the answer only goes to the log.
            log.info("shortcut request %s (%s) answered: %s", request_id, request.get("kind"), answer)
        return request is not None

    async def _submit(
        self, kind: str, user: SteamUserDir, fields: dict[str, Any], blob: bytes | None = None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "id": secrets.token_hex(8),
            "kind": kind,
            "accountId": user.account_id,
            "createdAt": time.time(),
            **fields,
        }
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # Registered before anything is announced: the answer may come back at once.
        self._waiters[request["id"]] = waiter
        try:
            async with self._lock:
                await asyncio.to_thread(self._add, request, blob)
            await self._announce(request)
            try:
                result = await asyncio.wait_for(waiter, timeout=self.timeout)
            except TimeoutError:
                async with self._lock:
                    await asyncio.to_thread(self._remove, request["id"])
                raise ProtocolError(
                    ErrorCode.INTERNAL,
                    f"the Steam client did not answer the {kind} request within {self.timeout:g} s "
                    "(is Steam running with the CapyDeploy plugin loaded?)",
                ) from None
        finally:
            self._waiters.pop(request["id"], None)
        if not _result_ok(result):
            code = result.get("code")
            error_code = ErrorCode(code) if code in (400, 404, 409) else ErrorCode.INTERNAL
            reason = result.get("error") or "no reason given"
            raise ProtocolError(error_code, f"Steam client {kind} failed: {reason}")
        return result

    async def _announce(self, request: dict[str, Any]) -> None:
        if self.on_request is None:
            return
        try:
            outcome = self.on_request(await asyncio.to_thread(self._presented, request))
            if outcome is not None:
                await outcome
        except Exception:
            # The request stays queued: the panel pulls pending_requests() when it comes up.
            log.exception("announcing shortcut request %s failed", request["id"])

    # --- the backend interface ------------------------------------------------------------------

    async def list_shortcuts(self, user: SteamUserDir) -> list[Shortcut]:
        # Reading is safe while Steam runs; the file may lag behind Steam's memory until it saves.
        shortcuts_file = await asyncio.to_thread(_load, user)
        return shortcuts_file.shortcuts()

    async def create(
        self,
        user: SteamUserDir,
        shortcut: NewShortcut,
        artwork: Mapping[ArtworkKey, bytes],
        *,
        restart_steam: bool = False,
    ) -> CreateOutcome:
        fields = {
            "name": shortcut.name,
            "exe": shortcut.exe,
            "startDir": shortcut.start_dir,
            "launchOptions": shortcut.launch_options,
            "tags": list(shortcut.tags),
        }
        result = await self._submit("create", user, fields)
        app_id = result.get("appId")
        if not isinstance(app_id, int) or isinstance(app_id, bool) or not 0 < app_id <= UINT32_MAX:
            raise ProtocolError(ErrorCode.INTERNAL, f"the Steam client reported an invalid appId {app_id!r}")
        # Artwork as separate requests (not inside `create`), so each key gets its own result.
        artwork_results = await self.apply_artwork(user, app_id, artwork) if artwork else {}
        return CreateOutcome(app_id=app_id, artwork=artwork_results)

    async def rename(
        self, user: SteamUserDir, app_id: int, name: str, *, restart_steam: bool = False
    ) -> None:
        await self._submit("rename", user, {"appId": app_id, "name": name})

    async def delete(self, user: SteamUserDir, app_id: int, *, restart_steam: bool = False) -> None:
        await self._submit("remove", user, {"appId": app_id})

    async def delete_many(
        self, user: SteamUserDir, app_ids: Iterable[int], *, restart_steam: bool = False
    ) -> list[int]:
        """One remove request per id; ids Steam does not know (answered with code 404) are skipped."""
        removed: list[int] = []
        for app_id in dict.fromkeys(app_ids):
            try:
                await self.delete(user, app_id)
            except ProtocolError as error:
                if error.code != ErrorCode.NOT_FOUND:
                    raise
                continue
            removed.append(app_id)
        return removed

    async def apply_artwork(
        self,
        user: SteamUserDir,
        app_id: int,
        artwork: Mapping[ArtworkKey, bytes],
        *,
        restart_steam: bool = False,
    ) -> ArtworkResults:
        results: ArtworkResults = {}
        for key, data in artwork.items():
            image_type = sniff_image_type(data)
            if image_type is None:
                results[key] = "not a PNG, JPEG or WebP image"
                continue
            try:
                if key is ArtworkKey.ICON:
                    # No asset type for icons: the file in grid/ plus the shortcut's icon field.
                    path = await asyncio.to_thread(write_artwork, user.grid_dir, app_id, key, data)
                    await self._submit("icon", user, {"appId": app_id, "path": str(path)})
                else:
                    image = {"assetType": STEAM_CLIENT_ASSET_TYPES[key], "format": client_format(image_type)}
                    await self._submit("artwork", user, {"appId": app_id, "artwork": [image]}, blob=data)
            except ProtocolError as error:
                results[key] = error.message
            except OSError as error:
                results[key] = f"cannot write the image: {error.strerror or error}"
            else:
                results[key] = None
        return results
