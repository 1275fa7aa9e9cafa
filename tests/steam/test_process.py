"""Steam's process: running check on a fake /proc, a fake `steam` script, Game Mode, the restart limiter."""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from capydeploy.steam.process import (
    RestartLimiter,
    RestartRefused,
    SteamProcess,
    SteamProcessError,
    default_pid_files,
)

UID = os.getuid()
STEAM_PID = 4242


class FakeProc:
    """A /proc tree with only the processes a test puts in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)

    def add(
        self,
        pid: int,
        name: str,
        *,
        uid: int = UID,
        state: str = "S (sleeping)",
        cmdline: tuple[str, ...] = (),
    ) -> None:
        folder = self.root / str(pid)
        folder.mkdir()
        (folder / "status").write_text(f"Name:\t{name}\nState:\t{state}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
        (folder / "cmdline").write_bytes(b"".join(part.encode() + b"\x00" for part in cmdline))


def write_fake_steam(folder: Path, proc_root: Path) -> tuple[Path, Path]:
    """A `steam` that logs its arguments; `-shutdown` ends the fake Steam, no argument starts it."""
    log = folder / "steam.log"
    script = folder / "steam"
    pid_dir = shlex.quote(str(proc_root / str(STEAM_PID)))
    script.write_text(
        "#!/bin/sh\n"
        f'echo "steam $*" >> {shlex.quote(str(log))}\n'
        'case "$1" in\n'
        f"  -shutdown) rm -rf {pid_dir} ;;\n"
        f"  '') mkdir -p {pid_dir} && printf 'Name:\\tsteam\\nState:\\tS\\nUid:\\t{UID}\\t{UID}\\t{UID}\\t{UID}\\n'"
        f" > {pid_dir}/status ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return script, log


async def wait_for_exit(pid: int) -> None:
    """Until a process we launched detached has finished (it is the fast fake script)."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except FileNotFoundError:
            return
        if "State:\tZ" in text:
            return
        await asyncio.sleep(0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


@pytest.fixture
def fake_steam(tmp_path: Path, proc: FakeProc) -> tuple[Path, Path]:
    return write_fake_steam(tmp_path, proc.root)


def make_process(proc: FakeProc, script: Path, **options: Any) -> SteamProcess:
    options.setdefault("session", "desktop")
    return SteamProcess(
        steam_command=[str(script)],
        proc_root=proc.root,
        uid=UID,
        poll_interval=0.01,
        **options,
    )


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# --- the limiter ---------------------------------------------------------------------------------


def test_limiter_refuses_a_third_exit_within_the_window() -> None:
    clock = Clock()
    limiter = RestartLimiter(max_exits=2, window=60, clock=clock)
    assert limiter.refusal() is None
    limiter.record()
    clock.now += 10
    assert limiter.refusal() is None
    limiter.record()
    clock.now += 10
    reason = limiter.refusal()
    assert reason is not None
    assert "crash loop" in reason
    assert "Try again in 40 s" in reason
    clock.now += 40
    assert limiter.refusal() is None


# --- observing -----------------------------------------------------------------------------------


async def test_running_when_a_steam_process_of_the_user_exists(
    proc: FakeProc, fake_steam: tuple[Path, Path]
) -> None:
    steam = make_process(proc, fake_steam[0])
    assert await steam.is_running() is False
    proc.add(100, "bash")
    proc.add(101, "steam", uid=UID + 1)  # another user's Steam
    proc.add(102, "steamwebhelper", state="Z (zombie)")
    assert await steam.is_running() is False
    proc.add(103, "steamwebhelper")
    assert await steam.is_running() is True


async def test_running_from_a_pid_file(tmp_path: Path, proc: FakeProc, fake_steam: tuple[Path, Path]) -> None:
    pid_file = tmp_path / "home/.steam/steam.pid"
    pid_file.parent.mkdir(parents=True)
    steam = make_process(proc, fake_steam[0], pid_files=[pid_file])
    pid_file.write_text("555\n")
    assert await steam.is_running() is False  # stale: Steam leaves the file behind
    proc.add(555, "steam.sh")
    assert await steam.is_running() is True
    pid_file.write_text("garbage")
    assert await steam.is_running() is False


def test_default_pid_files(tmp_path: Path) -> None:
    root = tmp_path / ".local/share/Steam"
    assert default_pid_files(tmp_path, [root]) == [tmp_path / ".steam/steam.pid", root / "steam.pid"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("nothing", False),
        ("gamescope", True),
        ("gamepadui", True),
        ("env", True),
    ],
)
async def test_game_mode_detection(
    proc: FakeProc, fake_steam: tuple[Path, Path], setup: str, expected: bool
) -> None:
    env = {"PATH": os.environ.get("PATH", "")}
    if setup == "gamescope":
        proc.add(10, "gamescope-wl")
    elif setup == "gamepadui":
        proc.add(
            11,
            "steam",
            cmdline=("/home/deck/.local/share/Steam/ubuntu12_32/steam", "-gamepadui", "-steamos3"),
        )
    elif setup == "env":
        env["SteamGamepadUI"] = "1"
    else:
        proc.add(12, "steam", cmdline=("steam", "-silent"))
    steam = make_process(proc, fake_steam[0], session="auto", env=env)
    assert await steam.is_game_mode() is expected


