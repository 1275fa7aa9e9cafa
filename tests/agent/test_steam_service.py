"""SteamService: the protocol's Steam requests end to end over a fake home, Steam and image server."""

from __future__ import annotations

import os
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import vdf
from aiohttp import web

from capydeploy.agent.shortcuts import FileShortcutBackend
from capydeploy.agent.steam_service import SteamService, exe_inside
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from capydeploy.protocol.messages import (
    ApplyArtwork,
    Artwork,
    CreateShortcut,
    DeleteShortcut,
    ListShortcuts,
)
from capydeploy.steam.download import ArtworkDownloader, allow_endpoints
from capydeploy.steam.process import RestartLimiter, SteamProcess

UID = os.getuid()
STEAMID = 76561198012345678
ACCOUNT = 52079950
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


class ImageHost:
    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def images() -> AsyncIterator[ImageHost]:
    async def png(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def jpeg(_: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/grid.png", png)
    app.router.add_get("/hero.jpg", jpeg)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield ImageHost(port)
    finally:
        await runner.cleanup()


class Device:
    """A home with a Steam root, a fake /proc and a logging `steam` script."""

    def __init__(self, base: Path) -> None:
        self.home = base / "home"
        self.root = self.home / ".local/share/Steam"
        self.proc = base / "proc"
        self.proc.mkdir()
        self.log = base / "steam.log"
        self.script = base / "steam"
        pid_dir = shlex.quote(str(self.proc / "4242"))
        self.script.write_text(
            "#!/bin/sh\n"
            f'echo "steam $*" >> {shlex.quote(str(self.log))}\n'
            f'if [ "$1" = "-shutdown" ]; then rm -rf {pid_dir}; fi\n'
        )
        self.script.chmod(0o755)

    def add_user(self, account_id: int) -> None:
        (self.root / "userdata" / str(account_id) / "config").mkdir(parents=True)

    def logins(self, users: dict[int, dict[str, str]]) -> None:
        (self.root / "config").mkdir(parents=True, exist_ok=True)
        document = {"users": {str(account + 76561197960265728): entry for account, entry in users.items()}}
        (self.root / "config/loginusers.vdf").write_text(vdf.dumps(document, pretty=True))

    def run_steam(self) -> None:
        (self.proc / "4242").mkdir()
        (self.proc / "4242/status").write_text(f"Name:\tsteam\nState:\tS\nUid:\t{UID}\t{UID}\t{UID}\t{UID}\n")

    def commands(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def shortcuts(self, account_id: int = ACCOUNT) -> dict[str, dict[str, Any]]:
        path = self.root / "userdata" / str(account_id) / "config/shortcuts.vdf"
        return vdf.binary_loads(path.read_bytes())["shortcuts"]

    def grid(self, account_id: int = ACCOUNT) -> Path:
        return self.root / "userdata" / str(account_id) / "config/grid"


@pytest.fixture
def device(tmp_path: Path) -> Device:
    device = Device(tmp_path)
    device.add_user(ACCOUNT)
    device.add_user(7)
    device.logins({ACCOUNT: {"PersonaName": "Gamer", "MostRecent": "1"}})
    return device


@pytest.fixture
def service(device: Device, images: ImageHost) -> SteamService:
    return make_service(device, images)


def make_service(device: Device, images: ImageHost, limiter: RestartLimiter | None = None) -> SteamService:
    process = SteamProcess(
        steam_command=[str(device.script)],
        proc_root=device.proc,
        uid=UID,
        session="gamemode",  # the session relaunches Steam: no detached start to wait for
        poll_interval=0.01,
        limiter=limiter,
    )
    downloader = ArtworkDownloader(address_allowed=allow_endpoints([("127.0.0.1", images.port)]))
    return SteamService(
        home=device.home, backend=FileShortcutBackend(process), process=process, downloader=downloader
    )


def create_request(user_id: object = ACCOUNT, **shortcut: Any) -> CreateShortcut:
    spec = {"name": "Celeste", "exe": "/home/deck/Games/Celeste/Celeste.exe", **shortcut}
    return CreateShortcut.model_validate({"userId": user_id, "shortcut": spec})


# --- users ---------------------------------------------------------------------------------------


async def test_steam_users(service: SteamService) -> None:
    response = await service.get_steam_users()
    assert response.to_wire() == {
        "users": [
            {"id": str(76561197960265728 + 7), "name": "7", "accountId": 7},
            {"id": str(STEAMID), "name": "Gamer", "accountId": ACCOUNT},
        ]
    }


@pytest.mark.parametrize("user_id", [ACCOUNT, str(ACCOUNT), STEAMID, str(STEAMID)])
async def test_every_user_id_form(service: SteamService, device: Device, user_id: int | str) -> None:
    await service.create_shortcut(create_request(user_id))
    listed = await service.list_shortcuts(ListShortcuts.model_validate({"userId": user_id}))
    assert [shortcut.name for shortcut in listed.shortcuts] == ["Celeste"]
    assert len(device.shortcuts()) == 1


@pytest.mark.parametrize("user_id", [12345, "12345", 76561197960265729, "76561197960265729"])
async def test_unknown_users_are_404(service: SteamService, user_id: int | str) -> None:
    with pytest.raises(ProtocolError) as caught:
        await service.list_shortcuts(ListShortcuts.model_validate({"userId": user_id}))
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_a_user_id_no_model_checked_is_still_a_400(service: SteamService) -> None:
    # resolve_user is also called with ids that never went through the message models.
    for bad in ("abc", "-5", "0", True, 2**33):
        with pytest.raises(ProtocolError) as caught:
            await service.resolve_user(bad)
        assert caught.value.code == ErrorCode.BAD_REQUEST
        assert caught.value.message.startswith("userId ")
    assert (await service.resolve_user(str(STEAMID))).account_id == ACCOUNT


async def test_without_user_id_the_most_recent_user(service: SteamService, device: Device) -> None:
    app_id = await service.create_for_install(
        game_name="Celeste", exe_path=Path("/g/Celeste/run"), start_dir=Path("/g/Celeste")
    )
    assert device.shortcuts(ACCOUNT)["0"]["appid"] & 0xFFFFFFFF == app_id


async def test_without_user_id_and_no_most_recent_user(device: Device, images: ImageHost) -> None:
    device.logins({ACCOUNT: {"PersonaName": "Gamer"}})
    service = make_service(device, images)
    with pytest.raises(ProtocolError) as caught:
        await service.resolve_user(None)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert "give userId" in caught.value.message


async def test_without_user_id_the_only_user(tmp_path: Path, images: ImageHost) -> None:
    device = Device(tmp_path)
    service = make_service(device, images)
    with pytest.raises(ProtocolError) as caught:
        await service.resolve_user(None)
    assert caught.value.code == ErrorCode.NOT_FOUND
    device.add_user(7)  # no loginusers.vdf at all
    assert (await service.resolve_user(None)).account_id == 7


# --- shortcuts -----------------------------------------------------------------------------------


async def test_create_and_list(service: SteamService, device: Device) -> None:
    result = await service.create_shortcut(
        create_request(
            startDir="/home/deck/Games/Celeste", launchOptions="-fast", tags=["Indie", "Platformer"]
        )
    )
    assert result.to_wire() == {"success": True, "appId": 3672303389}
    stored = device.shortcuts()["0"]
    assert stored["Exe"] == '"/home/deck/Games/Celeste/Celeste.exe"'
    listed = await service.list_shortcuts(ListShortcuts.model_validate({"userId": str(STEAMID)}))
    assert listed.to_wire() == {
        "shortcuts": [
            {
                "appId": 3672303389,
                "name": "Celeste",
                "exe": "/home/deck/Games/Celeste/Celeste.exe",
                "startDir": "/home/deck/Games/Celeste",
                "launchOptions": "-fast",
                "tags": ["Indie", "Platformer"],
            }
        ]
    }


async def test_start_dir_defaults_to_the_exe_folder(service: SteamService, device: Device) -> None:
    await service.create_shortcut(create_request())
    assert device.shortcuts()["0"]["StartDir"] == '"/home/deck/Games/Celeste"'


async def test_create_with_artwork_reports_what_failed(
    service: SteamService, device: Device, images: ImageHost
) -> None:
    artwork = {
        "grid": images.url("/grid.png"),
        "hero": images.url("/missing.jpg"),
        "icon": images.url("/grid.png"),
    }
    result = await service.create_shortcut(create_request(artwork=artwork))
    assert result.success is True
    assert result.app_id == 3672303389
    assert result.message == "artwork not applied: hero: HTTP 404"
    assert (device.grid() / "3672303389p.png").read_bytes() == PNG
    assert device.shortcuts()["0"]["icon"] == str(device.grid() / "3672303389_icon.png")


async def test_steam_running_is_a_409_unless_restart_is_allowed(
    service: SteamService, device: Device
) -> None:
    device.run_steam()
    with pytest.raises(ProtocolError) as caught:
        await service.create_shortcut(create_request())
    assert caught.value.code == ErrorCode.CONFLICT
    assert device.commands() == []
    request = create_request()
    request.restart_steam = True
    result = await service.create_shortcut(request)
    assert result.app_id == 3672303389
    # Game Mode: the session starts Steam again, so only the shutdown is ours.
    assert device.commands() == ["steam -shutdown"]


async def test_apply_artwork_per_key(service: SteamService, device: Device, images: ImageHost) -> None:
    await service.create_shortcut(create_request())
    request = ApplyArtwork.model_validate(
        {
            "userId": STEAMID,
            "appId": 3672303389,
            "artwork": {
                "grid": images.url("/grid.png"),
                "hero": images.url("/hero.jpg"),
                "logo": images.url("/nothing.png"),
                "banner": "http://169.254.169.254/latest",
            },
        }
    )
    response = await service.apply_artwork(request)
    wire = response.to_wire()
    assert wire["applied"] == ["grid", "hero"]
    failed = {item.type: item.error for item in response.failed}
    assert failed["logo"] == "HTTP 404"
    assert "refused" in failed["banner"]
    assert (device.grid() / "3672303389_hero.jpg").read_bytes() == JPEG


async def test_delete_removes_the_shortcut_and_its_artwork(
    service: SteamService, device: Device, images: ImageHost
) -> None:
    await service.create_shortcut(
        create_request(artwork={"grid": images.url("/grid.png"), "logo": images.url("/grid.png")})
    )
    other = await service.create_shortcut(
        create_request(name="Other", exe="/g/other", artwork={"grid": images.url("/grid.png")})
    )
    assert sorted(path.name for path in device.grid().iterdir()) == sorted(
        ["3672303389p.png", "3672303389_logo.png", "3672303389.json", f"{other.app_id}p.png"]
    )
    result = await service.delete_shortcut(
        DeleteShortcut.model_validate({"userId": ACCOUNT, "appId": 3672303389})
    )
    assert result.to_wire() == {"success": True}
    assert [entry["AppName"] for entry in device.shortcuts().values()] == ["Other"]
    assert [path.name for path in device.grid().iterdir()] == [f"{other.app_id}p.png"]
    with pytest.raises(ProtocolError) as caught:
        await service.delete_shortcut(DeleteShortcut.model_validate({"userId": ACCOUNT, "appId": 3672303389}))
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_restart_steam_and_its_limit(device: Device, images: ImageHost) -> None:
    limiter = RestartLimiter(clock=lambda: 50.0)
    service = make_service(device, images, limiter)
    for _ in range(2):
        device.run_steam()
        response = await service.restart_steam()
        assert response.success is True
    device.run_steam()
    refused = await service.restart_steam()
    assert refused.success is False
    assert "crash loop" in refused.message
    assert device.commands() == ["steam -shutdown", "steam -shutdown"]


async def test_create_for_install_and_delete_for_game(
    service: SteamService, device: Device, images: ImageHost
) -> None:
    game = Path("/home/deck/Games/Celeste")
    app_id = await service.create_for_install(
        game_name="Celeste",
        exe_path=game / "bin/Celeste.x86_64",
        start_dir=game / "bin",
        user_id=str(STEAMID),
        launch_options="-v",
        tags=["Indie"],
        artwork=Artwork(grid=images.url("/grid.png")),
    )
    second = await service.create_for_install(
        game_name="Celeste", exe_path=game / "Celeste.sh", start_dir=game, user_id=7, name="Celeste (script)"
    )
    outside = await service.create_for_install(
        game_name="Celeste 2",
        exe_path=Path("/home/deck/Games/Celeste 2/run"),
        start_dir=Path("/"),
        user_id=ACCOUNT,
    )
    entry = device.shortcuts()["0"]
    assert (entry["AppName"], entry["Exe"], entry["LaunchOptions"]) == (
        "Celeste",
        f'"{game}/bin/Celeste.x86_64"',
        "-v",
    )
    found = await service.find_for_game(game)
    assert sorted((user.account_id, shortcut.app_id) for user, shortcut in found) == sorted(
        [(ACCOUNT, app_id), (7, second)]
    )
    removed = await service.delete_for_game(game)
    assert sorted(removed) == sorted([app_id, second])
    assert [entry["appid"] & 0xFFFFFFFF for entry in device.shortcuts().values()] == [outside]
    assert device.shortcuts(7) == {}
    assert not (device.grid() / f"{app_id}p.png").exists()
    # Recorded ids that no longer exist are fine.
    assert await service.delete_for_game(game, app_ids=[app_id]) == []


@pytest.mark.parametrize(
    ("exe", "folder", "inside"),
    [
        ("/home/deck/Games/A/run", "/home/deck/Games/A", True),
        ("/home/deck/Games/A/bin/run", "/home/deck/Games/A/", True),
        ("/home/deck/Games/AB/run", "/home/deck/Games/A", False),
        ("/home/deck/Games/A", "/home/deck/Games/A", False),
        ("/home/deck/Games/A/../B/run", "/home/deck/Games/A", False),
        ("relative/run", "/home/deck/Games/A", False),
    ],
)
def test_exe_inside(exe: str, folder: str, inside: bool) -> None:
    assert exe_inside(exe, Path(folder)) is inside
