"""The shortcuts.vdf backend: writes only while Steam is stopped, restarts it only when allowed."""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import vdf

from capydeploy.agent.shortcuts import FileShortcutBackend
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from capydeploy.protocol.messages import ArtworkKey
from capydeploy.steam.process import RestartLimiter, SteamProcess
from capydeploy.steam.shortcuts_file import NewShortcut, ShortcutsFile
from capydeploy.steam.users import SteamUserDir

UID = os.getuid()
STEAM_PID = 4242
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
GAME = NewShortcut(
    name="Celeste", exe="/home/deck/Games/Celeste/Celeste.exe", start_dir="/home/deck/Games/Celeste"
)
CELESTE_ID = 3672303389


class RecordingSteamProcess(SteamProcess):
    """Remembers the detached starts, so a test can wait for the fake script to finish."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.launched: list[int] = []

    async def start(self) -> int:
        pid = await super().start()
        self.launched.append(pid)
        return pid

    async def settle(self) -> None:
        for pid in self.launched:
            status = Path(f"/proc/{pid}/status")
            while status.exists() and "State:\tZ" not in status.read_text():
                await asyncio.sleep(0.01)


class FakeSteam:
    """A fake /proc holding (or not) a running Steam, and a `steam` script that logs its commands."""

    def __init__(self, folder: Path) -> None:
        self.proc = folder / "proc"
        self.proc.mkdir()
        self.log = folder / "steam.log"
        self.script = folder / "steam"
        pid_dir = shlex.quote(str(self.proc / str(STEAM_PID)))
        self.script.write_text(
            "#!/bin/sh\n"
            f'echo "steam $*" >> {shlex.quote(str(self.log))}\n'
            f'if [ "$1" = "-shutdown" ]; then rm -rf {pid_dir}; fi\n'
        )
        self.script.chmod(0o755)

    def run(self) -> None:
        folder = self.proc / str(STEAM_PID)
        folder.mkdir()
        (folder / "status").write_text(f"Name:\tsteam\nState:\tS\nUid:\t{UID}\t{UID}\t{UID}\t{UID}\n")

    def commands(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def process(self, limiter: RestartLimiter | None = None) -> RecordingSteamProcess:
        return RecordingSteamProcess(
            steam_command=[str(self.script)],
            proc_root=self.proc,
            uid=UID,
            session="desktop",
            poll_interval=0.01,
            limiter=limiter,
        )


@pytest.fixture
def steam(tmp_path: Path) -> FakeSteam:
    return FakeSteam(tmp_path)


@pytest.fixture
def user(tmp_path: Path) -> SteamUserDir:
    root = tmp_path / "Steam"
    (root / "userdata/52079950/config").mkdir(parents=True)
    return SteamUserDir(root=root, account_id=52079950)


def stored(user: SteamUserDir) -> dict[str, dict[str, object]]:
    return vdf.binary_loads(user.shortcuts_path.read_bytes())["shortcuts"]


async def test_create_while_steam_is_stopped(steam: FakeSteam, user: SteamUserDir) -> None:
    backend = FileShortcutBackend(steam.process())
    outcome = await backend.create(user, GAME, {})
    assert outcome.app_id == CELESTE_ID
    assert stored(user)["0"]["AppName"] == "Celeste"
    assert [shortcut.app_id for shortcut in await backend.list_shortcuts(user)] == [CELESTE_ID]
    assert steam.commands() == []


async def test_steam_running_means_409_and_nothing_written(steam: FakeSteam, user: SteamUserDir) -> None:
    steam.run()
    backend = FileShortcutBackend(steam.process())
    with pytest.raises(ProtocolError) as caught:
        await backend.create(user, GAME, {})
    assert caught.value.code == ErrorCode.CONFLICT
    assert caught.value.message.startswith("Steam is running")
    assert "restartSteam" in caught.value.message
    assert not user.shortcuts_path.exists()
    assert steam.commands() == []


async def test_restart_allowed_stops_writes_and_starts(steam: FakeSteam, user: SteamUserDir) -> None:
    steam.run()
    process = steam.process()
    backend = FileShortcutBackend(process)
    outcome = await backend.create(
        user, GAME, {ArtworkKey.GRID: PNG, ArtworkKey.ICON: JPEG}, restart_steam=True
    )
    await process.settle()
    assert steam.commands() == ["steam -shutdown", "steam "]
    entry = stored(user)["0"]
    # Entry, images and the icon field, all in the one Steam stop.
    assert entry["icon"] == str(user.grid_dir / f"{outcome.app_id}_icon.jpg")
    assert outcome.artwork == {ArtworkKey.GRID: None, ArtworkKey.ICON: None}
    assert (user.grid_dir / f"{outcome.app_id}p.png").read_bytes() == PNG


async def test_the_restart_limit_is_a_409_with_its_reason(steam: FakeSteam, user: SteamUserDir) -> None:
    steam.run()
    limiter = RestartLimiter(clock=lambda: 100.0)
    limiter.record()
    limiter.record()
    backend = FileShortcutBackend(steam.process(limiter))
    with pytest.raises(ProtocolError) as caught:
        await backend.create(user, GAME, {}, restart_steam=True)
    assert caught.value.code == ErrorCode.CONFLICT
    assert "crash loop" in caught.value.message
    assert steam.commands() == []


async def test_a_corrupt_file_costs_no_restart(steam: FakeSteam, user: SteamUserDir) -> None:
    steam.run()
    corrupt = b"\x00shortcuts\x00\x00" + b"0\x00\x01AppName\x00Caf\xe9\x00\x08\x08\x08"
    user.shortcuts_path.write_bytes(corrupt)
    backend = FileShortcutBackend(steam.process())
    with pytest.raises(ProtocolError) as caught:
        await backend.create(user, GAME, {}, restart_steam=True)
    assert caught.value.code == ErrorCode.INTERNAL
    assert "left untouched" in caught.value.message
    assert user.shortcuts_path.read_bytes() == corrupt
    assert steam.commands() == []
    with pytest.raises(ProtocolError):
        await backend.list_shortcuts(user)


async def test_a_bad_value_is_a_400_before_steam_is_touched(steam: FakeSteam, user: SteamUserDir) -> None:
    steam.run()
    backend = FileShortcutBackend(steam.process())
    bad = NewShortcut(name="x", exe='/games/"x"', start_dir="/games")
    with pytest.raises(ProtocolError) as caught:
        await backend.create(user, bad, {}, restart_steam=True)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert steam.commands() == []


async def test_redeploy_keeps_one_entry(steam: FakeSteam, user: SteamUserDir) -> None:
    backend = FileShortcutBackend(steam.process())
    first = await backend.create(user, GAME, {})
    again = await backend.create(
        user, NewShortcut(name=GAME.name, exe=GAME.exe, start_dir=GAME.start_dir, launch_options="-v"), {}
    )
    assert again.app_id == first.app_id
    assert len(stored(user)) == 1
    assert stored(user)["0"]["LaunchOptions"] == "-v"


async def test_delete_and_rename(steam: FakeSteam, user: SteamUserDir) -> None:
    backend = FileShortcutBackend(steam.process())
    await backend.create(user, GAME, {})
    other = await backend.create(user, NewShortcut(name="Other", exe="/g/other", start_dir="/g"), {})
    await backend.rename(user, other.app_id, "Renamed")
    await backend.delete(user, CELESTE_ID)
    assert [(s.app_id, s.name) for s in await backend.list_shortcuts(user)] == [(other.app_id, "Renamed")]
    assert list(stored(user)) == ["0"]
    with pytest.raises(ProtocolError) as caught:
        await backend.delete(user, CELESTE_ID)
    assert caught.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(ProtocolError):
        await backend.rename(user, 12345, "nope")


async def test_delete_unknown_with_steam_running_does_not_restart(
    steam: FakeSteam, user: SteamUserDir
) -> None:
    steam.run()
    backend = FileShortcutBackend(steam.process())
    with pytest.raises(ProtocolError) as caught:
        await backend.delete(user, 12345, restart_steam=True)
    assert caught.value.code == ErrorCode.NOT_FOUND
    assert steam.commands() == []


async def test_delete_many_in_one_write(steam: FakeSteam, user: SteamUserDir) -> None:
    backend = FileShortcutBackend(steam.process())
    ids = [
        (await backend.create(user, NewShortcut(name=n, exe=f"/g/{n}", start_dir="/g"), {})).app_id
        for n in "abc"
    ]
    assert await backend.delete_many(user, [ids[0], 99, ids[2]]) == [ids[0], ids[2]]
    assert [s.app_id for s in await backend.list_shortcuts(user)] == [ids[1]]
    assert await backend.delete_many(user, [99]) == []


async def test_artwork_while_steam_runs(steam: FakeSteam, user: SteamUserDir) -> None:
    backend = FileShortcutBackend(steam.process())
    await backend.create(user, GAME, {})
    steam.run()
    results = await backend.apply_artwork(
        user, CELESTE_ID, {ArtworkKey.HERO: JPEG, ArtworkKey.LOGO: b"<html>", ArtworkKey.ICON: PNG}
    )
    # grid/ files are fine while Steam runs; the icon field is not.
    assert results[ArtworkKey.HERO] is None
    assert results[ArtworkKey.LOGO] == "not a PNG, JPEG or WebP image"
    assert results[ArtworkKey.ICON] is not None
    assert results[ArtworkKey.ICON].startswith("Steam is running")
    assert (user.grid_dir / f"{CELESTE_ID}_hero.jpg").exists()
    assert stored(user)["0"]["icon"] == ""
    assert steam.commands() == []


async def test_icon_while_steam_is_stopped(steam: FakeSteam, user: SteamUserDir) -> None:
    backend = FileShortcutBackend(steam.process())
    await backend.create(user, GAME, {})
    results = await backend.apply_artwork(user, CELESTE_ID, {ArtworkKey.ICON: PNG})
    assert results == {ArtworkKey.ICON: None}
    assert stored(user)["0"]["icon"] == str(user.grid_dir / f"{CELESTE_ID}_icon.png")
    missing = await backend.apply_artwork(user, 12345, {ArtworkKey.ICON: PNG})
    assert "no shortcut" in str(missing[ArtworkKey.ICON])


async def test_artwork_with_restart(steam: FakeSteam, user: SteamUserDir) -> None:
    process = steam.process()
    backend = FileShortcutBackend(process)
    await backend.create(user, GAME, {})
    steam.run()
    results = await backend.apply_artwork(
        user, CELESTE_ID, {ArtworkKey.GRID: PNG, ArtworkKey.ICON: PNG}, restart_steam=True
    )
    await process.settle()
    assert results == {ArtworkKey.GRID: None, ArtworkKey.ICON: None}
    assert steam.commands() == ["steam -shutdown", "steam "]
    assert ShortcutsFile.load(user.shortcuts_path).shortcuts()[0].icon.endswith(f"{CELESTE_ID}_icon.png")


async def test_artwork_when_steam_may_not_be_restarted(steam: FakeSteam, user: SteamUserDir) -> None:
    backend_process = steam.process(RestartLimiter(clock=lambda: 1.0))
    backend = FileShortcutBackend(backend_process)
    await backend.create(user, GAME, {})
    steam.run()
    backend_process.limiter.record()
    backend_process.limiter.record()
    results = await backend.apply_artwork(
        user, CELESTE_ID, {ArtworkKey.GRID: PNG, ArtworkKey.ICON: PNG}, restart_steam=True
    )
    # The refusal costs only the icon field; the grid image needs no restart.
    assert results[ArtworkKey.GRID] is None
    assert "crash loop" in str(results[ArtworkKey.ICON])
    assert (user.grid_dir / f"{CELESTE_ID}p.png").exists()
    assert steam.commands() == []
