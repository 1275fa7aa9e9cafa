"""A device sandbox (home, Steam root, install folder) and the standalone Agent as a real process."""

from __future__ import annotations

import asyncio
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable
STEAM_ACCOUNT = 52079950
MiB = 1024 * 1024
LISTENING = re.compile(r"Listening on ws://127\.0\.0\.1:(\d+)/ws")
PAIRING = re.compile(r"Pairing code: (\d{6})")


@dataclass(frozen=True)
class DeviceHome:
    """The folders a Steam Deck would have, inside a test folder."""

    home: Path
    steam_root: Path
    install_dir: Path
    data_dir: Path

    @property
    def user_config(self) -> Path:
        return self.steam_root / "userdata" / str(STEAM_ACCOUNT) / "config"

    @property
    def shortcuts_vdf(self) -> Path:
        return self.user_config / "shortcuts.vdf"

    @classmethod
    def create(cls, root: Path, install_dir: Path | None = None) -> DeviceHome:
        home = root / "home"
        steam = home / ".local/share/Steam"
        device = cls(
            home=home,
            steam_root=steam,
            install_dir=install_dir or home / "Games",
            data_dir=root / "agent-data",
        )
        device.user_config.mkdir(parents=True, exist_ok=True)
        device.install_dir.mkdir(parents=True, exist_ok=True)
        return device


class AgentProcess:
    """`python -m capydeploy.agent.cli` (or a wrapper script taking the same arguments) on loopback."""

    def __init__(
        self,
        device: DeviceHome,
        log_path: Path,
        *,
        name: str = "Reliability Deck",
        wrapper: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.device = device
        self.log_path = log_path
        self.name = name
        self.wrapper = wrapper
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _command(self, port: int) -> list[str]:
        head = [PYTHON, str(self.wrapper)] if self.wrapper is not None else [PYTHON, "-m", "capydeploy.agent.cli"]
        d = self.device
        return [
            *head, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(d.data_dir),
            "--install-dir", str(d.install_dir), "--steam-root", str(d.steam_root), "--name", self.name,
            "--no-mdns", "--log-level", "info",
        ]

    def start(self, port: int | None = None, timeout: float = 60.0) -> int:
        """Start the Agent (on its previous port unless told otherwise) and wait for `Listening on`."""
        wanted = self.port if port is None else port
        last = ""
        for _attempt in range(20):
            self._lines = queue.Queue()
            with self.log_path.open("a") as log:
                log.write(f"--- start {self.starts + 1} on port {wanted}\n")
            self.proc = subprocess.Popen(
                self._command(wanted),
                stdout=subprocess.PIPE,
                stderr=self.log_path.open("a"),
                text=True,
                env={**os.environ, "HOME": str(self.device.home), **self.env},
            )
            threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
            line = self.wait_line(LISTENING, timeout)
            if line is not None:
                match = LISTENING.search(line)
                assert match is not None
                self.port = int(match.group(1))
                self.starts += 1
                return self.port
            self.proc.wait(timeout=30)
            last = f"exit code {self.proc.returncode}"
            time.sleep(0.2)  # the port may still be held for an instant after a SIGKILL
        raise RuntimeError(f"the agent did not start on port {wanted} ({last}); see {self.log_path}")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        lines = self._lines
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> str | None:
        """The next stdout line matching `pattern` (others are skipped); None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if pattern.search(line):
                return line

    async def pairing_code(self, timeout: float = 60.0) -> str:
        """What the user reads on the device's screen (the agent's terminal)."""
        line = await asyncio.to_thread(self.wait_line, PAIRING, timeout)
        if line is None:
            raise RuntimeError("the agent showed no pairing code")
        match = PAIRING.search(line)
        assert match is not None
        return match.group(1)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the Agent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=60)

    def terminate(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)
        return self.proc.returncode

    # --- memory (Linux /proc) ------------------------------------------------------------------

    def _status_kib(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def vm_hwm(self) -> int:
        """Peak resident memory in bytes since start or the last `reset_peak`."""
        return self._status_kib("VmHWM")

    def vm_rss(self) -> int:
        return self._status_kib("VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time the Agent process used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (write 5 to clear_refs); False where not allowed."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
                refs.write("5")
        except OSError:
            return False
        return True


# --- the machine ---------------------------------------------------------------------------------


def machine_description() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count() or 0),
        "ram": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def describe_machine() -> str:
    m = machine_description()
    return f"{m['cpu']}, {m['cores']} cores, {m['ram']} RAM, Linux {m['kernel']}, Python {m['python']}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews the figures."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, all cores (from /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user/nice
    return (sum(fields) - guest - idle - steal) / ticks, steal / ticks


# --- a small tmpfs, where mounting is allowed ------------------------------------------------------


def mount_tmpfs(folder: Path, size_mib: int) -> str | None:
    """Mount a tmpfs of `size_mib` at `folder`; None when done, else why it could not be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode != 0:
        return (result.stderr or result.stdout).strip() or f"mount exited with {result.returncode}"
    return None


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30, check=False)
