"""Suite 3, faults: the Agent SIGKILLed and restarted, the connection cut, the disk full, shortcuts.vdf corrupt.

Every fault hits the upload of a new version (v<k+1>) of a game whose previous version (v<k>) is
installed, with a Steam shortcut. After each install the "game" plays: it writes a new save, rewrites
an older one and its settings file in its own folder, which every later version must keep. After
each fault the suite checks, from outside the Agent:

* the installed game is still v<k> and the game's files, byte for byte (or, once `complete_upload`
  may have run, v<k+1> whole and the game's files: never a mix, never missing);
* `shortcuts.vdf` is unchanged, or correctly updated (the other shortcuts untouched, ours once with
  the right exe, start folder and launch options), never half-written;

and after the Hub's next deploy (which must resume: the Agent reports what it already holds):

* v<k+1> and the game's files are installed byte for byte and the shortcut points at it.

Faults:

* **SIGKILL** of the Agent (a real `capydeploy.agent.cli` process) when the TCP relay between Hub
  and Agent has forwarded a random number of bytes of the upload, or at a random instant after the
  Hub sent `complete_upload` (fsync, swap, manifest, shortcut); the Agent is restarted on the same
  port and the Hub deploys again;
* **connection cut** by the relay after a random number of bytes (each reconnection gets its own
  random budget, so a resumed pass can be cut again), reset or closed without a WebSocket close
  frame, or at a random instant of `complete_upload`; the Hub reconnects and resumes by itself;
* **disk full**: a 64 MiB tmpfs holds the install folder (when this machine lets us mount one),
  and a filler file takes its free space when the relay has forwarded a random number of bytes;
  also once before `init_upload` (which must answer 400 `insufficient space`);
* **ENOSPC injected**: an in-process Agent whose transfer service writes through a `FileWriter`
  that fails with ENOSPC after a random number of bytes, or at `fsync`;
* **corrupt shortcuts.vdf**: the file replaced by one of several corrupt files, then a deploy with a
  shortcut: it must install the game, report `shortcutError` and leave the corrupt file byte for
  byte; then the valid file is put back and the next deploy must update it correctly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capydeploy.agent.config import AgentConfig
from capydeploy.agent.server import Agent
from capydeploy.agent.transfer import OsFileWriter, TransferService
from capydeploy.agent.transfer.filesystem import BytesLike
from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import (
    DEFAULT_WINDOW_BYTES,
    Deployment,
    DeployOptions,
    DeployProgress,
    DeployResult,
    prepare,
)
from capydeploy.hub.errors import AgentError, HubError
from capydeploy.hub.scan import LocalFile
from capydeploy.protocol import messages as m
from capydeploy.protocol.constants import CHUNK_SIZE

from .games import (
    EXECUTABLE,
    Digest,
    GameLine,
    GameVersion,
    corruptions,
    damaged_bytes,
    describe_difference,
    other_shortcuts,
    tree_digest,
    vdf_app_id,
    vdf_state,
)
from .proxy import FaultProxy, Link, Trip
from .sandbox import AgentProcess, DeviceHome, mount_tmpfs, unmount

log = logging.getLogger("faults")

GAME = "Fault Game"
MiB = 1024 * 1024
HANG_GUARD = 600.0  # seconds; a deploy that takes longer is a hang, not a slow run
RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
Prepared = tuple[list[LocalFile], dict[str, str]]


@dataclass
class FaultOptions:
    workdir: Path
    kills: int = 20
    cuts: int = 50
    disk_fulls: int = 3  # tmpfs rounds (needs mount); 0 to skip
    enospc: int = 3  # injected-writer rounds (in-process agent)
    corrupt_vdfs: int = 8  # corrupt shortcuts.vdf kinds to try (cycled)
    game_mib: float = 48.0
    disk_game_mib: float = 16.0
    tmpfs_mib: int = 64
    seed: int = 20240607
    install_share: float = 0.2  # share of kills and cuts aimed at complete_upload
    time_limit: float = 1800.0
    say: Callable[[str], None] = print


@dataclass
class FaultReport:
    injected: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    data_lost: int = 0  # bytes of an installed version found damaged or missing
    resumes: int = 0  # passes that picked up a staged upload after a fault
    resumed_bytes: int = 0  # bytes those passes did not send again
    bytes_needed: int = 0  # bytes the faulted deploys had to send at the least
    bytes_sent: int = 0  # bytes they did send, all attempts together
    deploys: int = 0
    versions: int = 0
    missed: Counter[str] = field(default_factory=Counter)  # planned faults the deploy outran
    kill_positions: list[str] = field(default_factory=list)
    # per phase: [faults injected, bytes needed, bytes sent]
    phases: dict[str, list[int]] = field(default_factory=dict)
    vdf_tempfiles: int = 0
    manifest_losses: int = 0  # SIGKILLs in complete_upload after which the whole game came again
    seconds: float = 0.0
    complete: bool = True

    @property
    def bytes_resent(self) -> int:
        return max(0, self.bytes_sent - self.bytes_needed)

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def account(self, phase: str, faults: int, needed: int, sent: int) -> None:
        row = self.phases.setdefault(phase, [0, 0, 0])
        row[0] += faults
        row[1] += needed
        row[2] += sent
        self.bytes_needed += needed
        self.bytes_sent += sent

    def count(self, prefix: str) -> int:
        return sum(n for kind, n in self.injected.items() if kind.startswith(prefix))


def options_for(version: GameVersion, shortcut: bool = True) -> DeployOptions:
    return DeployOptions(
        game_name=GAME,
        executable=EXECUTABLE,
        create_shortcut=shortcut,
        launch_options=version.launch_options,
    )


# --- a failing disk for the in-process Agent ------------------------------------------------------


class FailingWriter(OsFileWriter):
    """The real writer, until armed: then the disk "fills" after `budget` more bytes (a short write,
    then ENOSPC for every later write) or `fsync` fails with ENOSPC."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.budget: int | None = None
        self.written = 0
        self.fail_fsync = False
        self.failures = 0

    def arm(self, budget: int) -> None:
        with self._lock:
            self.budget = budget
            self.written = 0

    def heal(self) -> None:
        with self._lock:
            self.budget = None
            self.fail_fsync = False

    def pwrite(self, handle: int, data: BytesLike, offset: int) -> int:
        with self._lock:
            if self.budget is not None:
                room = self.budget - self.written
                if room <= 0:
                    self.failures += 1
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if len(data) > room:
                    data = memoryview(data)[:room]
                self.written += len(data)
        return super().pwrite(handle, data, offset)

    def fsync(self, handle: int) -> None:
        if self.fail_fsync:
            self.failures += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().fsync(handle)


