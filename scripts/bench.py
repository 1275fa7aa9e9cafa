"""`make bench`: CapyDeploy's transfer figures against rsync over SSH, on loopback, in one run.

What it does, in a temporary folder it removes at the end (unless --keep):

* generates a test game: one big file (default 1 GiB of random bytes) and many small files
  (default 200 of 50 KiB) plus a launcher script;
* starts its own `sshd` on a free loopback port (own config, throwaway keys; `openssh-server` and
  `rsync` are installed with apt-get when missing) and times `rsync -a` over `ssh` into an empty
  folder, then again unchanged;
* starts the standalone Agent as its own process, wrapped by `scripts/benchlib/agent_with_probe.py`
  (a 10 ms ticker on the Agent's event loop records its lag), pairs the Hub CLI with it, and times
  `capydeploy-hub --json deploy` (a separate process, with an empty hash cache, so the Hub hashes
  the game as on a first deploy) and the unchanged redeploy that follows;
* deploys once more from this process with the Hub library and cuts the connection (aborts the
  socket) once half of the game's bytes were sent; the Hub reconnects and resumes on its own, and
  `bytes_sent` minus the game's size is what was sent again;
* reads the Agent's peak resident memory (VmHWM, reset before each phase) and the loop-lag samples.

Both tools read the game from the page cache: before each timed run the bench flushes dirty pages
(`sync`) and reads every source file once. Nothing drops caches. The table compares the figures with
the targets and prints MISS for each one missed; the exit code is 0 all the same (it is a benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import math
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PYTHON = sys.executable
HERE = Path(__file__).resolve().parent
PROBE = HERE / "benchlib" / "agent_with_probe.py"
MiB = 1024 * 1024
KiB = 1024
STEAM_ACCOUNT = 52079950
GAME_NAME = "Bench Game"
RESUME_GAME_NAME = "Bench Game (resume)"
SSHD = Path("/usr/sbin/sshd")

# The targets (benchmark figures).
TARGET_RATIO = 2.0  # full deploy at least 2x rsync over SSH
TARGET_RESENT = 16 * MiB  # at most 16 MiB sent again after a cut
TARGET_MEMORY = 100 * MiB  # Agent peak memory
TARGET_LAG_P99 = 0.020
TARGET_LAG_MAX = 0.100


# --- small helpers ----------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def mib(value: float) -> str:
    return f"{value / MiB:.1f} MiB"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation): the value at rank ceil(fraction * n)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def product_env(**extra: str) -> dict[str, str]:
    """The environment of the Hub and Agent processes: bytecode caching on, as for an installed package.

    A sandbox may set PYTHONDONTWRITEBYTECODE=1; every Hub command would then compile its modules
    again, which is not what a user's installed copy does. The .pyc files go to __pycache__ folders
    (ignored by git) like any Python run.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def root_prefix() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


# --- CPU accounting -------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
THREAD_GROUPS = {"agent-loop": "loop", "capydeploy-tran": "transfer", "capydeploy-hash": "hash", "asyncio": "to_thread"}


