"""The Steam-client bridge: requests queued on disk, announced, answered by the panel, timed out."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from capydeploy.agent.shortcuts import SteamClientShortcutBackend
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from capydeploy.protocol.messages import ArtworkKey
from capydeploy.steam.shortcuts_file import NewShortcut
from capydeploy.steam.users import SteamUserDir

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
GAME = NewShortcut(
    name="Hollow Knight",
    exe="/home/deck/Games/Hollow Knight/hollow_knight.exe",
    start_dir="/home/deck/Games/Hollow Knight",
    launch_options="-windowed",
    tags=("Metroidvania",),
)


class Panel:
    """Stands in for the Decky frontend: hears announcements and, when told to, answers them."""

    def __init__(self) -> None:
        self.heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.backend: SteamClientShortcutBackend | None = None

    async def __call__(self, request: dict[str, Any]) -> None:
        await self.heard.put(request)

    async def answer_next(self, result: dict[str, Any] | None) -> dict[str, Any]:
        request = await self.heard.get()
        assert self.backend is not None
        assert await self.backend.complete_request(request["id"], result) is True
        return request


@pytest.fixture
def user(tmp_path: Path) -> SteamUserDir:
    root = tmp_path / "Steam"
    (root / "userdata/52079950/config").mkdir(parents=True)
    return SteamUserDir(root=root, account_id=52079950)


@pytest.fixture
def panel() -> Panel:
    return Panel()


@pytest.fixture
def backend(tmp_path: Path, panel: Panel) -> SteamClientShortcutBackend:
    panel.backend = SteamClientShortcutBackend(tmp_path / "queue", panel)
    return panel.backend


async def test_create_is_announced_and_completed(
    backend: SteamClientShortcutBackend, panel: Panel, user: SteamUserDir
) -> None:
    task = asyncio.create_task(backend.create(user, GAME, {}))
    request = await panel.answer_next({"ok": True, "appId": 3000000001})
    outcome = await task
    assert outcome.app_id == 3000000001
    assert request["kind"] == "create"
    assert request["accountId"] == 52079950
    assert {key: request[key] for key in ("name", "exe", "startDir", "launchOptions", "tags")} == {
        "name": "Hollow Knight",
        "exe": "/home/deck/Games/Hollow Knight/hollow_knight.exe",
        "startDir": "/home/deck/Games/Hollow Knight",
        "launchOptions": "-windowed",
        "tags": ["Metroidvania"],
    }
    # Answered: nothing is left in the queue.
    assert await backend.pending_requests() == []


async def test_the_request_is_on_disk_before_it_is_announced(tmp_path: Path, user: SteamUserDir) -> None:
    seen_on_disk: list[list[str]] = []

    async def listener(request: dict[str, Any]) -> None:
        stored = json.loads((tmp_path / "queue/shortcut-requests.json").read_text())
        seen_on_disk.append([entry["id"] for entry in stored["requests"]])
        await backend.complete_request(request["id"], {"ok": True, "appId": 7})

    backend = SteamClientShortcutBackend(tmp_path / "queue", listener)
    await backend.rename(user, 7, "New name")
    assert len(seen_on_disk) == 1
    assert len(seen_on_disk[0]) == 1


async def test_requests_survive_a_restart(tmp_path: Path, panel: Panel, user: SteamUserDir) -> None:
    first = SteamClientShortcutBackend(tmp_path / "queue", panel)
    task = asyncio.create_task(first.delete(user, 3000000001))
    announced = await panel.heard.get()
    task.cancel()  # the Agent goes away before the panel answers
    with pytest.raises(asyncio.CancelledError):
        await task
    again = SteamClientShortcutBackend(tmp_path / "queue")
    pending = await again.pending_requests()
    assert [(request["id"], request["kind"], request["appId"]) for request in pending] == [
        (announced["id"], "remove", 3000000001)
    ]
    assert await again.complete_request(announced["id"], {"ok": True, "appId": 3000000001}) is True
    assert await again.pending_requests() == []
    assert await again.complete_request(announced["id"], {"ok": True}) is False


async def test_an_unanswered_request_times_out_and_leaves_the_queue(
    tmp_path: Path, user: SteamUserDir
) -> None:
    heard: list[dict[str, Any]] = []
    backend = SteamClientShortcutBackend(tmp_path / "queue", heard.append, timeout=0.05)
    with pytest.raises(ProtocolError) as caught:
        await backend.create(user, GAME, {})
    assert caught.value.code == ErrorCode.INTERNAL
    assert "did not answer the create request within 0.05 s" in caught.value.message
    assert len(heard) == 1
    assert await backend.pending_requests() == []
    # A late answer finds nothing to complete.
    assert await backend.complete_request(heard[0]["id"], {"ok": True, "appId": 5}) is False


async def test_failures_carry_the_panels_reason(
    backend: SteamClientShortcutBackend, panel: Panel, user: SteamUserDir
) -> None:
    task = asyncio.create_task(backend.create(user, GAME, {}))
    await panel.answer_next({"ok": False, "error": "Steam did not create the shortcut"})
    with pytest.raises(ProtocolError) as caught:
        await task
    assert caught.value.code == ErrorCode.INTERNAL
    assert "Steam did not create the shortcut" in caught.value.message

    task = asyncio.create_task(backend.delete(user, 99))
    await panel.answer_next({"ok": False, "error": "unknown app", "code": 404})
    with pytest.raises(ProtocolError) as caught:
        await task
    assert caught.value.code == ErrorCode.NOT_FOUND

    task = asyncio.create_task(backend.rename(user, 99, "x"))
    await panel.answer_next(None)  # a panel that does not know the request kind
    with pytest.raises(ProtocolError, match="no result"):
        await task


async def test_an_invalid_app_id_is_refused(
    backend: SteamClientShortcutBackend, panel: Panel, user: SteamUserDir
) -> None:
    task = asyncio.create_task(backend.create(user, GAME, {}))
    await panel.answer_next({"ok": True, "appId": "3000000001"})
    with pytest.raises(ProtocolError, match="invalid appId"):
        await task


async def test_artwork_goes_to_the_panel_as_base64(
    backend: SteamClientShortcutBackend, panel: Panel, user: SteamUserDir
) -> None:
    task = asyncio.create_task(
        backend.apply_artwork(
            user,
            3000000001,
            {ArtworkKey.GRID: PNG, ArtworkKey.HERO: JPEG, ArtworkKey.LOGO: b"<html>", ArtworkKey.ICON: PNG},
        )
    )
    grid = await panel.answer_next({"ok": True, "appId": 3000000001})
    hero = await panel.answer_next({"ok": False, "error": "Steam refused the artwork for asset types 1"})
    icon = await panel.answer_next({"ok": True, "appId": 3000000001})
    results = await task
    assert grid["kind"] == "artwork"
    assert grid["artwork"] == [{"assetType": 0, "format": "png", "data": base64.b64encode(PNG).decode()}]
    assert hero["artwork"][0]["assetType"] == 1
    assert hero["artwork"][0]["format"] == "jpg"
    # The icon has no asset type: its file goes to grid/, the panel sets the shortcut's icon.
    assert icon["kind"] == "icon"
    assert icon["path"] == str(user.grid_dir.absolute() / "3000000001_icon.png")
    assert Path(icon["path"]).read_bytes() == PNG
    assert results[ArtworkKey.GRID] is None
    assert "asset types 1" in str(results[ArtworkKey.HERO])
    assert results[ArtworkKey.LOGO] == "not a PNG, JPEG or WebP image"
    assert results[ArtworkKey.ICON] is None


async def test_pending_artwork_keeps_its_bytes(tmp_path: Path, panel: Panel, user: SteamUserDir) -> None:
    first = SteamClientShortcutBackend(tmp_path / "queue", panel)
    task = asyncio.create_task(first.apply_artwork(user, 42, {ArtworkKey.BANNER: JPEG}))
    await panel.heard.get()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pending = await SteamClientShortcutBackend(tmp_path / "queue").pending_requests()
    assert pending[0]["artwork"] == [
        {"assetType": 3, "format": "jpg", "data": base64.b64encode(JPEG).decode()}
    ]
    # The queue file itself stays small: the bytes live beside it.
    assert "data" not in (tmp_path / "queue/shortcut-requests.json").read_text()


async def test_create_then_artwork_per_key(
    backend: SteamClientShortcutBackend, panel: Panel, user: SteamUserDir
) -> None:
    task = asyncio.create_task(backend.create(user, GAME, {ArtworkKey.HERO: PNG}))
    await panel.answer_next({"ok": True, "appId": 3000000002})
    artwork = await panel.answer_next({"ok": True, "appId": 3000000002})
    outcome = await task
    assert artwork["appId"] == 3000000002
    assert outcome.artwork == {ArtworkKey.HERO: None}


async def test_a_failing_listener_loses_nothing(tmp_path: Path, user: SteamUserDir) -> None:
    def broken(_: dict[str, Any]) -> None:
        raise RuntimeError("the panel is not connected")

    backend = SteamClientShortcutBackend(tmp_path / "queue", broken)
    task = asyncio.create_task(backend.delete(user, 5))
    while not (pending := await backend.pending_requests()):
        await asyncio.sleep(0.01)
    assert await backend.complete_request(pending[0]["id"], {"ok": True, "appId": 5}) is True
    await task


async def test_delete_many_skips_unknown_ids(
    backend: SteamClientShortcutBackend, panel: Panel, user: SteamUserDir
) -> None:
    task = asyncio.create_task(backend.delete_many(user, [1, 2, 1]))
    await panel.answer_next({"ok": False, "error": "unknown", "code": 404})
    await panel.answer_next({"ok": True, "appId": 2})
    assert await task == [2]


async def test_old_requests_are_dropped(tmp_path: Path, user: SteamUserDir) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    (queue / "shortcut-requests.json").write_text(
        json.dumps(
            {
                "requests": [
                    {"id": "old", "kind": "remove", "appId": 1, "createdAt": 0},
                    {"id": "junk"},
                    "not a request",
                ]
            }
        )
    )
    backend = SteamClientShortcutBackend(queue)
    assert [request["id"] for request in await backend.pending_requests()] == ["junk"]
