"""capydeploy-agent: the standalone Agent for a Linux handheld without Decky, and for development."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import platformdirs

from .. import __version__
from ..log_thread import write_logs_from_a_thread
from ..protocol.constants import DEFAULT_PORT, WS_PATH
from ..redaction import install_redaction
from .config import AgentConfig
from .server import Agent

log = logging.getLogger("capydeploy.agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capydeploy-agent",
        description="Receive games from a CapyDeploy Hub over the local network and add them to Steam.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all, 0.0.0.0)")  # noqa: S104
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="settings and secrets folder (default: the user's data folder for capydeploy-agent)",
    )
    parser.add_argument("--install-dir", type=Path, default=None, help="where games are installed (default ~/Games)")
    parser.add_argument("--steam-root", type=Path, default=None, help="the Steam folder (default: found automatically)")
    parser.add_argument("--name", default=None, help="the name hubs see (default: the host name)")
    parser.add_argument("--no-mdns", action="store_true", help="do not advertise the agent on the LAN by mDNS")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    data_dir = args.data_dir or Path(platformdirs.user_data_dir("capydeploy-agent", appauthor=False))
    return AgentConfig(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        install_dir=args.install_dir,
        steam_root=args.steam_root,
        name=args.name,
        mdns=not args.no_mdns,
    )


def _say(line: str) -> None:
    print(line, flush=True)


async def run(config: AgentConfig) -> int:
    agent = Agent(config)

    def on_event(name: str, data: dict[str, Any]) -> None:
        if name == "pairing":
            _say(f"Pairing code: {data['code']} (expires in {int(data['expiresIn'])} s)")
        elif name == "game_installed":
            _say(f"Installed {data['gameName']} at {data['path']}")

    agent.add_event_listener(on_event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await agent.start()
    except OSError as error:
        print(f"capydeploy-agent: cannot listen on {config.host}:{config.port}: {error}", file=sys.stderr)
        return 1
    _say(f"Listening on ws://{config.host}:{agent.port}{WS_PATH}")
    await stop.wait()
    log.info("stopping")
    await asyncio.wait_for(agent.stop(), 4.5)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_redaction()
    stop_logging = write_logs_from_a_thread(logging.getLogger())  # never from the event loop
    try:
        config = config_from_args(args)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(run(config))
        return 130
    finally:
        stop_logging()


if __name__ == "__main__":
    os._exit(main())