def thread_cpu(pid: int) -> dict[str, tuple[str, float]]:
    """{thread id: (group, user+system seconds)} of one process, from /proc (the probe names the threads)."""
    threads: dict[str, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (task / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                group = re.sub(r"[_\d]+$", "", name)
                threads[task.name] = (
                    THREAD_GROUPS.get(group, "other"), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                )
    return threads


def system_busy() -> float:
    """CPU seconds the whole machine spent busy (user, nice, system, irq, softirq) since boot."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
        return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / CLOCK_TICKS
    return math.nan


def own_cpu() -> tuple[float, float]:
    """(user, system) seconds of this process and of its waited-for children (the Hub commands)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + children.ru_utime, me.ru_stime + children.ru_stime


def machine_busy(seconds: float = 2.0) -> float:
    """Fraction of all cores busy over a short idle wait (other people's work on a shared machine)."""
    before, start = system_busy(), time.monotonic()
    time.sleep(seconds)
    return (system_busy() - before) / ((time.monotonic() - start) * (os.cpu_count() or 1))


# --- the machine ------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / (1024 * 1024):.1f} GiB"
                break
    flags = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        found = [flag for flag in ("sha_ni", "aes", "avx2", "avx512f") if re.search(rf"\b{flag}\b", text)]
        flags = " ".join(found)
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count() or "?"),
        "cpu_flags": flags,
        "ram": ram,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "os": _os_name(),
    }
    for name, command in (("rsync", ["rsync", "--version"]), ("ssh", ["ssh", "-V"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
            info[name] = (result.stdout or result.stderr).splitlines()[0].strip()
    return info


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def filesystem_of(path: Path) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--target", str(path)],
            capture_output=True, text=True, timeout=10, check=False,
        )
        if result.returncode == 0:
            return result.stdout.strip()
    return "?"


# --- the test game ----------------------------------------------------------------------------


def make_game(folder: Path, size_mib: int, small_files: int, small_kib: int) -> Path:
    """`folder/Bench Game`: data/big.bin (random bytes), small/NNNN.dat, start.sh."""
    game = folder / GAME_NAME
    (game / "data").mkdir(parents=True)
    (game / "small").mkdir()
    launcher = game / "start.sh"
    launcher.write_text('#!/bin/sh\necho "benchmark game"\n')
    launcher.chmod(0o755)
    block = 16 * MiB
    remaining = size_mib * MiB
    with open(game / "data" / "big.bin", "wb") as handle:
        while remaining > 0:
            count = min(block, remaining)
            handle.write(os.urandom(count))
            remaining -= count
    for index in range(small_files):
        (game / "small" / f"{index:04d}.dat").write_bytes(os.urandom(small_kib * KiB))
    return game


def game_files(game: Path) -> list[Path]:
    return sorted(path for path in game.rglob("*") if path.is_file())


def warm_up(game: Path) -> None:
    """Flush dirty pages, then read every source file once so both tools read from the page cache."""
    os.sync()
    buffer = bytearray(8 * MiB)
    for path in game_files(game):
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def same_tree(source: Path, copy: Path) -> str | None:
    """Cheap check that `copy` holds every file of `source` with its size; None when it does."""
    for path in game_files(source):
        other = copy / path.relative_to(source)
        try:
            if other.stat().st_size != path.stat().st_size:
                return f"{other} has the wrong size"
        except OSError:
            return f"{other} is missing"
    return None


# --- sshd and rsync ---------------------------------------------------------------------------


def ensure_rsync_tools() -> str | None:
    """Install openssh-server, openssh-client and rsync with apt-get when missing; an error text or None."""
    missing = [
        package
        for package, present in (
            ("openssh-server", SSHD.exists()),
            ("openssh-client", shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None),
            ("rsync", shutil.which("rsync") is not None),
        )
        if not present
    ]
    if not missing:
        return None
    if shutil.which("apt-get") is None:
        return f"missing {', '.join(missing)} and no apt-get to install them"
    say(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [*root_prefix(), "apt-get", "update", "-qq"],
        [*root_prefix(), "apt-get", "install", "-y", "-qq", *missing],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr.strip()[-400:]}"
    return None


class Sshd:
    """A private sshd on a loopback port: own config, host key, authorized key and pid file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.user = getpass.getuser()
        self.key = folder / "client_key"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "sshd.log"

    def start(self) -> None:
        folder = self.folder
        folder.mkdir(mode=0o700)
        for key in (folder / "host_key", self.key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "capydeploy-bench", "-f", str(key)],
                check=True, timeout=30,
            )
        authorized = folder / "authorized_keys"
        shutil.copyfile(self.key.with_suffix(".pub"), authorized)
        authorized.chmod(0o600)
        self.port = free_port()
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {folder / 'host_key'}",
                    f"AuthorizedKeysFile {authorized}",
                    f"PidFile {folder / 'sshd.pid'}",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",  # the throwaway files live under /tmp, which is world-writable
                    "PrintMotd no",
                    "",
                ]
            )
        )
        with contextlib.suppress(OSError):
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation needs it
        log = self.log.open("wb")
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        if not wait_for_port(self.port, 10):
            self.stop()
            raise RuntimeError(f"sshd did not start: {self.log.read_text(errors='replace')[-400:]}")

    def ssh_command(self) -> list[str]:
        return [
            "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
        ]

    def negotiated(self) -> str:
        """The cipher (and key exchange) a default `ssh` negotiates with this sshd, from `ssh -v`."""
        command = [*self.ssh_command(), "-v", "-o", "LogLevel=DEBUG1", f"{self.user}@127.0.0.1", "true"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        cipher = re.search(r"kex: client->server cipher: (\S+) MAC: (\S+)", result.stderr)
        kex = re.search(r"kex: algorithm: (\S+)", result.stderr)
        if cipher is None:
            return "unknown"
        mac = "" if cipher.group(2) == "<implicit>" else f", MAC {cipher.group(2)}"
        return f"{cipher.group(1)}{mac}" + (f" (kex {kex.group(1)})" if kex else "")

    def rsync(self, source: Path, dest: Path, extra: tuple[str, ...] = ()) -> float:
        """`rsync -a` SOURCE/ to user@127.0.0.1:DEST/ over this sshd; the wall-clock seconds."""
        command = [
            "rsync", "-a", *extra, "-e", " ".join(self.ssh_command()),
            f"{source}/", f"{self.user}@127.0.0.1:{dest}/",
        ]
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(f"rsync failed ({result.returncode}): {result.stderr.strip()[-400:]}")
        return seconds

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --- the Agent --------------------------------------------------------------------------------


class AgentProcess:
    """The standalone Agent under the lag probe, in its own sandbox (fake Steam root, install folder)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.home = folder / "deck-home"
        self.steam = self.home / ".local/share/Steam"
        self.games = self.home / "Games"
        self.data = folder / "agent-data"
        self.lag_file = folder / "agent-lag.bin"
        self.log = folder / "agent.log"
        self.address = ""
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()

    def start(self) -> None:
        (self.steam / "userdata" / str(STEAM_ACCOUNT) / "config").mkdir(parents=True)
        (self.steam / "config").mkdir(parents=True)
        (self.steam / "config" / "loginusers.vdf").write_text(
            '"users"\n{\n\t"76561198012345678"\n\t{\n\t\t"AccountName"\t\t"capy"\n'
            '\t\t"PersonaName"\t\t"Bench"\n\t\t"MostRecent"\t\t"1"\n\t}\n}\n'
        )
        self.games.mkdir()
        log = self.log.open("w")
        self.process = subprocess.Popen(
            [
                PYTHON, str(PROBE), "--host", "127.0.0.1", "--port", "0", "--data-dir", str(self.data),
                "--install-dir", str(self.games), "--steam-root", str(self.steam), "--name", "Bench Deck",
                "--no-mdns",
            ],
            stdout=subprocess.PIPE, stderr=log, text=True,
            env=product_env(
                HOME=str(self.home), CAPYDEPLOY_BENCH_LAG_FILE=str(self.lag_file), CAPYDEPLOY_BENCH_THREAD_NAMES="1"
            ),
        )
        log.close()
        threading.Thread(target=self._drain, daemon=True).start()
        line = self.wait_line(r"ws://127\.0\.0\.1:(\d+)/ws", 30)
        self.address = f"127.0.0.1:{line.group(1)}"

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the agent did not print {pattern!r}; see {self.log}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            match = re.search(pattern, line)
            if match:
                return match

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def memory_kib(self, key: str = "VmHWM") -> int | None:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def lag_samples(self) -> list[tuple[float, float]]:
        try:
            raw = array("d")
            raw.frombytes(self.lag_file.read_bytes())
        except (OSError, ValueError):
            return []
        if sys.byteorder != "little":
            raw.byteswap()
        return list(zip(raw[0::2], raw[1::2], strict=True))


# --- the Hub ----------------------------------------------------------------------------------


def hub_command(config_dir: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "capydeploy.hub.cli", "--config-dir", str(config_dir), *args]


def pair(agent: AgentProcess, config_dir: Path) -> None:
    pairing = subprocess.Popen(
        hub_command(config_dir, "pair", agent.address),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=product_env(),
    )
    code = agent.wait_line(r"Pairing code: (\d{6})", 60).group(1)
    out, err = pairing.communicate(code + "\n", timeout=60)
    if pairing.returncode != 0:
        raise RuntimeError(f"pairing failed: {err.strip() or out.strip()}")


def cli_deploy(config_dir: Path, game: Path, address: str, log: Path) -> tuple[float, dict[str, Any]]:
    """`capydeploy-hub --json deploy GAME --agent ADDRESS --no-shortcut`: (wall seconds, its result)."""
    command = hub_command(config_dir, "--json", "deploy", str(game), "--agent", address, "--no-shortcut")
    with log.open("a") as errors:
        started = time.monotonic()
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, timeout=3600, check=False, env=product_env()
        )
        seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"capydeploy-hub deploy failed ({result.returncode}); see {log}")
    outcome = json.loads(result.stdout)[address]
    if "error" in outcome:
        raise RuntimeError(f"deploy failed: {outcome['error']}")
    return seconds, outcome


