"""Steam's process on the device: is it running, stop it cleanly, start it again, limit restarts.

Game Mode or desktop mode (`session="auto"`): Game Mode when the environment has
`SteamGamepadUI`, when a `gamescope*` process of the user runs, or when a running Steam was
started with `-gamepadui`; otherwise desktop mode. The setting can force either. In Game Mode the
gamescope session relaunches Steam after `steam -shutdown`; in desktop mode we start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..protocol.constants import RESTART_WINDOW, RESTARTS_PER_WINDOW

log = logging.getLogger(__name__)

SessionMode = Literal["auto", "gamemode", "desktop"]

STEAM_PROCESS_NAMES = frozenset({"steam", "steamwebhelper"})
DEFAULT_SHUTDOWN_TIMEOUT = 60.0
DEFAULT_POLL_INTERVAL = 0.5

# Runs the command in the background and prints its pid, so Steam is not our child: a child
# would be SIGKILLed by asyncio when its transport is closed, and Steam must never be killed.
_DETACH_SCRIPT = '"$@" </dev/null >/dev/null 2>&1 &\necho $!'


class SteamProcessError(Exception):
    """Steam could not be stopped or started; the message says why."""


class RestartRefused(SteamProcessError):
    """A restart the limiter refused (SteamOS treats quick successive exits as a crash loop)."""


class RestartLimiter:
    """Counts Steam exits we caused and refuses one more than `max_exits` within `window` seconds."""

    def __init__(
        self,
        max_exits: int = RESTARTS_PER_WINDOW,
        window: float = RESTART_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_exits = max_exits
        self.window = window
        self._clock = clock
        self._exits: deque[float] = deque()

    def _prune(self) -> float:
        now = self._clock()
        while self._exits and now - self._exits[0] >= self.window:
            self._exits.popleft()
        return now

    def refusal(self) -> str | None:
        """Why a restart now would be refused, or None when it is allowed."""
        now = self._prune()
        if len(self._exits) < self.max_exits:
            return None
        wait = max(1, round(self.window - (now - self._exits[0])))
        return (
            f"Steam was restarted {len(self._exits)} times in the last {self.window:g} s; SteamOS treats "
            f"another quick exit as a crash loop. Try again in {wait} s"
        )

    def record(self) -> None:
        self._prune()
        self._exits.append(self._clock())


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str
    uid: int
    zombie: bool


def read_process(proc_dir: Path) -> ProcessInfo | None:
    """Name, real uid and state from `/proc/<pid>/status`; None if it vanished or is unreadable."""
    try:
        text = (proc_dir / "status").read_text(encoding="utf-8", errors="replace")
        pid = int(proc_dir.name)
    except (OSError, ValueError):
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    try:
        uid = int(fields.get("Uid", "").split()[0])
    except (IndexError, ValueError):
        return None
    return ProcessInfo(
        pid=pid,
        name=fields.get("Name", ""),
        uid=uid,
        zombie=fields.get("State", "").startswith(("Z", "X")),
    )


def list_processes(proc_root: Path, uid: int) -> list[ProcessInfo]:
    """The live processes of `uid` (zombies are dead: they only wait to be reaped)."""
    try:
        entries = [entry for entry in proc_root.iterdir() if entry.name.isdigit()]
    except OSError:
        return []
    found = []
    for entry in entries:
        info = read_process(entry)
        if info is not None and info.uid == uid and not info.zombie:
            found.append(info)
    return found


def read_cmdline(proc_root: Path, pid: int) -> list[str]:
    try:
        raw = (proc_root / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\x00") if part]


def default_pid_files(home: Path, roots: Sequence[Path] = ()) -> list[Path]:
    """The pid files Steam writes: `~/.steam/steam.pid` (by steam.sh), and `<root>/steam.pid`."""
    return [Path(home) / ".steam" / "steam.pid", *(Path(root) / "steam.pid" for root in roots)]


class SteamProcess:
    """Steam's process for one user: running check, clean shutdown, detached start, rate limit."""

    def __init__(
        self,
        *,
        steam_command: Sequence[str] = ("steam",),
        pid_files: Sequence[Path] = (),
        proc_root: Path = Path("/proc"),
        uid: int | None = None,
        session: SessionMode = "auto",
        env: Mapping[str, str] | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        limiter: RestartLimiter | None = None,
    ) -> None:
        if not steam_command:
            raise ValueError("steam_command is empty")
        self.steam_command = tuple(steam_command)
        self.pid_files = tuple(Path(path) for path in pid_files)
        self.proc_root = Path(proc_root)
        self.uid = os.getuid() if uid is None else uid
        self.session = session
        self.env = dict(env) if env is not None else None
        self.shutdown_timeout = shutdown_timeout
        self.poll_interval = poll_interval
        self.limiter = limiter or RestartLimiter()
        # `steam -shutdown` helpers still running after a timeout, kept so they are reaped.
        self._helpers: set[asyncio.Task[int]] = set()

    # --- observing ------------------------------------------------------------------------

    def _pid_file_alive(self) -> bool:
        for pid_file in self.pid_files:
            try:
                pid = int(pid_file.read_text(encoding="ascii").strip())
            except (OSError, ValueError):
                continue
            info = read_process(self.proc_root / str(pid))
            # steam.pid is left behind after Steam exits: only a live process of the user counts.
            if info is not None and info.uid == self.uid and not info.zombie:
                return True
        return False

    def _running_now(self) -> bool:
        if any(info.name in STEAM_PROCESS_NAMES for info in list_processes(self.proc_root, self.uid)):
            return True
        return self._pid_file_alive()

    async def is_running(self) -> bool:
        """A live `steam`/`steamwebhelper` of the user, or a pid file pointing at a live process."""
        return await asyncio.to_thread(self._running_now)

    def _game_mode_now(self) -> bool:
        if self.session != "auto":
            return self.session == "gamemode"
        environment = self.env if self.env is not None else os.environ
        if environment.get("SteamGamepadUI"):
            return True
        processes = list_processes(self.proc_root, self.uid)
        if any(info.name.startswith("gamescope") for info in processes):
            return True
        return any(
            "-gamepadui" in read_cmdline(self.proc_root, info.pid)
            for info in processes
            if info.name in STEAM_PROCESS_NAMES
        )

    async def is_game_mode(self) -> bool:
        return await asyncio.to_thread(self._game_mode_now)

    def restart_refusal(self) -> str | None:
        return self.limiter.refusal()

    # --- acting ---------------------------------------------------------------------------

    def _resolve_command(self) -> list[str]:
        executable = self.steam_command[0]
        path = (self.env or os.environ).get("PATH")
        resolved = shutil.which(executable, path=path)
        if resolved is None:
            raise SteamProcessError(f"the Steam command {executable!r} was not found")
        return [resolved, *self.steam_command[1:]]

    async def shutdown(self) -> None:
        """`steam -shutdown` (never a signal) and wait until Steam is gone, at most `shutdown_timeout`."""
        if not await self.is_running():
            return
        command = [*self._resolve_command(), "-shutdown"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        log.info("asking Steam to exit: %s", " ".join(command))
        try:
            helper = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        except OSError as error:
            raise SteamProcessError(f"cannot run {command[0]!r}: {error.strerror or error}") from error
        self.limiter.record()
        waiter = asyncio.ensure_future(helper.wait())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout=max(0.0, deadline - loop.time()))
        except TimeoutError:
            self._helpers.add(waiter)
            waiter.add_done_callback(self._helpers.discard)
        while await self.is_running():
            if loop.time() >= deadline:
                raise SteamProcessError(
                    f"Steam did not exit within {self.shutdown_timeout:g} s of 'steam -shutdown'"
                )
            await asyncio.sleep(self.poll_interval)

    async def start(self) -> int:
        """Start Steam detached from us (own session, not our child); returns the launched pid."""
        command = self._resolve_command()
        log.info("starting Steam: %s", " ".join(command))
        try:
            launcher = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                _DETACH_SCRIPT,
                "capydeploy-steam-launcher",
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
            output, _ = await launcher.communicate()
        except OSError as error:
            raise SteamProcessError(f"cannot start Steam: {error.strerror or error}") from error
        try:
            return int(output.strip())
        except ValueError:
            raise SteamProcessError("could not start Steam (the launcher reported no process)") from None

    async def restart(self) -> str:
        """Stop Steam and bring it back; raises RestartRefused when the limiter says no."""
        refusal = self.limiter.refusal()
        if refusal is not None:
            raise RestartRefused(refusal)
        game_mode = await self.is_game_mode()
        running = await self.is_running()
        if running:
            await self.shutdown()
        if game_mode:
            if running:
                return "Steam is restarting (the Game Mode session starts it again)"
            return "Steam is not running; the Game Mode session starts it"
        await self.start()
        return "Steam restarted" if running else "Steam was not running; started it"

    @contextlib.asynccontextmanager
    async def stopped(self) -> AsyncIterator[bool]:
        """Run the body while Steam is stopped, then start it again; yields whether it was running.

        Raises RestartRefused before stopping anything when the limiter refuses.
        """
        if not await self.is_running():
            yield False
            return
        refusal = self.limiter.refusal()
        if refusal is not None:
            raise RestartRefused(refusal)
        game_mode = await self.is_game_mode()
        await self.shutdown()
        try:
            yield True
        finally:
            if not game_mode:
                try:
                    await self.start()
                except SteamProcessError as error:
                    # The body's outcome matters more than a failed relaunch; the user can start Steam.
                    log.error("could not start Steam again: %s", error)