def fill_disk(path: Path, size: int) -> int:
    """Write `size` bytes (or until the disk is full) into `path`; returns what was written."""
    block = b"\0" * MiB
    written = 0
    with path.open("ab") as handle:
        while written < size:
            try:
                handle.write(block[: min(MiB, size - written)])
                handle.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
            written += min(MiB, size - written)
    return written


# --- where a game line lands, and the checks -----------------------------------------------------


class Target:
    """One install folder and shortcuts.vdf, and what is known to be in them."""

    def __init__(self, suite: FaultSuite, device: DeviceHome, line: GameLine, label: str) -> None:
        self.suite = suite
        self.device = device
        self.line = line
        self.label = label
        self.installed: GameVersion | None = None
        self.vdf_good = other_shortcuts()
        device.shortcuts_vdf.write_bytes(self.vdf_good)
        self.install_seconds = 0.2  # how long complete_upload takes here (measured on the first deploy)
        self._damage_counted: set[int] = set()  # versions whose damage is already in data_lost
        # What the "game" wrote into its folder after each install (saves, settings): every
        # later version must keep it, whatever the fault (keep.py).
        self.saves: Digest = {}

    def expected(self, version: GameVersion) -> Digest:
        """The game folder once `version` is installed: its files and the game's own."""
        return {**version.digest, **self.saves}

    def play(self, version: GameVersion) -> None:
        """Run the game a little: a new save, an older one rewritten in place, the settings file
        rewritten, as a game does between two deploys."""
        rng = self.suite.rng
        writes = {
            f"saves/slot-v{version.number}.sav": rng.randbytes(rng.randint(1, 64 * 1024)),
            "settings.ini": f"last version played = {version.number}\n".encode(),
        }
        if self.saves:
            writes[rng.choice(sorted(p for p in self.saves if p.startswith("saves/")) or ["saves/slot-0.sav"])] = (
                rng.randbytes(rng.randint(0, 1024))
            )
        for relative, data in writes.items():
            path = self.game_dir / relative
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            self.saves[relative] = (len(data), hashlib.sha256(data).hexdigest())

    @property
    def game_dir(self) -> Path:
        return self.device.install_dir / GAME

    @property
    def exe(self) -> Path:
        return self.device.install_dir / GAME / EXECUTABLE

    def digest(self) -> Digest | None:
        """The installed game's digest; a folder the Agent is renaming right now reads as "changing"."""
        try:
            return tree_digest(self.game_dir)
        except FileNotFoundError:
            return {"<changing while read>": (-1, "")}

    def read_vdf(self) -> bytes | None:
        try:
            return self.device.shortcuts_vdf.read_bytes()
        except FileNotFoundError:
            return None

    async def check(self, new: GameVersion | None, what: str) -> None:
        """After a fault: the previous version intact (or `new` whole), the vdf unchanged or updated."""
        report = self.suite.report
        digest = None
        ok_old = ok_new = False
        for _ in range(100):  # the Agent may be repairing a swap it did not finish (at start-up)
            digest = await asyncio.to_thread(self.digest)
            ok_old = digest is None if self.installed is None else digest == self.expected(self.installed)
            ok_new = new is not None and digest == self.expected(new)
            if ok_old or ok_new:
                break
            await asyncio.sleep(0.05)
        if not (ok_old or ok_new):
            expected = self.expected(self.installed) if self.installed is not None else {}
            number = self.installed.number if self.installed is not None else 0
            if number not in self._damage_counted:
                self._damage_counted.add(number)
                report.data_lost += damaged_bytes(expected, digest)
            self.suite.violation(
                f"{self.label} {what}: installed game is neither v{self.installed.number if self.installed else 0}"
                f" nor the new version ({describe_difference(expected, digest)})"
            )
        current = self.read_vdf()
        if current is None:
            self.suite.violation(f"{self.label} {what}: shortcuts.vdf disappeared")
            return
        if new is not None:
            state, reason = vdf_state(
                self.vdf_good, current, game_name=GAME, exe=self.exe, launch_options=new.launch_options
            )
        else:
            state, reason = ("unchanged", None) if current == self.vdf_good else ("bad", "changed")
        if state == "bad":
            self.suite.violation(f"{self.label} {what}: shortcuts.vdf {reason}")
        elif state == "updated" and not ok_new:
            self.suite.violation(f"{self.label} {what}: shortcut updated but the new version is not installed")
        temps = [p for p in self.device.user_config.iterdir() if p.name.endswith(".tmp")]
        if temps:
            report.vdf_tempfiles = max(report.vdf_tempfiles, len(temps))

    async def resync(self, new: GameVersion) -> None:
        """After a deploy that failed (a violation already): go on from whatever is installed now."""
        digest = await asyncio.to_thread(self.digest)
        if digest != self.expected(new):
            return
        self.installed = new
        current = self.read_vdf()
        if current is not None:
            state, _ = vdf_state(self.vdf_good, current, game_name=GAME, exe=self.exe, launch_options=new.launch_options)
            if state == "updated":
                self.vdf_good = current

    async def finish(self, new: GameVersion, result: DeployResult, shortcut: bool = True) -> None:
        """The deploy said it is done: v<k+1> whole, the shortcut updated."""
        report = self.suite.report
        digest = await asyncio.to_thread(self.digest)
        if digest != self.expected(new):
            report.data_lost += damaged_bytes(self.expected(new), digest)
            self.suite.violation(
                f"{self.label}: v{new.number} reported installed but "
                f"{describe_difference(self.expected(new), digest)}"
            )
        current = self.read_vdf() or b""
        if shortcut:
            state, reason = vdf_state(
                self.vdf_good, current, game_name=GAME, exe=self.exe, launch_options=new.launch_options
            )
            if result.shortcut_error:
                self.suite.violation(f"{self.label}: v{new.number} shortcutError {result.shortcut_error!r}")
            elif state != "updated":
                self.suite.violation(f"{self.label}: v{new.number} shortcuts.vdf {state} ({reason})")
            elif vdf_app_id(current, GAME) != result.app_id:
                self.suite.violation(f"{self.label}: appId {result.app_id} is not the one in shortcuts.vdf")
        self.installed = new
        self.vdf_good = current
        report.versions += 1
        await asyncio.to_thread(self.play, new)


