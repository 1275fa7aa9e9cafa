"""capydeploy-hub: the command line of the hub. It parses arguments and prints; the library does the work."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .. import __version__
from ..protocol import messages as m
from ..redaction import install_redaction
from .client import HubClient
from .errors import AgentError, ConnectionLost, HubError
from .resolve import resolve_agent

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONNECTION, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Output:
    """Prints results for people, or as JSON with --json."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, value: Any, human: Callable[[], None]) -> None:
        if self.as_json:
            print(json.dumps(_jsonable(value), indent=2, ensure_ascii=False), flush=True)
        else:
            human()

    def line(self, text: str) -> None:
        if not self.as_json:
            print(text, flush=True)

    def note(self, text: str) -> None:
        """Progress and prompts: stdout for people, stderr when stdout carries JSON."""
        print(text, file=sys.stderr if self.as_json else sys.stdout, flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def read_code_from_stdin(out: Output) -> Callable[[m.PairingRequired], Awaitable[str]]:
    """The pairing callback: show the prompt, read one line (works when stdin is a pipe)."""

    async def ask(pairing: m.PairingRequired) -> str:
        print(
            f"Pairing code: (shown on the device, valid {pairing.expires_in} s) ",
            end="",
            file=sys.stderr if out.as_json else sys.stdout,
            flush=True,
        )
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not line:
            raise AgentError(401, "no pairing code given")
        return line.strip()

    return ask


async def open_client(args: argparse.Namespace, agent: str, out: Output, pair: bool = False) -> HubClient:
    address = await resolve_agent(agent)
    client = HubClient(address, config_dir=args.config_dir, pair=read_code_from_stdin(out) if pair else None)
    await client.connect()
    return client


# --- commands ---------------------------------------------------------------------------------


async def cmd_pair(args: argparse.Namespace, out: Output) -> int:
    client = await open_client(args, args.agent, out, pair=True)
    try:
        status = client.status
        assert status is not None
        out.result(
            {"agentId": client.agent_id, "name": status.name, "paired": True},
            lambda: out.line(f"Paired with {status.name} ({client.agent_id})"),
        )
    finally:
        await client.close()
    return EXIT_OK


async def cmd_info(args: argparse.Namespace, out: Output) -> int:
    client = await open_client(args, args.agent, out)
    try:
        info = await client.get_info()
    finally:
        await client.close()
    agent = info.agent
    out.result(
        info,
        lambda: out.line(
            f"{agent.name}\n  id: {agent.id}\n  platform: {agent.platform}\n  version: {agent.version or '?'}\n"
            f"  capabilities: {', '.join(agent.capabilities)}"
        ),
    )
    return EXIT_OK


async def cmd_config(args: argparse.Namespace, out: Output) -> int:
    client = await open_client(args, args.agent, out)
    try:
        config = await client.get_config()
    finally:
        await client.close()
    out.result(config, lambda: out.line(f"install path: {config.install_path}"))
    return EXIT_OK


async def cmd_users(args: argparse.Namespace, out: Output) -> int:
    client = await open_client(args, args.agent, out)
    try:
        users = await client.get_steam_users()
    finally:
        await client.close()

    def show() -> None:
        if not users.users:
            out.line("no Steam users on the device")
        for user in users.users:
            out.line(f"{user.id}  {user.name}  (account {user.account_id})")

    out.result(users, show)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], Awaitable[int]]] = {
    "pair": cmd_pair,
    "info": cmd_info,
    "config": cmd_config,
    "users": cmd_users,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capydeploy-hub", description="Send games to a handheld running the CapyDeploy agent."
    )
    parser.add_argument("--config-dir", type=Path, default=None, help="where tokens are kept (or $CAPYDEPLOY_HUB_CONFIG_DIR)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    agent_help = "the agent: host, host:port, ws:// URL or its advertised name"

    pair = commands.add_parser("pair", help="pair with an agent (type the code shown on the device)")
    pair.add_argument("agent", metavar="AGENT", help=agent_help)
    for name, text in (("info", "show the agent's details"), ("config", "show the agent's install folder"),
                       ("users", "list the Steam users on the device")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("agent", metavar="AGENT", help=agent_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(levelname)s %(name)s: %(message)s")
    install_redaction()
    out = Output(args.json)
    try:
        return asyncio.run(COMMANDS[args.command](args, out))
    except KeyboardInterrupt:
        print("capydeploy-hub: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConnectionLost as error:
        print(f"capydeploy-hub: error: {error}", file=sys.stderr)
        return EXIT_CONNECTION
    except (HubError, ValueError, OSError) as error:
        print(f"capydeploy-hub: error: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
