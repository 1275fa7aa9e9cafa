"""The Agent as its own process for `make fuzz`, over a sandboxed device (see sandbox.py).

    python scripts/reliability/agent_runner.py --base DIR [--log-level info]

Like the standalone `capydeploy-agent`, it logs to stderr (with redaction) and shows the pairing
code on its terminal (stdout): `Pairing code: 123456`. Unlike it, it listens on 127.0.0.1 only,
runs no Steam command and fetches no artwork (every address refused, no name resolved). It stops
on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from sandbox import sandbox_config, seal_network  # this folder is sys.path[0] when run as a script

from capydeploy.agent.server import Agent
from capydeploy.redaction import install_redaction


def _say(line: str) -> None:
    print(line, flush=True)


async def run(base: Path) -> int:
    agent = Agent(sandbox_config(base))
    seal_network(agent)

    def on_event(name: str, data: dict[str, Any]) -> None:
        if name == "pairing":
            _say(f"Pairing code: {data['code']}")
        elif name == "game_installed":
            _say(f"Installed {data['gameName']}")

    agent.add_event_listener(on_event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await agent.start()
    _say(f"Listening on ws://127.0.0.1:{agent.port}/ws")
    await stop.wait()
    await asyncio.wait_for(agent.stop(), 10)
    _say("Stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args()
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_redaction()
    return asyncio.run(run(args.base))


if __name__ == "__main__":
    sys.exit(main())