# --- the Agent as a process, behind the fault proxy -------------------------------------------------


class ProcessRig:
    def __init__(self, suite: FaultSuite, root: Path, label: str, size: int, install_dir: Path | None = None) -> None:
        self.suite = suite
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.device = DeviceHome.create(root, install_dir)
        self.agent = AgentProcess(self.device, root / "agent.log", name=f"{label} Deck")
        self.proxy: FaultProxy | None = None
        self.hub_dir = root / "hub"
        self.target = Target(suite, self.device, GameLine(root / "src", size, suite.rng.randrange(2**32)), label)

    async def start(self) -> None:
        await asyncio.to_thread(self.agent.start, 0)
        self.proxy = FaultProxy(self.agent.port)
        await self.proxy.start()

    def client(self, reconnect: bool = True) -> HubClient:
        assert self.proxy is not None
        return HubClient(
            self.proxy.url,
            config_dir=self.hub_dir,
            pair=self._pair,
            reconnect=reconnect,
            reconnect_delays=RECONNECT_DELAYS,
        )

    async def _pair(self, _: m.PairingRequired) -> str:
        return await self.agent.pairing_code()

    async def restart(self) -> None:
        await asyncio.to_thread(self.agent.start)

    async def close(self) -> None:
        if self.proxy is not None:
            await self.proxy.close()
        await asyncio.to_thread(self.agent.terminate)