async def _remove_game(config_dir: Path, address: str, game_name: str) -> None:
    from capydeploy.hub.client import HubClient  # noqa: PLC0415 - only the bench process needs the library
    from capydeploy.hub.errors import AgentError  # noqa: PLC0415
    from capydeploy.protocol import messages as m  # noqa: PLC0415

    async with HubClient(address, config_dir=config_dir) as client:
        with contextlib.suppress(AgentError):  # 404: not installed
            await client.delete_game(m.DeleteGame(game_name=game_name))


def remove_game(config_dir: Path, address: str, game_name: str) -> None:
    asyncio.run(_remove_game(config_dir, address, game_name))


@dataclass
class ResumeOutcome:
    cut_at_bytes: int
    cut_fraction: float
    bytes_sent: int
    total_bytes: int
    resent: int
    resumes: int
    seconds: float


async def _resume_run(config_dir: Path, game: Path, address: str, cut_fraction: float) -> ResumeOutcome:
    from capydeploy.hub.client import HubClient  # noqa: PLC0415
    from capydeploy.hub.deploy import DeployOptions  # noqa: PLC0415
    from capydeploy.protocol import messages as m  # noqa: PLC0415

    cut: list[int] = []
    total = sum(path.stat().st_size for path in game_files(game))
    client = HubClient(address, config_dir=config_dir)
    await client.connect()
    send_chunk = client.send_chunk
    sent = 0

    async def send_and_cut(header: m.ChunkHeader, data: bytes | memoryview) -> asyncio.Future[m.UploadChunkResponse]:
        """The client's own send_chunk; once `cut_fraction` of the game has been sent, drop the socket."""
        nonlocal sent
        ack = await send_chunk(header, data)
        sent += len(data)
        ws = client._ws  # the bench cuts the connection under the client, as a network drop would
        if not cut and sent >= cut_fraction * total and ws is not None:
            cut.append(sent)
            ws.transport.abort()
        return ack

    client.send_chunk = send_and_cut  # type: ignore[method-assign]
    try:
        options = DeployOptions(game_name=RESUME_GAME_NAME, create_shortcut=False)
        result = await client.deploy(game, options)
    finally:
        await client.close()
    cut_at = cut[0] if cut else 0
    return ResumeOutcome(
        cut_at_bytes=cut_at,
        cut_fraction=cut_at / result.total_bytes if result.total_bytes else 0.0,
        bytes_sent=result.bytes_sent,
        total_bytes=result.total_bytes,
        # The resume game is new to the Agent: every byte beyond the game's size was sent twice.
        resent=result.bytes_sent - result.total_bytes,
        resumes=result.resumes,
        seconds=result.seconds,
    )