async def test_the_session_setting_wins(proc: FakeProc, fake_steam: tuple[Path, Path]) -> None:
    proc.add(10, "gamescope")
    assert await make_process(proc, fake_steam[0], session="desktop").is_game_mode() is False
    assert await make_process(proc, fake_steam[0], session="gamemode").is_game_mode() is True


# --- acting --------------------------------------------------------------------------------------


async def test_shutdown_asks_steam_and_waits(proc: FakeProc, fake_steam: tuple[Path, Path]) -> None:
    script, log = fake_steam
    proc.add(STEAM_PID, "steam")
    steam = make_process(proc, script)
    await steam.shutdown()
    assert await steam.is_running() is False
    assert log_lines(log) == ["steam -shutdown"]


async def test_shutdown_of_a_stopped_steam_does_nothing(
    proc: FakeProc, fake_steam: tuple[Path, Path]
) -> None:
    script, log = fake_steam
    await make_process(proc, script).shutdown()
    assert log_lines(log) == []


async def test_shutdown_gives_up_without_killing(proc: FakeProc, fake_steam: tuple[Path, Path]) -> None:
    script, log = fake_steam
    proc.add(7777, "steam")  # not the pid the fake script ends: this Steam never exits
    steam = make_process(proc, script, shutdown_timeout=0.1)
    with pytest.raises(SteamProcessError, match="did not exit"):
        await steam.shutdown()
    assert log_lines(log) == ["steam -shutdown"]
    assert (proc.root / "7777").exists()


async def test_start_is_detached(proc: FakeProc, fake_steam: tuple[Path, Path]) -> None:
    script, log = fake_steam
    steam = make_process(proc, script)
    pid = await steam.start()
    assert pid > 0
    await wait_for_exit(pid)
    assert log_lines(log) == ["steam "]
    assert await steam.is_running() is True


async def test_a_missing_steam_command(proc: FakeProc, tmp_path: Path) -> None:
    steam = make_process(proc, tmp_path / "no-such-steam")
    with pytest.raises(SteamProcessError, match="not found"):
        await steam.start()


async def test_restart_in_desktop_mode_and_the_limit(proc: FakeProc, fake_steam: tuple[Path, Path]) -> None:
    script, log = fake_steam
    proc.add(STEAM_PID, "steam")
    clock = Clock()
    steam = make_process(proc, script, limiter=RestartLimiter(clock=clock))
    for _ in range(2):
        assert await steam.restart() == "Steam restarted"
        # The fake Steam is running again once the detached start has run.
        while not await steam.is_running():
            await asyncio.sleep(0.01)
        clock.now += 5
    with pytest.raises(RestartRefused, match="crash loop"):
        await steam.restart()
    assert log_lines(log) == ["steam -shutdown", "steam ", "steam -shutdown", "steam "]
    clock.now += 60
    assert await steam.restart() == "Steam restarted"


async def test_restart_in_game_mode_leaves_the_start_to_the_session(
    proc: FakeProc, fake_steam: tuple[Path, Path]
) -> None:
    script, log = fake_steam
    proc.add(STEAM_PID, "steam")
    steam = make_process(proc, script, session="gamemode")
    assert "Game Mode session" in await steam.restart()
    assert log_lines(log) == ["steam -shutdown"]


async def test_stopped_runs_the_body_with_steam_stopped(
    proc: FakeProc, fake_steam: tuple[Path, Path]
) -> None:
    script, log = fake_steam
    proc.add(STEAM_PID, "steam")
    steam = make_process(proc, script)
    async with steam.stopped() as was_running:
        assert was_running is True
        assert await steam.is_running() is False
        assert log_lines(log) == ["steam -shutdown"]
    while not await steam.is_running():
        await asyncio.sleep(0.01)
    assert log_lines(log) == ["steam -shutdown", "steam "]


async def test_stopped_when_steam_is_not_running(proc: FakeProc, fake_steam: tuple[Path, Path]) -> None:
    script, log = fake_steam
    async with make_process(proc, script).stopped() as was_running:
        assert was_running is False
    assert log_lines(log) == []


async def test_stopped_refuses_before_stopping_anything(
    proc: FakeProc, fake_steam: tuple[Path, Path]
) -> None:
    script, log = fake_steam
    proc.add(STEAM_PID, "steam")
    limiter = RestartLimiter(clock=Clock())
    limiter.record()
    limiter.record()
    with pytest.raises(RestartRefused):
        async with make_process(proc, script, limiter=limiter).stopped():
            pytest.fail("the body must not run")
    assert log_lines(log) == []
