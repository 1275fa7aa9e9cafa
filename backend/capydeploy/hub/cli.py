"""capydeploy-hub: the command line of the hub. It parses arguments and prints; the library does the work."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import BaseModel

from .. import __version__
from ..protocol import messages as m
from ..redaction import install_redaction
from .artwork_args import add_artwork_arguments, artwork_from_args
from .client import HubClient
from .config import hub_config_dir
from .errors import AgentError, ConnectionLost, HubError
from .resolve import resolve_agent

if TYPE_CHECKING:
    from .deploy import DeployOptions, DeployResult
    from .hashcache import HashCache
    from .progress import ProgressView
    from .scan import LocalFile

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
        return str(line).strip()

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


async def cmd_deploy(args: argparse.Namespace, out: Output) -> int:
    # Only `deploy` needs these: the other commands start without them.
    from .deploy import DeployOptions, prepare  # noqa: PLC0415
    from .hashcache import HashCache  # noqa: PLC0415
    from .progress import ProgressView  # noqa: PLC0415

    folder = Path(args.folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    cache = HashCache(hub_config_dir(args.config_dir) / "hash-cache.json")
    files, hashes = await prepare(folder, cache, hash_uncached=False)
    executable = args.exe or _default_executable(files)
    options = DeployOptions(
        game_name=args.name or folder.resolve().name,
        executable=executable,
        create_shortcut=not args.no_shortcut,
        launch_options=args.launch_options,
        user_id=args.user,
        artwork=await artwork_from_args(args, args.name or folder.resolve().name),
        restart_steam=args.restart_steam,
    )
    view = ProgressView(args.agent, stream=sys.stderr if args.json or not sys.stdout.isatty() else sys.stdout)
    try:
        outcomes = await asyncio.gather(
            *(
                _deploy_to(args, agent, folder=folder, options=options, prepared=(files, hashes), cache=cache, view=view)
                for agent in args.agent
            )
        )
    finally:
        view.close()
    results = dict(zip(args.agent, outcomes, strict=True))
    failed = {agent: outcome for agent, outcome in results.items() if isinstance(outcome, str)}

    def show() -> None:
        for agent, outcome in results.items():
            if isinstance(outcome, str):
                out.line(f"[{agent}] failed: {outcome}")
                continue
            note = f", shortcut failed: {outcome.shortcut_error}" if outcome.shortcut_error else ""
            app = f", Steam app id {outcome.app_id}" if outcome.app_id is not None else ""
            speed = outcome.bytes_sent / outcome.seconds / (1024 * 1024) if outcome.seconds else 0.0
            out.line(
                f"[{agent}] installed {outcome.game_name} at {outcome.path}{app}{note} "
                f"({outcome.files} files, {outcome.bytes_sent} bytes sent, {outcome.bytes_skipped} skipped, "
                f"{outcome.seconds:.1f} s, {speed:.1f} MiB/s)"
            )

    out.result(
        {agent: ({"error": outcome} if isinstance(outcome, str) else asdict(outcome)) for agent, outcome in results.items()},
        show,
    )
    for agent, message in failed.items():
        print(f"capydeploy-hub: error: {agent}: {message}", file=sys.stderr)
    return EXIT_OK if not failed else EXIT_FAILED


async def _deploy_to(
    args: argparse.Namespace,
    agent: str,
    *,
    folder: Path,
    options: DeployOptions,
    prepared: tuple[list[LocalFile], dict[str, str]],
    cache: HashCache,
    view: ProgressView,
) -> DeployResult | str:
    """Deploy to one agent; a failure is returned as text so it never stops the others."""
    from .deploy import deploy_folder  # noqa: PLC0415 - loaded by cmd_deploy already

    try:
        client = await open_client(args, agent, Output(True))
    except HubError as error:
        return str(error)
    try:
        return await deploy_folder(
            client,
            folder,
            options,
            progress=lambda progress: view.update(agent, progress),
            prepared=prepared,
            cache=cache,
        )
    except HubError as error:
        return str(error)
    finally:
        await client.close()


def _default_executable(files: list[LocalFile]) -> str | None:
    from .scan import executable_candidates  # noqa: PLC0415 - loaded by cmd_deploy already

    candidates = executable_candidates(files)
    if len(candidates) > 1:
        listed = ", ".join(candidates[:5])
        raise ValueError(f"several executables ({listed}); choose one with --exe")
    return candidates[0] if candidates else None


async def cmd_shortcuts(args: argparse.Namespace, out: Output) -> int:
    client = await open_client(args, args.agent, out)
    try:
        user = args.user or await _default_user(client)
        shortcuts = await client.list_shortcuts(user)
    finally:
        await client.close()

    def show() -> None:
        if not shortcuts.shortcuts:
            out.line("no shortcuts")
        for shortcut in shortcuts.shortcuts:
            out.line(f"{shortcut.app_id:>10}  {shortcut.name}  {shortcut.exe}")

    out.result(shortcuts, show)
    return EXIT_OK


async def _default_user(client: HubClient) -> str:
    """The only Steam user on the device; several users need --user."""
    users = (await client.get_steam_users()).users
    if len(users) == 1:
        return users[0].id
    if not users:
        raise ValueError("no Steam user on the device")
    raise ValueError("several Steam users on the device; choose one with --user (see `users`)")


async def cmd_delete_shortcut(args: argparse.Namespace, out: Output) -> int:
    client = await open_client(args, args.agent, out)
    try:
        user = args.user or await _default_user(client)
        result = await client.delete_shortcut(user, args.app_id, restart_steam=args.restart_steam)
    finally:
        await client.close()
    out.result(result, lambda: out.line(f"deleted shortcut {args.app_id}"))
    return EXIT_OK


async def cmd_artwork(args: argparse.Namespace, out: Output) -> int:
    artwork = await artwork_from_args(args, "")
    if artwork is None:
        raise ValueError("give at least one of --grid, --banner, --hero, --logo, --icon")
    client = await open_client(args, args.agent, out)
    try:
        user = args.user or await _default_user(client)
        result = await client.apply_artwork(user, args.app_id, artwork, restart_steam=args.restart_steam)
    finally:
        await client.close()

    def show() -> None:
        if result.applied:
            out.line("applied: " + ", ".join(result.applied))
        for failure in result.failed:
            out.line(f"failed: {failure.type}: {failure.error}")

    out.result(result, show)
    return EXIT_OK if not result.failed else EXIT_FAILED


async def cmd_restart_steam(args: argparse.Namespace, out: Output) -> int:
    client = await open_client(args, args.agent, out)
    try:
        result = await client.restart_steam()
    finally:
        await client.close()
    out.result(result, lambda: out.line(result.message))
    return EXIT_OK if result.success else EXIT_FAILED


async def cmd_remove(args: argparse.Namespace, out: Output) -> int:
    client = await open_client(args, args.agent, out)
    try:
        result = await client.delete_game(
            m.DeleteGame(game_name=args.game, user_id=args.user, restart_steam=args.restart_steam or None)
        )
    finally:
        await client.close()
    out.result(result, lambda: out.line(result.message or f"removed {args.game}"))
    return EXIT_OK


async def cmd_discover(args: argparse.Namespace, out: Output) -> int:
    from .discovery import discover_agents  # noqa: PLC0415 - zeroconf is loaded only to discover

    agents = await discover_agents(timeout=args.timeout, interfaces=args.interface or None)

    def show() -> None:
        if not agents:
            out.line("no agents found (is the Deck on the same network, with the plugin running?)")
        for agent in agents:
            out.line(f"{agent.name}  {agent.platform}  {agent.address.host}:{agent.port}  (id {agent.id}, v{agent.version})")

    out.result([asdict(agent) for agent in agents], show)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]] = {
    "discover": cmd_discover,
    "pair": cmd_pair,
    "info": cmd_info,
    "config": cmd_config,
    "users": cmd_users,
    "deploy": cmd_deploy,
    "shortcuts": cmd_shortcuts,
    "delete-shortcut": cmd_delete_shortcut,
    "artwork": cmd_artwork,
    "restart-steam": cmd_restart_steam,
    "remove": cmd_remove,
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

    discover = commands.add_parser("discover", help="list the agents on the local network (mDNS)")
    discover.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default 3)")
    discover.add_argument("--interface", action="append", default=None, metavar="ADDRESS",
                          help="only browse on this local address (repeatable; default: all)")

    pair = commands.add_parser("pair", help="pair with an agent (type the code shown on the device)")
    pair.add_argument("agent", metavar="AGENT", help=agent_help)
    for name, text in (("info", "show the agent's details"), ("config", "show the agent's install folder"),
                       ("users", "list the Steam users on the device")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("agent", metavar="AGENT", help=agent_help)
    deploy = commands.add_parser("deploy", help="send a game folder to one or more agents and add it to Steam")
    deploy.add_argument("folder", metavar="FOLDER", help="the game's folder")
    deploy.add_argument("--agent", action="append", required=True, metavar="AGENT",
                        help=agent_help + "; give it several times to deploy to several agents at once")
    deploy.add_argument("--name", default=None, help="the game's name (default: the folder's name)")
    deploy.add_argument("--exe", default=None, metavar="RELPATH", help="the executable, relative to FOLDER")
    deploy.add_argument("--launch-options", default=None, metavar="STR", help="Steam launch options")
    deploy.add_argument("--user", default=None, metavar="ID", help="Steam user (SteamID64 or account id)")
    deploy.add_argument("--no-shortcut", action="store_true", help="install only; do not create a Steam shortcut")
    deploy.add_argument("--restart-steam", action="store_true", help="allow the agent to restart Steam to add the shortcut")
    add_artwork_arguments(deploy, auto=True)

    shortcuts = commands.add_parser("shortcuts", help="list the Steam shortcuts of a user on the device")
    shortcuts.add_argument("agent", metavar="AGENT", help=agent_help)
    shortcuts.add_argument("--user", default=None, metavar="ID", help="Steam user (default: the only one)")

    delete = commands.add_parser("delete-shortcut", help="delete a Steam shortcut and its artwork")
    delete.add_argument("agent", metavar="AGENT", help=agent_help)
    delete.add_argument("app_id", metavar="APPID", type=int, help="the shortcut's app id (see `shortcuts`)")
    delete.add_argument("--user", default=None, metavar="ID")
    delete.add_argument("--restart-steam", action="store_true", help="allow restarting Steam to apply it")

    art = commands.add_parser("artwork", help="set a shortcut's artwork from image URLs")
    art.add_argument("agent", metavar="AGENT", help=agent_help)
    art.add_argument("app_id", metavar="APPID", type=int)
    art.add_argument("--user", default=None, metavar="ID")
    art.add_argument("--restart-steam", action="store_true", help="allow restarting Steam to apply it")
    add_artwork_arguments(art, auto=False)

    restart = commands.add_parser("restart-steam", help="restart Steam on the device")
    restart.add_argument("agent", metavar="AGENT", help=agent_help)

    remove = commands.add_parser("remove", help="uninstall a game: its shortcut, artwork and folder")
    remove.add_argument("agent", metavar="AGENT", help=agent_help)
    remove.add_argument("game", metavar="GAME", help="the game's folder name on the device")
    remove.add_argument("--user", default=None, metavar="ID")
    remove.add_argument("--restart-steam", action="store_true", help="allow restarting Steam to apply it")
    return parser


def main(argv: list[str] | None = None) -> int:
    # The Hub uses no pydantic plugins; looking for them reads the entry points of every installed
    # distribution when the first model is built (10+ ms of each command's start-up).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
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


def run() -> NoReturn:
    """The console entry point: `main`, then a quick exit.

    Python's own teardown (freeing every module's objects: pydantic's models, asyncio, ...) takes
    about 0.15 s, a third of an unchanged redeploy. By the time `main` returns, `asyncio.run` has
    closed the loop and joined its worker threads and the hash cache is saved, so only buffered
    output is left: flush it, then leave at once.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the output is lost, say so in the exit code
            code = code or EXIT_FAILED
    os._exit(code)


if __name__ == "__main__":
    run()