# --- phases, lag and memory -------------------------------------------------------------------


@dataclass
class Phase:
    kind: str  # full, unchanged, resume
    start: float
    end: float
    peak_kib: int | None
    agent_cpu: dict[str, float] = field(default_factory=dict)  # by thread group
    hub_user: float = 0.0
    hub_sys: float = 0.0
    others_cpu: float = 0.0  # CPU seconds used on the machine by everything else meanwhile


@dataclass
class Results:
    machine: dict[str, str]
    command: str
    game_bytes: int
    game_files: int
    filesystem: str = ""
    cipher: str = ""
    rsync_error: str | None = None
    rsync_full: list[float] = field(default_factory=list)
    rsync_unchanged: list[float] = field(default_factory=list)
    rsync_fsync: list[float] = field(default_factory=list)
    our_full: list[float] = field(default_factory=list)
    our_full_transfer: list[float] = field(default_factory=list)  # DeployResult.seconds (after hashing)
    our_unchanged: list[float] = field(default_factory=list)
    our_unchanged_transfer: list[float] = field(default_factory=list)
    unchanged_bytes_sent: list[int] = field(default_factory=list)
    resume: ResumeOutcome | None = None
    phases: list[Phase] = field(default_factory=list)
    startup_peak_kib: int | None = None
    final_peak_kib: int | None = None
    peak_reset_works: bool = True
    lag: dict[str, dict[str, float]] = field(default_factory=dict)
    busy_before: float = 0.0
    busy_after: float = 0.0


