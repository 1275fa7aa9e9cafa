"""The two command lines as a user runs them: a real agent process, the hub CLI through a pipe."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PYTHON = sys.executable


class AgentProcess:
    def __init__(self, tmp_path: Path) -> None:
        home = tmp_path / "home"
        (home / "Games").mkdir(parents=True)
        (home / ".local/share/Steam/userdata/52079950/config").mkdir(parents=True)
        self.proc = subprocess.Popen(
            [
                PYTHON, "-m", "capydeploy.agent.cli", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(tmp_path / "agent-data"), "--install-dir", str(home / "Games"),
                "--steam-root", str(home / ".local/share/Steam"), "--name", "CLI Deck", "--no-mdns",
            ],
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "agent.log").open("w"),
            text=True,
            env={**os.environ, "HOME": str(home)},
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        match = re.fullmatch(r"Listening on ws://127\.0\.0\.1:(\d+)/ws\n", first)
        assert match, f"unexpected first line {first!r}"
        self.port = int(match.group(1))

    def read_line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)  # a hang guard, not a timing assertion
        return code, time.monotonic() - started


@pytest.fixture
def agent_process(tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path)
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def hub(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "capydeploy.hub.cli", "--config-dir", str(tmp_path / "hub"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_pair_through_a_pipe_then_info(agent_process: AgentProcess, tmp_path: Path) -> None:
    pairing = hub(tmp_path, "pair", f"127.0.0.1:{agent_process.port}")
    line = agent_process.read_line()
    match = re.fullmatch(r"Pairing code: (\d{6}) \(expires in 60 s\)\n", line)
    assert match, line
    out, err = pairing.communicate(match.group(1) + "\n", timeout=60)
    assert pairing.returncode == 0, err
    assert "Pairing code:" in out and "Paired with CLI Deck" in out

    info = hub(tmp_path, "--json", "info", f"ws://127.0.0.1:{agent_process.port}/ws")
    out, err = info.communicate(timeout=60)
    assert info.returncode == 0, err
    data = json.loads(out)
    assert data["agent"]["name"] == "CLI Deck"
    assert data["agent"]["id"].startswith("agent-")

    config = hub(tmp_path, "config", f"127.0.0.1:{agent_process.port}")
    out, _ = config.communicate(timeout=60)
    assert config.returncode == 0 and "install path:" in out

    code, _elapsed = agent_process.stop()
    assert code == 0


def test_wrong_code_fails_with_one_line_error(agent_process: AgentProcess, tmp_path: Path) -> None:
    pairing = hub(tmp_path, "pair", f"127.0.0.1:{agent_process.port}")
    agent_process.read_line()
    _, err = pairing.communicate("000000x\n", timeout=60)
    assert pairing.returncode != 0
    assert err.strip().count("\n") == 0 and "pairing failed" in err


def test_unpaired_info_fails_and_unreachable_agent_fails(agent_process: AgentProcess, tmp_path: Path) -> None:
    info = hub(tmp_path, "info", f"127.0.0.1:{agent_process.port}")
    _, err = info.communicate(timeout=60)
    assert info.returncode == 1 and "pairing required" in err
    agent_process.stop()
    gone = hub(tmp_path, "info", f"127.0.0.1:{agent_process.port}")
    _, err = gone.communicate(timeout=60)
    assert gone.returncode == 3 and "cannot connect" in err


def test_sigint_stops_agent(agent_process: AgentProcess) -> None:
    agent_process.proc.send_signal(signal.SIGINT)
    assert agent_process.proc.wait(timeout=60) == 0