# --- the suite ------------------------------------------------------------------------------------


class FaultSuite:
    def __init__(self, options: FaultOptions) -> None:
        self.options = options
        self.report = FaultReport()
        self.rng = random.Random(options.seed)
        self._deadline = time.monotonic() + options.time_limit
        self._started = time.monotonic()

    # --- bookkeeping ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.options.say(text)

    def violation(self, text: str) -> None:
        self.report.violations.append(text)
        self.say(f"  VIOLATION: {text}")

    def time_left(self) -> bool:
        if time.monotonic() < self._deadline:
            return True
        if self.report.complete:
            self.report.complete = False
            self.report.notes.append("stopped early: the time limit was reached")
        return False

    def size(self, mib: float) -> int:
        return max(64 * 1024, int(mib * MiB))

    async def deploy(
        self,
        client: HubClient,
        prepared: Prepared,
        version: GameVersion,
        progress: Callable[[DeployProgress], None] | None = None,
        *,
        shortcut: bool = True,
        target: Target | None = None,
    ) -> tuple[Deployment, DeployResult | None, BaseException | None]:
        """One deploy; with `target`, an undisturbed one also times complete_upload there (the
        window in which install-phase faults are aimed)."""
        files, hashes = prepared
        installing = 0.0

        def observe(p: DeployProgress) -> None:
            nonlocal installing
            if p.phase == "installing" and not installing:
                installing = time.monotonic()
            if progress is not None:
                progress(p)

        deployment = Deployment(client, files, hashes, options_for(version, shortcut), observe)
        self.report.deploys += 1
        try:
            result = await asyncio.wait_for(deployment.run(), HANG_GUARD)
        except TimeoutError:
            return deployment, None, TimeoutError(f"the deploy hung for {HANG_GUARD:.0f} s")
        except (HubError, OSError) as error:
            return deployment, None, error
        if target is not None and installing and deployment.resumes == 0:
            target.install_seconds = max(0.005, time.monotonic() - installing)
        return deployment, result, None

    async def clean_deploy(self, target: Target, client: HubClient, version: GameVersion) -> None:
        """A deploy without faults (the first version, and after a fault that needs no resume)."""
        prepared = await prepare(version.folder)
        _, result, error = await self.deploy(client, prepared, version, target=target)
        if result is None:
            self.violation(f"{target.label}: a deploy without faults failed: {error}")
            raise RuntimeError(f"cannot go on: {error}")
        await target.finish(version, result)

    # --- the run --------------------------------------------------------------------------------

    async def run(self) -> FaultReport:
        o = self.options
        o.workdir.mkdir(parents=True, exist_ok=True)
        if o.kills or o.cuts or o.corrupt_vdfs:
            main = ProcessRig(self, o.workdir / "main", "Main", self.size(o.game_mib))
            await main.start()
            try:
                client = main.client()
                await client.connect()
                await self.clean_deploy(main.target, client, main.target.line.next_version())
                await client.close()
                if o.kills:
                    await self.kill_phase(main)
                if o.cuts:
                    await self.cut_phase(main)
                if o.corrupt_vdfs:
                    await self.vdf_phase(main)
            finally:
                await main.close()
        if o.enospc:
            await self.enospc_phase()
        if o.disk_fulls:
            await self.disk_full_phase()
        self.report.seconds = time.monotonic() - self._started
        if self.report.count("SIGKILL") < o.kills or self.report.count("connection cut") < o.cuts:
            self.report.complete = False
        return self.report

    # --- SIGKILL --------------------------------------------------------------------------------

    async def kill_phase(self, rig: ProcessRig) -> None:
        o, report, target = self.options, self.report, rig.target
        kills = 0
        self.say(f"SIGKILL: {o.kills} kills of the agent process, restarted each time")
        while kills < o.kills and self.time_left():
            new = target.line.next_version()
            prepared = await prepare(new.folder)
            needed = new.needed_after(target.installed)
            carried = new.total - needed
            planned = min(self.rng.choice((1, 1, 2)), o.kills - kills)
            kills_before = kills
            sent = 0
            held_hint = 0  # bytes of the new files the Agent should hold already
            expect_held: int | None = None  # new bytes the Agent acknowledged before a kill
            killed_upload = ""
            killed_plan = ""
            while True:
                plan = ""
                if planned > 0:
                    plan = "install" if self.rng.random() < o.install_share else "upload"
                attempt = await self._kill_attempt(rig, prepared, new, plan, max(1, needed - held_hint))
                if attempt is None:
                    return
                deployment, result, error, position = attempt
                sent += deployment.sent
                if expect_held is not None and deployment.upload_id:
                    # The first pass after a restart: the Agent must have kept the new bytes it
                    # acknowledged (all but the last window, acknowledged out of order). Unchanged
                    # files it carried from the installed version may have to come again.
                    held = deployment.skipped
                    slack = DEFAULT_WINDOW_BYTES + CHUNK_SIZE
                    if held + slack < expect_held and killed_plan == "upload":
                        self.violation(
                            f"after SIGKILL the agent held {held} bytes; {expect_held} new bytes were "
                            "acknowledged before"
                        )
                    elif held + slack < expect_held:
                        # Killed inside complete_upload between dropping the old manifest and writing
                        # the new one: the game is whole (checked), but must be sent again.
                        report.manifest_losses += 1
                        report.notes.append(
                            f"v{new.number}: after a SIGKILL ({report.kill_positions[-1]}) the agent held "
                            f"{held} of {new.total} bytes: neither the staged upload nor a manifest was left"
                        )
                    elif held + slack < expect_held + carried:
                        report.notes.append(
                            f"v{new.number}: after a SIGKILL ({report.kill_positions[-1]}) the unchanged files "
                            f"({carried} bytes) could not be carried again and were re-sent"
                        )
                    if deployment.upload_id == killed_upload:
                        report.resumes += 1
                        report.resumed_bytes += max(0, held - carried)
                    expect_held = None
                if position:
                    kills += 1
                    planned -= 1
                    report.injected[f"SIGKILL during {plan}"] += 1
                    report.kill_positions.append(position)
                    self.say(f"  kill {kills}/{o.kills} (v{new.number}): {position}")
                    await rig.restart()
                    await target.check(new, f"after SIGKILL {kills} ({position})")
                    if deployment.upload_id:
                        acknowledged = deployment.skipped + deployment.acked - carried
                        killed_upload = deployment.upload_id
                        killed_plan = plan
                        expect_held = max(expect_held or 0, acknowledged)
                        held_hint = max(held_hint, acknowledged)
                    continue
                if error is not None:
                    self.violation(f"v{new.number}: deploy failed with no fault injected: {error}")
                    if not rig.agent.alive:
                        await rig.restart()
                    await target.check(new, "after a failed deploy")
                    await target.resync(new)
                    break
                assert result is not None
                if planned > 0:
                    report.missed[f"SIGKILL during {plan}"] += 1
                report.account("SIGKILL", kills - kills_before, needed, sent)
                await target.finish(new, result)
                break

    async def _kill_attempt(
        self, rig: ProcessRig, prepared: Prepared, new: GameVersion, plan: str, upload_bytes: int
    ) -> tuple[Deployment, DeployResult | None, BaseException | None, str] | None:
        """One deploy from a fresh client; `plan` "upload" kills the Agent when the relay has passed a
        random number of bytes, "install" at a random instant of complete_upload, "" not at all.
        Returns (deployment, result, error, where the kill landed or "") or None if unreachable."""
        assert rig.proxy is not None
        client = rig.client(reconnect=False)
        try:
            await client.connect()
        except HubError as refused:
            self.violation(f"cannot reconnect after a restart: {refused}")
            return None
        position = ""
        timer: asyncio.TimerHandle | None = None
        delay = self.rng.uniform(0.0, rig.target.install_seconds)

        async def kill_now(link: Link, trip: Trip) -> bool:
            nonlocal position
            position = f"upload, {link.up_total} bytes into the connection"  # before: the Hub may notice first
            await asyncio.to_thread(rig.agent.kill)
            return True

        def kill_at_install() -> None:
            nonlocal position
            position = f"complete_upload, {delay * 1000:.0f} ms after it was sent"
            rig.agent.kill()

        def progress(p: DeployProgress) -> None:
            nonlocal timer
            if plan == "install" and p.phase == "installing" and timer is None:
                timer = asyncio.get_running_loop().call_later(delay, kill_at_install)

        if plan == "upload":
            rig.proxy.arm_live(Trip(self.rng.randint(1, upload_bytes), "call", kill_now, tag="kill"))
        try:
            deployment, result, error = await self.deploy(client, prepared, new, progress, target=rig.target)
        finally:
            if timer is not None and not position:
                timer.cancel()
            rig.proxy.disarm()
            await client.close()
        if position:
            await asyncio.to_thread(rig.agent.kill)  # make sure it is dead and reaped
        return deployment, result, error, position

    # --- connection cuts ------------------------------------------------------------------------

    async def cut_phase(self, rig: ProcessRig) -> None:
        o, report, target = self.options, self.report, rig.target
        cuts = 0
        self.say(f"Connection cuts: {o.cuts} cuts by the relay between hub and agent")
        client = rig.client()
        await client.connect()
        try:
            while cuts < o.cuts and self.time_left():
                new = target.line.next_version()
                prepared = await prepare(new.folder)
                needed = new.needed_after(target.installed)
                planned = min(self.rng.randint(1, 4), o.cuts - cuts)
                deployment, result, error, done_cuts = await self._cut_round(
                    rig, client, prepared, new, planned=planned, first_cut=cuts + 1
                )
                for kind in done_cuts:
                    report.injected["connection cut during " + kind.split(",")[0]] += 1
                cuts += len(done_cuts)
                report.missed["connection cut"] += planned - len(done_cuts)
                report.resumes += deployment.resumes
                self.say(f"  v{new.number}: {len(done_cuts)} cuts ({cuts}/{o.cuts}), {deployment.resumes} resumes")
                if result is None:
                    self.violation(f"v{new.number}: deploy failed after {len(done_cuts)} cuts: {error}")
                    await client.close()
                    client = rig.client()
                    await client.connect()
                    await target.check(new, "after a failed deploy")
                    await target.resync(new)
                    continue
                report.account("connection cut", len(done_cuts), needed, deployment.sent)
                await target.finish(new, result)
        finally:
            await client.close()

    async def _cut_round(
        self, rig: ProcessRig, client: HubClient, prepared: Prepared, new: GameVersion, *, planned: int, first_cut: int
    ) -> tuple[Deployment, DeployResult | None, BaseException | None, list[str]]:
        """Deploy `new` while the relay cuts the connection up to `planned` times: after a random
        number of bytes on each connection (so a resumed pass can be cut again), or once at a
        random instant of complete_upload. After each cut the disk is checked before the Hub may
        reconnect."""
        assert rig.proxy is not None
        proxy, target = rig.proxy, rig.target
        needed = new.needed_after(target.installed)
        install_cut = self.rng.random() < self.options.install_share
        checks: list[asyncio.Task[None]] = []
        done_cuts: list[str] = []
        delay = self.rng.uniform(0.0, target.install_seconds)
        timer: asyncio.TimerHandle | None = None

        async def check_then_open(kind: str, number: int) -> None:
            try:
                await target.check(new, f"after cut {number} ({kind})")
            finally:
                proxy.gate.set()

        def after_cut(kind: str) -> None:
            done_cuts.append(kind)
            proxy.gate.clear()  # the Hub's reconnection waits while the disk is checked
            checks.append(asyncio.create_task(check_then_open(kind, first_cut + len(done_cuts) - 1)))

        async def cut(link: Link, trip: Trip) -> bool:
            clean = self.rng.random() < 0.3
            link.cut(clean=clean)
            after_cut(f"upload, {'closed' if clean else 'reset'} after {link.up_total} bytes")
            return True

        def cut_at_install() -> None:
            if proxy.cut_all(clean=False):
                after_cut(f"complete_upload, {delay * 1000:.0f} ms after it was sent")

        def progress(p: DeployProgress) -> None:
            nonlocal timer
            if install_cut and p.phase == "installing" and timer is None:
                timer = asyncio.get_running_loop().call_later(delay, cut_at_install)

        trips = [
            Trip(self.rng.randint(1, needed), "call", cut, tag="cut")
            for _ in range(planned - (1 if install_cut else 0))
        ]
        if trips:
            proxy.arm_live(trips[0])
            proxy.queue_trips(*trips[1:])
        try:
            deployment, result, error = await self.deploy(client, prepared, new, progress, target=target)
        finally:
            if timer is not None:
                timer.cancel()
            proxy.disarm()
            if checks:
                await asyncio.gather(*checks)
            proxy.gate.set()
        return deployment, result, error, done_cuts

    # --- corrupt shortcuts.vdf ------------------------------------------------------------------

    async def vdf_phase(self, rig: ProcessRig) -> None:
        o, report, target = self.options, self.report, rig.target
        kinds = corruptions(target.vdf_good, self.rng)
        self.say(f"Corrupt shortcuts.vdf: {o.corrupt_vdfs} corrupt files, each followed by a valid one")
        client = rig.client()
        await client.connect()
        try:
            for index in range(o.corrupt_vdfs):
                if not self.time_left():
                    break
                name, corrupt = kinds[index % len(kinds)]
                valid = target.vdf_good
                new = target.line.next_version()
                prepared = await prepare(new.folder)
                vdf_path = target.device.shortcuts_vdf
                vdf_path.write_bytes(corrupt)
                listing = sorted(p.name for p in target.device.user_config.iterdir())
                _, result, error = await self.deploy(client, prepared, new)
                report.injected["corrupt shortcuts.vdf"] += 1
                if result is None:
                    self.violation(f"corrupt vdf ({name}): the deploy failed: {error}")
                    vdf_path.write_bytes(valid)
                    continue
                digest = await asyncio.to_thread(tree_digest, target.game_dir)
                if digest != target.expected(new):
                    report.data_lost += damaged_bytes(target.expected(new), digest)
                    self.violation(f"corrupt vdf ({name}): game not installed whole")
                if not result.shortcut_error:
                    self.violation(f"corrupt vdf ({name}): no shortcutError (appId {result.app_id})")
                if vdf_path.read_bytes() != corrupt:
                    self.violation(f"corrupt vdf ({name}): the corrupt file was changed")
                after = sorted(p.name for p in target.device.user_config.iterdir())
                if after != listing:
                    report.notes.append(f"corrupt vdf ({name}): files in the config folder changed: {after}")
                self.say(f"  {name}: shortcutError {result.shortcut_error!r}")
                # The valid file back: the same version again updates it (nothing is sent).
                vdf_path.write_bytes(valid)
                target.installed = new
                _, again, error = await self.deploy(client, prepared, new)
                if again is None:
                    self.violation(f"after corrupt vdf ({name}): redeploy failed: {error}")
                    continue
                if again.bytes_sent:
                    report.notes.append(f"redeploy after corrupt vdf sent {again.bytes_sent} bytes (expected 0)")
                await target.finish(new, again)
        finally:
            await client.close()

    # --- ENOSPC injected (in-process Agent) -------------------------------------------------------

    async def enospc_phase(self) -> None:
        o, report = self.options, self.report
        root = o.workdir / "enospc"
        root.mkdir(parents=True, exist_ok=True)
        device = DeviceHome.create(root)
        writer = FailingWriter()
        agent = Agent(
            AgentConfig(
                data_dir=device.data_dir, host="127.0.0.1", port=0, home=device.home,
                install_dir=device.install_dir, steam_root=device.steam_root, mdns=False,
                name="ENOSPC Deck", platform="linux",
            )
        )
        product_service = agent.transfer
        agent.transfer = TransferService(agent.install_dir, filesystem=writer)
        await product_service.close()
        await agent.start()

        async def pair(_: m.PairingRequired) -> str:
            pending = agent.snapshot().pairing
            assert pending is not None
            return pending.code

        target = Target(self, device, GameLine(root / "src", self.size(o.game_mib / 4), self.rng.randrange(2**32)), "ENOSPC")
        client = HubClient(f"ws://127.0.0.1:{agent.port}/ws", config_dir=root / "hub", pair=pair)
        self.say(f"ENOSPC injected: {o.enospc} rounds with a failing FileWriter (in-process agent)")
        try:
            await client.connect()
            await self.clean_deploy(target, client, target.line.next_version())
            for index in range(o.enospc):
                if not self.time_left():
                    break
                new = target.line.next_version()
                prepared = await prepare(new.folder)
                needed = new.needed_after(target.installed)
                carried = new.total - needed
                at_fsync = index % 3 == 2
                if at_fsync:
                    writer.fail_fsync = True
                    kind = "ENOSPC injected at fsync"
                else:
                    budget = self.rng.randint(0, max(0, needed - 1))
                    writer.arm(budget)
                    kind = "ENOSPC injected at a write"
                deployment, result, error = await self.deploy(client, prepared, new)
                writer.heal()
                if result is not None:
                    report.missed[kind] += 1
                    report.account("ENOSPC injected", 0, needed, deployment.sent)
                    await target.finish(new, result)
                    continue
                report.injected[kind] += 1
                if not (isinstance(error, AgentError) and "no space left" in error.message):
                    self.violation(f"{kind}: unexpected error {error!r}")
                self.say(f"  {kind} (v{new.number}): {error}")
                await target.check(None, f"after {kind}")
                sent = deployment.sent
                again, result, error = await self.deploy(client, prepared, new)
                if result is None:
                    self.violation(f"after {kind}: the next deploy failed: {error}")
                    continue
                if again.upload_id == deployment.upload_id:
                    report.resumes += 1
                    report.resumed_bytes += max(0, again.skipped - carried)
                report.account("ENOSPC injected", 1, needed, sent + again.sent)
                await target.finish(new, result)
        finally:
            await client.close()
            await agent.stop()

    # --- a real disk that fills up (tmpfs) --------------------------------------------------------

    async def disk_full_phase(self) -> None:
        o, report = self.options, self.report
        mount_point = o.workdir / "tmpfs"
        problem = await asyncio.to_thread(mount_tmpfs, mount_point, o.tmpfs_mib)
        if problem is not None:
            report.skipped.append(f"disk full on tmpfs: cannot mount a tmpfs here ({problem})")
            self.say(f"Disk full (tmpfs): skipped, {problem}")
            return
        self.say(f"Disk full: {o.disk_fulls} rounds on a {o.tmpfs_mib} MiB tmpfs (agent process)")
        rig = ProcessRig(self, o.workdir / "disk", "Disk", self.size(o.disk_game_mib), mount_point / "Games")
        filler = mount_point / "filler.bin"
        try:
            await rig.start()
            assert rig.proxy is not None
            target = rig.target
            client = rig.client()
            await client.connect()
            await self.clean_deploy(target, client, target.line.next_version())
            # Once: the disk is already full when init_upload arrives.
            new = target.line.next_version()
            prepared = await prepare(new.folder)
            free = shutil.disk_usage(mount_point).free
            await asyncio.to_thread(fill_disk, filler, max(0, free - 256 * 1024))
            _, result, error = await self.deploy(client, prepared, new)
            report.injected["disk full before init_upload (tmpfs)"] += 1
            if not (isinstance(error, AgentError) and error.code == 400 and "insufficient space" in error.message):
                self.violation(f"disk full before init_upload: expected 400 insufficient space, got {error or result}")
            await target.check(None, "after disk full before init_upload")
            filler.unlink()
            for _ in range(o.disk_fulls):
                if not self.time_left():
                    break
                needed = new.needed_after(target.installed)
                carried = new.total - needed
                budget = self.rng.randint(1, needed)
                deployment, result, error = await self._fill_during(rig, client, prepared, new, budget=budget, filler=filler)
                if result is not None:
                    # The fill came too late to matter (or the slack was enough): nothing to check.
                    report.missed["disk full during upload (tmpfs)"] += 1
                    with contextlib.suppress(FileNotFoundError):
                        filler.unlink()
                    report.account("disk full (tmpfs)", 0, needed, deployment.sent)
                    await target.finish(new, result)
                else:
                    full = isinstance(error, AgentError) and (
                        "no space left" in error.message or "insufficient space" in error.message
                    )
                    if not full:
                        self.violation(f"disk full: unexpected error {error!r}")
                    report.injected["disk full during upload (tmpfs)"] += 1
                    self.say(f"  disk full after {budget} bytes (v{new.number}): {error}")
                    await target.check(None, "after disk full")
                    filler.unlink()
                    again, result, error = await self.deploy(client, prepared, new)
                    if result is None:
                        self.violation(f"after disk full: the next deploy failed: {error}")
                        break
                    if again.upload_id == deployment.upload_id:
                        report.resumes += 1
                        report.resumed_bytes += max(0, again.skipped - carried)
                    report.account("disk full (tmpfs)", 1, needed, deployment.sent + again.sent)
                    await target.finish(new, result)
                new = target.line.next_version()
                prepared = await prepare(new.folder)
            await client.close()
        finally:
            await rig.close()
            await asyncio.to_thread(unmount, mount_point)

    async def _fill_during(
        self, rig: ProcessRig, client: HubClient, prepared: Prepared, new: GameVersion, *, budget: int, filler: Path
    ) -> tuple[Deployment, DeployResult | None, BaseException | None]:
        """Deploy `new`; when the relay has passed `budget` bytes, a filler file takes the free space
        of the tmpfs (all but a random slack of up to 64 KiB) and the relay goes on."""
        assert rig.proxy is not None

        async def fill(link: Link, trip: Trip) -> bool:
            room = shutil.disk_usage(filler.parent).free
            slack = self.rng.randint(0, 64 * 1024)
            await asyncio.to_thread(fill_disk, filler, max(0, room - slack))
            return False  # keep relaying: the Agent finds out by itself

        rig.proxy.arm_live(Trip(budget, "call", fill, tag="fill"))
        try:
            return await self.deploy(client, prepared, new)
        finally:
            rig.proxy.disarm()