@contextlib.contextmanager
def phase(results: Results, agent: AgentProcess, kind: str) -> Iterator[None]:
    reset = agent.reset_peak()
    results.peak_reset_works = results.peak_reset_works and reset
    threads, (user, sys_), busy = thread_cpu(agent.pid), own_cpu(), system_busy()
    start = time.monotonic()
    try:
        yield
    finally:
        end = time.monotonic()
        busy_used = system_busy() - busy
        user_after, sys_after = own_cpu()
        agent_cpu: dict[str, float] = {}
        for tid, (group, seconds) in thread_cpu(agent.pid).items():
            used = seconds - threads.get(tid, (group, 0.0))[1]
            agent_cpu[group] = agent_cpu.get(group, 0.0) + used
        hub_user, hub_sys = user_after - user, sys_after - sys_
        others = max(0.0, busy_used - sum(agent_cpu.values()) - hub_user - hub_sys)
        results.phases.append(
            Phase(kind, start, end, agent.memory_kib("VmHWM"), agent_cpu, hub_user, hub_sys, others)
        )


def lag_stats(samples: list[tuple[float, float]], windows: list[tuple[float, float]]) -> dict[str, float]:
    chosen = [lag for at, lag in samples if any(start <= at <= end for start, end in windows)]
    # A wake-up that ends inside a window but slept across its start still counts: it is in `chosen`.
    if not chosen:
        return {"samples": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    return {
        "samples": len(chosen),
        "p50": percentile(chosen, 0.50),
        "p99": percentile(chosen, 0.99),
        "max": max(chosen),
    }


# --- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path, results: Results) -> None:
    results.busy_before = machine_busy()
    say(f"work folder {work} ({results.filesystem}); machine {results.busy_before:.0%} busy before the run")
    say(f"generating the test game: {args.size_mib} MiB + {args.small_files} x {args.small_kib} KiB")
    game = make_game(work / "pc", args.size_mib, args.small_files, args.small_kib)
    results.game_bytes = sum(path.stat().st_size for path in game_files(game))
    results.game_files = len(game_files(game))

    sshd: Sshd | None = None
    agent = AgentProcess(work / "agent")
    hub_config = work / "hub-config"
    hub_log = work / "hub.log"
    rsync_dest = work / "rsync-dest"
    try:
        if not args.no_rsync:
            results.rsync_error = ensure_rsync_tools()
            if results.rsync_error is None:
                sshd = Sshd(work / "sshd")
                try:
                    sshd.start()
                    results.cipher = sshd.negotiated()
                    say(f"sshd on 127.0.0.1:{sshd.port}, cipher {results.cipher}")
                except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                    results.rsync_error = f"sshd: {error}"
                    sshd = None
        else:
            results.rsync_error = "skipped (--no-rsync)"

        agent.start()
        results.startup_peak_kib = agent.memory_kib("VmHWM")
        pair(agent, hub_config)
        say(f"agent pid {agent.pid} on {agent.address}, paired")

        for repeat in range(1, args.repeat + 1):
            if sshd is not None:
                shutil.rmtree(rsync_dest, ignore_errors=True)
                warm_up(game)
                results.rsync_full.append(sshd.rsync(game, rsync_dest))
                if problem := same_tree(game, rsync_dest):
                    raise RuntimeError(f"rsync copy incomplete: {problem}")
                warm_up(game)
                results.rsync_unchanged.append(sshd.rsync(game, rsync_dest))
                say(
                    f"[{repeat}/{args.repeat}] rsync: full {results.rsync_full[-1]:.2f} s, "
                    f"unchanged {results.rsync_unchanged[-1]:.2f} s"
                )

            remove_game(hub_config, agent.address, GAME_NAME)
            (hub_config / "hash-cache.json").unlink(missing_ok=True)  # a first deploy hashes the game
            warm_up(game)
            with phase(results, agent, "full"):
                seconds, outcome = cli_deploy(hub_config, game, agent.address, hub_log)
            results.our_full.append(seconds)
            results.our_full_transfer.append(float(outcome["seconds"]))
            if problem := same_tree(game, agent.games / GAME_NAME):
                raise RuntimeError(f"deployed game incomplete: {problem}")
            warm_up(game)
            with phase(results, agent, "unchanged"):
                seconds, outcome = cli_deploy(hub_config, game, agent.address, hub_log)
            results.our_unchanged.append(seconds)
            results.our_unchanged_transfer.append(float(outcome["seconds"]))
            results.unchanged_bytes_sent.append(int(outcome["bytes_sent"]))
            say(
                f"[{repeat}/{args.repeat}] capydeploy: full {results.our_full[-1]:.2f} s, "
                f"unchanged {results.our_unchanged[-1]:.2f} s"
            )

        # Resume: a new game name, so nothing is carried from the installed copy.
        shutil.rmtree(rsync_dest, ignore_errors=True)
        warm_up(game)
        with phase(results, agent, "resume"):
            results.resume = asyncio.run(_resume_run(hub_config, game, agent.address, args.cut_at))
        if problem := same_tree(game, agent.games / RESUME_GAME_NAME):
            raise RuntimeError(f"resumed game incomplete: {problem}")
        say(
            f"resume: cut after {mib(results.resume.cut_at_bytes)} sent, {results.resume.resumes} resume(s), "
            f"{mib(results.resume.resent)} sent again"
        )
        remove_game(hub_config, agent.address, RESUME_GAME_NAME)

        if sshd is not None and args.rsync_fsync:
            # Context only: our Agent fsyncs every file before it installs; plain rsync does not.
            shutil.rmtree(rsync_dest, ignore_errors=True)
            warm_up(game)
            results.rsync_fsync.append(sshd.rsync(game, rsync_dest, ("--fsync",)))
            say(f"rsync --fsync: full {results.rsync_fsync[-1]:.2f} s")
            shutil.rmtree(rsync_dest, ignore_errors=True)
        results.final_peak_kib = agent.memory_kib("VmHWM")
        results.busy_after = machine_busy()
    finally:
        agent.stop()
        if sshd is not None:
            sshd.stop()

    samples = agent.lag_samples()
    kinds = ("full", "unchanged", "resume")
    for kind in kinds:
        results.lag[kind] = lag_stats(samples, [(p.start, p.end) for p in results.phases if p.kind == kind])
    results.lag["all deploys"] = lag_stats(samples, [(p.start, p.end) for p in results.phases])
    results.lag["whole run"] = lag_stats(samples, [(-math.inf, math.inf)])


# --- the report -------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "PASS" if ok else "MISS <<<"


def report(results: Results, args: argparse.Namespace) -> list[str]:
    """The table and the details; returns the names of the missed targets."""
    size = results.game_bytes
    missed: list[str] = []
    full = statistics.median(results.our_full)
    ours_rate = size / full / MiB
    rsync_full = statistics.median(results.rsync_full) if results.rsync_full else None
    rsync_rate = size / rsync_full / MiB if rsync_full else None
    ratio = ours_rate / rsync_rate if rsync_rate else None
    unchanged = statistics.median(results.our_unchanged)
    rsync_unchanged = statistics.median(results.rsync_unchanged) if results.rsync_unchanged else None
    resume = results.resume
    peaks = [p.peak_kib for p in results.phases if p.peak_kib is not None]
    peaks += [k for k in (results.startup_peak_kib, results.final_peak_kib) if k is not None]
    peak = max(peaks) * KiB if peaks else None
    lag = results.lag["all deploys"]

    rows: list[tuple[str, str, str, str, bool | None]] = []
    rows.append((
        "1 full deploy",
        f"{ours_rate:.0f} MiB/s ({full:.2f} s)",
        f"{rsync_rate:.0f} MiB/s ({rsync_full:.2f} s)" if rsync_rate and rsync_full else "n/a",
        f">= {TARGET_RATIO:.1f}x rsync: {ratio:.2f}x" if ratio else f">= {TARGET_RATIO:.1f}x rsync",
        ratio >= TARGET_RATIO if ratio else None,
    ))
    rows.append((
        "2 unchanged redeploy",
        f"{unchanged:.2f} s",
        f"{rsync_unchanged:.2f} s" if rsync_unchanged is not None else "n/a",
        "<= rsync's time",
        unchanged <= rsync_unchanged if rsync_unchanged is not None else None,
    ))
    rows.append((
        "3 sent again after a cut",
        f"{mib(resume.resent)} ({resume.resumes} resume)" if resume else "n/a",
        "",
        f"<= {mib(TARGET_RESENT)}",
        resume.resent <= TARGET_RESENT if resume and resume.resumes >= 1 else None,
    ))
    rows.append((
        "4 Agent peak memory",
        mib(peak) if peak is not None else "n/a",
        "",
        f"<= {mib(TARGET_MEMORY)}",
        peak <= TARGET_MEMORY if peak is not None else None,
    ))
    rows.append((
        "5 Agent loop lag p99",
        f"{lag['p99'] * 1000:.1f} ms",
        "",
        f"<= {TARGET_LAG_P99 * 1000:.0f} ms",
        lag["p99"] <= TARGET_LAG_P99 if lag["samples"] else None,
    ))
    rows.append((
        "5 Agent loop lag max",
        f"{lag['max'] * 1000:.1f} ms",
        "",
        f"<= {TARGET_LAG_MAX * 1000:.0f} ms",
        lag["max"] <= TARGET_LAG_MAX if lag["samples"] else None,
    ))
    header = ("measure", "CapyDeploy", "rsync over SSH", "target", "result")
    table = [header, *[(a, b, c, d, verdict(e)) for a, b, c, d, e in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    rule = "-+-".join("-" * width for width in widths)

    say()
    say("=" * len(rule))
    say(
        f"CapyDeploy benchmark: {mib(size)} in {results.game_files} files "
        f"({args.size_mib} MiB + {args.small_files} x {args.small_kib} KiB), loopback, median of {args.repeat}"
    )
    say("=" * len(rule))
    for index, row in enumerate(table):
        say(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            say(rule)
    say("=" * len(rule))
    for name, _, _, _, ok in rows:
        if ok is False:
            missed.append(name)

    say()
    say("details")
    say(f"  machine      {results.machine['cpu']}, {results.machine['cores']} cores ({results.machine['cpu_flags']}), "
        f"{results.machine['ram']} RAM, kernel {results.machine['kernel']}, Python {results.machine['python']}, "
        f"{results.machine['os']}")
    say(f"  tools        {results.machine.get('rsync', '?')}; {results.machine.get('ssh', '?')}")
    say(f"  filesystem   {results.filesystem}")
    say(f"  other load   machine {results.busy_before:.0%} busy before the run, {results.busy_after:.0%} after it")
    if results.rsync_error:
        say(f"  rsync        not measured: {results.rsync_error}")
    else:
        say(f"  ssh cipher   {results.cipher}")
    say(f"  command      {results.command}")
    say("  runs (s)     " + "; ".join(
        f"{name} {' '.join(f'{v:.2f}' for v in values)}"
        for name, values in (
            ("ours full", results.our_full),
            ("(transfer+install part)", results.our_full_transfer),
            ("rsync full", results.rsync_full),
            ("ours unchanged", results.our_unchanged),
            ("(deploy part)", results.our_unchanged_transfer),
            ("rsync unchanged", results.rsync_unchanged),
        )
        if values
    ))
    if results.unchanged_bytes_sent:
        say(f"  unchanged    bytes sent by our redeploy: {', '.join(str(b) for b in results.unchanged_bytes_sent)}")
    if results.rsync_fsync:
        rate = size / results.rsync_fsync[0] / MiB
        say(f"  rsync --fsync (context; our Agent fsyncs before installing): {results.rsync_fsync[0]:.2f} s, {rate:.0f} MiB/s")
    if resume is not None:
        say(
            f"  resume       cut after {mib(resume.cut_at_bytes)} sent ({resume.cut_fraction:.0%}), {resume.resumes} resume(s), "
            f"{resume.bytes_sent} bytes sent for a {resume.total_bytes}-byte game: {resume.resent} bytes sent again, "
            f"{resume.seconds:.2f} s"
        )
    memory = ", ".join(
        f"{kind} {max(p.peak_kib for p in results.phases if p.kind == kind and p.peak_kib is not None) / 1024:.1f}"
        for kind in ("full", "unchanged", "resume")
        if any(p.kind == kind and p.peak_kib is not None for p in results.phases)
    )
    if results.startup_peak_kib is not None:
        memory = f"start-up {results.startup_peak_kib / 1024:.1f}, " + memory
    note = "" if results.peak_reset_works else " (VmHWM could not be reset: each figure is the peak so far)"
    say(f"  memory MiB   VmHWM per phase: {memory}{note}")
    cores = os.cpu_count() or 1
    for kind in ("full", "unchanged", "resume"):
        chosen = [p for p in results.phases if p.kind == kind]
        if not chosen:
            continue
        count = len(chosen)
        groups: dict[str, float] = {}
        for p in chosen:
            for group, seconds in p.agent_cpu.items():
                groups[group] = groups.get(group, 0.0) + seconds / count
        agent_total = sum(groups.values())
        hub_user = sum(p.hub_user for p in chosen) / count
        hub_sys = sum(p.hub_sys for p in chosen) / count
        others = sum(p.others_cpu for p in chosen) / count
        wall = sum(p.end - p.start for p in chosen) / count
        split = ", ".join(f"{group} {seconds:.2f}" for group, seconds in sorted(groups.items()) if seconds >= 0.005)
        say(
            f"  cpu {kind:<12} Hub {hub_user + hub_sys:.2f} s (user {hub_user:.2f}, sys {hub_sys:.2f}); "
            f"Agent {agent_total:.2f} s ({split}); everything else {others:.2f} s "
            f"({others / (wall * cores):.0%} of the machine) over {wall:.2f} s"
        )
    for kind, stats in results.lag.items():
        if stats["samples"]:
            say(
                f"  lag {kind:<12} {int(stats['samples'])} ticks of 10 ms: p50 {stats['p50'] * 1000:.2f} ms, "
                f"p99 {stats['p99'] * 1000:.2f} ms, max {stats['max'] * 1000:.2f} ms"
            )
    say()
    unmeasured = [name for name, _, _, _, ok in rows if ok is None]
    if missed:
        say(f"MISS: {len(missed)} target(s) missed: {', '.join(missed)}")
    else:
        say("every measured target met")
    if unmeasured:
        say(f"not measured: {', '.join(unmeasured)}")
    return missed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the big file (default 1024)")
    parser.add_argument("--small-files", type=int, default=200, help="number of small files (default 200)")
    parser.add_argument("--small-kib", type=int, default=50, help="size of each small file (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="full and unchanged runs of each tool; the median is shown (default 3)")
    parser.add_argument("--cut-at", type=float, default=0.5, help="fraction of the bytes at which the resume run is cut (default 0.5)")
    parser.add_argument("--no-rsync", action="store_true", help="skip the rsync baseline")
    parser.add_argument("--no-rsync-fsync", dest="rsync_fsync", action="store_false",
                        help="skip the extra `rsync --fsync` run shown for context")
    parser.add_argument("--nice", type=int, default=0,
                        help="change the bench's priority first (e.g. -10 on a shared machine; negative needs root); "
                        "rsync, ssh, sshd, the Hub and the Agent all inherit it. With autogroup scheduling the "
                        "bench's autogroup gets the same nice value, or other sessions would still get an equal share")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary folder goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, game, copies)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.small_files < 0 or args.small_kib < 0 or args.repeat < 1 or not 0 < args.cut_at < 1:
        parser.error("sizes and counts must be positive, --cut-at between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nice:
        try:
            os.nice(args.nice)
        except OSError as error:
            say(f"bench: cannot change the priority by {args.nice}: {error}")
            return 1
        with contextlib.suppress(OSError):  # Linux with CONFIG_SCHED_AUTOGROUP
            Path("/proc/self/autogroup").write_text(str(args.nice))
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    results = Results(
        machine=machine_info(),
        command=f"make bench{f' BENCH_ARGS={shown!r}' if shown else ''}  (= .venv/bin/python scripts/bench.py {shown})".rstrip(),
        game_bytes=0,
        game_files=0,
    )
    parent = args.workdir or Path(tempfile.gettempdir())
    need = (args.size_mib * MiB + args.small_files * args.small_kib * KiB) * 4 + 512 * MiB
    free = shutil.disk_usage(parent).free
    if free < need:
        say(f"bench: {mib(free)} free in {parent}, {mib(need)} needed (source, rsync copy, installed, resumed)")
        return 1
    work = Path(tempfile.mkdtemp(prefix="capydeploy-bench-", dir=parent))
    results.filesystem = filesystem_of(work)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # clean up when stopped, as on Ctrl-C
    try:
        run(args, work, results)
        missed = report(results, args)
        if args.json_out is not None:
            payload = asdict(results)
            payload["missed"] = missed
            args.json_out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    except KeyboardInterrupt:
        say("bench: interrupted")
        return 130
    except RuntimeError as error:
        say(f"bench: {error}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
