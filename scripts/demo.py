"""`make demo`: a standalone Agent in a sandbox, a Hub paired with the code it shows, a sample game deployed.

Everything runs on loopback in a temporary folder: a fake Steam root with one user, an install
folder, a hub config folder and a generated game. The Agent and the Hub are the real command
lines, run as separate processes, the way a user would run them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

PYTHON = sys.executable
STEAM_ACCOUNT = 52079950


def title(text: str) -> None:
    print(f"\n== {text}", flush=True)


def make_sandbox(root: Path) -> dict[str, Path]:
    home = root / "deck-home"
    steam = home / ".local/share/Steam"
    (steam / "userdata" / str(STEAM_ACCOUNT) / "config").mkdir(parents=True)
    (steam / "config").mkdir(parents=True)
    (steam / "config" / "loginusers.vdf").write_text(
        '"users"\n{\n\t"76561198012345678"\n\t{\n\t\t"AccountName"\t\t"capy"\n'
        '\t\t"PersonaName"\t\t"Demo Player"\n\t\t"MostRecent"\t\t"1"\n\t}\n}\n'
    )
    games = home / "Games"
    games.mkdir()
    return {"home": home, "steam": steam, "games": games, "hub": root / "pc-hub-config", "agent": root / "agent-data"}


def make_sample_game(folder: Path) -> Path:
    """Several files, one in a sub-folder, an executable."""
    game = folder / "Capy Quest"
    (game / "data" / "levels").mkdir(parents=True)
    launcher = game / "capyquest.sh"
    launcher.write_text('#!/bin/sh\necho "Capy Quest is running!"\n')
    launcher.chmod(0o755)
    (game / "README.txt").write_text("Capy Quest: a tiny demo game for CapyDeploy.\n")
    (game / "data" / "levels" / "level1.dat").write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    (game / "data" / "music.ogg").write_bytes(os.urandom(1024 * 1024))
    (game / "data" / "empty.cfg").write_bytes(b"")
    return game


def hub(paths: dict[str, Path], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [PYTHON, "-m", "capydeploy.hub.cli", "--config-dir", str(paths["hub"]), *args]
    print("$ capydeploy-hub " + " ".join(f'"{a}"' if " " in a else a for a in command[5:]), flush=True)
    result = subprocess.run(
        command, input=stdin, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, check=False
    )
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        raise SystemExit(f"demo: capydeploy-hub {args[0]} failed ({result.returncode})")
    return result


def main() -> int:
    sandbox = Path(tempfile.mkdtemp(prefix="capydeploy-demo-"))
    paths = make_sandbox(sandbox)
    title(f"Sandbox: {sandbox}")
    print(f"device home {paths['home']} (Steam user {STEAM_ACCOUNT}, install folder {paths['games']})")

    title("Starting the Agent (standalone, loopback)")
    agent = subprocess.Popen(
        [
            PYTHON, "-m", "capydeploy.agent.cli", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(paths["agent"]), "--install-dir", str(paths["games"]),
            "--steam-root", str(paths["steam"]), "--name", "Demo Deck", "--no-mdns", "--log-level", "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(paths["home"])},
    )
    assert agent.stdout is not None
    try:
        line = agent.stdout.readline()
        print(f"agent> {line.rstrip()}")
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", line)
        if not match:
            raise SystemExit("demo: the agent did not start")
        address = f"127.0.0.1:{match.group(1)}"

        title("Pairing: the Hub asks, the Agent shows the code on the device, the user types it")
        pairing = subprocess.Popen(
            [PYTHON, "-m", "capydeploy.hub.cli", "--config-dir", str(paths["hub"]), "pair", address],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        shown = agent.stdout.readline()
        print(f"agent> {shown.rstrip()}")
        code = re.search(r"Pairing code: (\d{6})", shown)
        if not code:
            raise SystemExit("demo: no pairing code shown")
        out, err = pairing.communicate(code.group(1) + "\n", timeout=60)
        print(f"hub> {out.strip()}")
        if pairing.returncode != 0:
            raise SystemExit(f"demo: pairing failed: {err.strip()}")

        title("A sample game on the PC")
        game = make_sample_game(sandbox / "pc-games")
        for file in sorted(game.rglob("*")):
            if file.is_file():
                print(f"  {file.relative_to(game)}  ({file.stat().st_size} bytes)")

        title("Deploying it")
        hub(paths, "deploy", str(game), "--agent", address)
        installed = paths["games"] / game.name

        title("Where it landed on the device")
        for file in sorted(installed.rglob("*")):
            if file.is_file():
                same = file.read_bytes() == (game / file.relative_to(installed)).read_bytes()
                print(f"  {file}  {oct(file.stat().st_mode & 0o777)}  {'identical' if same else 'DIFFERENT'}")

        title("Its Steam shortcut")
        hub(paths, "shortcuts", address)

        title("Deploying it again (unchanged: nothing is sent)")
        hub(paths, "deploy", str(game), "--agent", address)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    title(f"Done. The sandbox stays at {sandbox} (remove it with: rm -r {sandbox})")
    if os.environ.get("CAPYDEPLOY_DEMO_CLEANUP"):
        shutil.rmtree(sandbox, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