async def run_faults(options: FaultOptions) -> FaultReport:
    return await FaultSuite(options).run()


def summary_rows(report: FaultReport) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [(f"faults injected: {kind}", n) for kind, n in sorted(report.injected.items())]
    rows += [
        ("faults injected, total", report.total_injected),
        ("planned faults the deploy outran (not counted)", sum(report.missed.values())),
        ("data lost (bytes of an installed version damaged or missing)", report.data_lost),
        ("invariant violations", len(report.violations)),
        ("resumes (passes that found the upload staged)", report.resumes),
        ("bytes not sent again thanks to resume", report.resumed_bytes),
        ("bytes the faulted deploys needed", report.bytes_needed),
        ("bytes sent, all attempts", report.bytes_sent),
        ("bytes re-sent", report.bytes_resent),
        ("SIGKILLs in complete_upload that cost a full re-send (manifest lost)", report.manifest_losses),
    ]
    for phase, (faults, needed, sent) in report.phases.items():
        resent = max(0, sent - needed)
        per = f", {resent / faults / MiB:.2f} MiB per fault" if faults else ""
        rows.append((f"bytes re-sent after {phase}", f"{resent} ({resent / MiB:.1f} MiB{per})"))
    rows += [
        ("game versions installed", report.versions),
        ("deploys run", report.deploys),
        ("seconds", round(report.seconds, 1)),
    ]
    return rows
