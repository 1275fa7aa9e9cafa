"""Path attacks: hostile names and paths from a paired Hub never make the Agent write outside its install folder.

A paired raw Hub sends, over a real socket, hundreds of hostile `gameName`, `relativePath`,
`installPath`, `executable`, shortcut `exe`, chunk `filePath`/`offset`/`uploadId` and `appId`
values: `..` in every disguise, absolute paths, backslashes, NUL, overlong names, Unicode
look-alikes, percent-encoding, and the names of symlinks inside the install folder that point out
of it. For each attempt:

* the whole temporary tree outside the install folder (a sentinel folder, the device's home with
  its Steam folder, the Agent's data) is snapshotted before and after, and must not change;
* an audit hook sees every file-system change the process makes (any thread, any path): none may
  land outside the install folder;
* the reply must be an error, except for the values the protocol accepts as literal names
  (look-alikes, percent signs...), which must then land, literally, inside the install folder.

The artwork test aims `apply_artwork` / `create_shortcut` at loopback, link-local and unspecified
addresses, directly and through redirects from a server the Agent may reach; canary servers on the
forbidden addresses must get no request, and the audit hook must see no connection to them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from capydeploy.agent.server import Agent
from capydeploy.steam.download import allow_endpoints
from scripts.reliability.fsaudit import FsAudit
from scripts.reliability.peer import Peer
from scripts.reliability.sandbox import NO_STEAM_COMMAND, STEAM_ID64
from scripts.reliability.treesnap import diff, snapshot
from tests.conftest import AgentFactory, url_of

USER = str(STEAM_ID64)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
REJECT, CONTAIN = "reject", "contain"


# --- the device and the attacker -------------------------------------------------------------


@dataclass
class World:
    agent: Agent
    peer: Peer
    tmp: Path
    install: Path
    outside: Path
    home: Path
    steam_config: Path
    user_tool_app: int = 0
    outside_tool_app: int = 0
    results: list[Result] = field(default_factory=list)


@dataclass
class Result:
    field_name: str
    value: str
    expect: str
    reply: str
    escaped: list[str]
    problem: str | None


async def _read_code(agent: Agent) -> str:
    pending = agent.snapshot().pairing
    assert pending is not None
    return pending.code


async def _upload(
    peer: Peer, config: dict[str, Any], files: list[tuple[Any, bytes]], *, complete: bool = True, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """init_upload, every chunk, complete_upload; stops at the first error reply."""
    entries = [
        {"relativePath": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for path, data in files
    ]
    init = await peer.request(
        "init_upload", {"config": config, "totalSize": sum(len(data) for _, data in files), "files": entries}
    )
    if init["type"] != "upload_init_response":
        return init, None
    upload_id = init["payload"]["uploadId"]
    held = init["payload"].get("resumeFrom") or {}
    for path, data in files:
        if data and held.get(path) != len(data):
            ack = await peer.send_chunk(
                {"id": peer.new_id(), "uploadId": upload_id, "filePath": path, "offset": 0,
                 "checksum": hashlib.sha256(data).hexdigest()},
                data,
            )
            if ack["type"] != "upload_chunk_response":
                return ack, None
    if not complete:
        return init, None
    done = await peer.request("complete_upload", {"uploadId": upload_id, **extra})
    return init, done


@pytest.fixture
async def world(agent_factory: AgentFactory, tmp_path: Path, fake_home: Path) -> AsyncIterator[World]:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text("TOP SECRET\n")
    (outside / "sub" / "inner.txt").write_text("inner\n")
    (outside / "tool.sh").write_text("#!/bin/sh\n")
    (fake_home / "Apps").mkdir()
    (fake_home / "Apps" / "tool.sh").write_text("#!/bin/sh\n")
    agent = await agent_factory(steam_command=NO_STEAM_COMMAND)
    peer = await Peer.open(url_of(agent))
    await peer.pair(lambda: _read_code(agent), "attacker-hub")
    install = agent.install_dir
    world = World(
        agent, peer, tmp_path, install, outside, fake_home,
        fake_home / ".local/share/Steam/userdata/52079950/config",
    )
    # A game the Agent installed, with a manifest (so incremental redeploys are planned).
    _, done = await _upload(peer, {"gameName": "Legit", "executable": "game.sh"},
                            [("game.sh", b"#!/bin/sh\necho legit\n"), ("data/level.dat", b"level" * 100)])
    assert done is not None and done["type"] == "operation_result", done
    # Shortcuts the device's user made for programs the Agent did not install.
    for name, exe, attribute in (
        ("User Tool", fake_home / "Apps" / "tool.sh", "user_tool_app"),
        ("Outside Tool", outside / "tool.sh", "outside_tool_app"),
    ):
        reply = await peer.request("create_shortcut", {"userId": USER, "shortcut": {"name": name, "exe": str(exe)}})
        assert reply["type"] == "operation_result", reply
        setattr(world, attribute, reply["payload"]["appId"])
    # Symlinks inside the install folder, made by the user or another program, pointing out of it.
    links = {
        "evil": outside, "evilfile": outside / "secret.txt", "chain": Path("evil"),
        "dangling": outside / "nothing-here", "up": Path(".."), "root": Path("."), "tmpdir": Path("/tmp"),
        "agentdir": Path(".capydeploy"), "alias": Path("Legit"),
    }
    for name, target in links.items():
        (install / name).symlink_to(target)
    (install / "Legit" / "sub").symlink_to(outside)  # a folder of an installed game, swapped for a link
    yield world
    await peer.close()


# --- one attempt ------------------------------------------------------------------------------


async def _attempt(
    world: World,
    field_name: str,
    value: Any,
    expect: str,
    action: Callable[[], Awaitable[dict[str, Any] | None]],
    allowed_outside: tuple[Path, ...] = (),
    literal_install: str | None = None,
) -> None:
    """Run one hostile request; record the reply and every change outside the install folder."""
    excluded = [world.install, *allowed_outside]
    before = snapshot(world.tmp, exclude=excluded)
    inside_before = snapshot(world.install, exclude=[world.install / ".capydeploy"])
    with FsAudit() as audit:
        reply = await action()
    after = snapshot(world.tmp, exclude=excluded)
    escaped = diff(before, after)
    escaped += [f"{change.event} {change.path}" for change in audit.writes_outside([world.install, *allowed_outside])]
    label = "none" if reply is None else reply.get("type", "?")
    if reply is not None and reply.get("type") == "error":
        label = f"error {reply['error']['code']}: {reply['error']['message'][:80]}"
    problem = None
    is_error = reply is not None and reply.get("type") == "error"
    if expect == REJECT and not is_error:
        problem = f"accepted: {json.dumps(reply)[:300]}"
    if expect == REJECT and is_error:
        inside_changes = diff(inside_before, snapshot(world.install, exclude=[world.install / ".capydeploy"]))
        if inside_changes:
            problem = f"rejected, but the install folder changed: {inside_changes[:3]}"
    if expect == CONTAIN and not is_error and literal_install is not None:
        folder = world.install / literal_install
        if not folder.is_dir() or folder.is_symlink() or folder.parent != world.install:
            problem = f"accepted, but {literal_install!r} is not a folder directly inside the install folder"
    world.results.append(Result(field_name, repr(value)[:90], expect, label, escaped, problem))


def _report(world: World, title: str) -> tuple[int, int]:
    attempts = len(world.results)
    escapes = sum(1 for result in world.results if result.escaped)
    rejected = sum(1 for result in world.results if result.reply.startswith("error"))
    by_field: dict[str, int] = {}
    for result in world.results:
        by_field[result.field_name] = by_field.get(result.field_name, 0) + 1
    print(f"\n{title}: {attempts} attempts, {escapes} escapes, {rejected} rejected with an error, "
          f"{attempts - rejected} accepted as literal names inside the install folder")
    print("  by field: " + ", ".join(f"{name} {count}" for name, count in by_field.items()))
    for result in world.results:
        if result.escaped or result.problem:
            print(f"  FAIL {result.field_name}={result.value}: {result.reply}; {result.problem}; {result.escaped[:4]}")
    return attempts, escapes


# --- the corpus ----------------------------------------------------------------------------------

SYMLINK_NAMES = ["evil", "evilfile", "chain", "dangling", "up", "root", "tmpdir", "agentdir"]

GAME_NAMES_REJECTED: list[str] = [
    "", ".", "..", "../outside", "../../outside", "../../../../../../tmp/pwned", "a/b", "/", "/tmp/pwned",
    "..\\outside", "a\\b", "C:\\pwned", "x\x00", "\x00", "..\x00", "\x00..", "a\nb", "\r", "\x7f", "\x85x",
    "\x1b[2J", "a" * 256, "\u00e9" * 128, "\U0001f600" * 64, "\ud800", "x\udfff", ".capydeploy", "./x", "x/.",
    "~/pwned", "..//..", "%2e%2e/..", *SYMLINK_NAMES,
]
GAME_NAMES_LITERAL: list[str] = [
    "%2e%2e", "%2e%2e%2foutside", "..%2f..%2foutside", "%252e%252e", "\uff0e\uff0e", "\uff0e\uff0e\uff0foutside",
    "\u2024\u2024", "\u2025", "..\u2215outside", "..\u2044outside", "\ufe52\ufe52", "\u202e..", "...", " ..", ".. ",
    "..\u200b", "~", "C:", "a" * 255, "$(touch pwned)", "`id`",
]
REL_PATHS_REJECTED: list[str] = [
    "", ".", "..", "../pwned", "../../outside/pwned", "a/../../pwned", "/etc/passwd", "/tmp/pwned", "//pwned",
    "a//b", "a/", "./a", "a/./b", "a/..", "\\..\\pwned", "a\\..\\..\\pwned", "C:/pwned", "c:pwned", "C:\\pwned",
    "a\x00b", "x/\x00", "a\nb", "x" * 256, "a/" * 2048 + "b", "\ud800", "x/\udfff", "..\\", ".capydeploy/../..",
]
REL_PATHS_LITERAL: list[str] = [
    "%2e%2e/pwned", "..%2fpwned", "\uff0e\uff0e/pwned", "\u2024\u2024/pwned", "..\u2215pwned", "...", ".../pwned",
    "~/pwned", " ../pwned", "evil/pwned", "up/pwned",
]


def _install_paths(world: World) -> tuple[list[str], list[str]]:
    install, outside = str(world.install), str(world.outside)
    rejected = [
        "relative", "", "~/Games", outside, "/", "/tmp", install + "/..", install + "/../../outside", install + "/evil",
        install + "/evil/sub", install + "/chain", install + "/dangling", install + "/up", install + "/tmpdir",
        install + "/evilfile", install + "/.capydeploy", install + "/.capydeploy/staging", install + "/agentdir",
        install + "/Legit/sub", install + "\x00", "/" + "a" * 5000, "C:\\Games", "file://" + install,
        "\\\\server\\share", "/proc/self/cwd", "/proc/self/root" + outside, install + "/Legit/game.sh",
    ]
    literal = [install + "/%2e%2e", install + "/\uff0e\uff0e/outside", install + "/up/Games", install + "/root"]
    return rejected, literal


# --- the tests ------------------------------------------------------------------------------------


async def test_hostile_names_and_paths_never_escape_the_install_folder(world: World) -> None:
    peer, install = world.peer, world.install
    data = b"PWNED\n"

    async def cleanup(name: str) -> None:
        if (install / name).is_dir() and not (install / name).is_symlink():
            reply = await peer.request("delete_game", {"gameName": name})
            assert reply["type"] == "operation_result", reply

    # gameName
    for name in GAME_NAMES_REJECTED:
        await _attempt(world, "gameName", name, REJECT,
                       lambda name=name: _first(_upload(peer, {"gameName": name}, [("pwned.txt", data)])))
    for name in GAME_NAMES_LITERAL:
        await _attempt(world, "gameName", name, CONTAIN,
                       lambda name=name: _last(_upload(peer, {"gameName": name}, [("pwned.txt", data)])),
                       literal_install=name)
        await cleanup(name)
    # an existing symlink to another game inside the folder: the link is replaced, the other game untouched
    legit_before = snapshot(install / "Legit")
    await _attempt(world, "gameName", "alias", CONTAIN,
                   lambda: _last(_upload(peer, {"gameName": "alias"}, [("pwned.txt", data)])), literal_install="alias")
    assert snapshot(install / "Legit") == legit_before
    await cleanup("alias")

    # relativePath (and chunk filePath with it)
    for path in REL_PATHS_REJECTED:
        await _attempt(world, "relativePath", path, REJECT,
                       lambda path=path: _first(_upload(peer, {"gameName": "RelTarget"}, [(path, data)])))
    for path in REL_PATHS_LITERAL:
        await _attempt(world, "relativePath", path, CONTAIN,
                       lambda path=path: _last(_upload(peer, {"gameName": "RelTarget"}, [(path, data)])),
                       literal_install="RelTarget")
        if not (install / "RelTarget" / path).is_file() and (install / "RelTarget").exists():
            world.results[-1].problem = f"{path!r} is not a file inside the installed game"
        await cleanup("RelTarget")
    # through a folder of the installed game that is now a symlink out of it, plain and incremental
    secret = (world.outside / "secret.txt").read_bytes()
    await _attempt(world, "relativePath", "sub/pwned.txt (Legit/sub -> outside)", CONTAIN,
                   lambda: _last(_upload(peer, {"gameName": "Legit", "executable": "game.sh"},
                                         [("game.sh", b"#!/bin/sh\n"), ("sub/pwned.txt", data)])),
                   literal_install="Legit")
    _relink(install / "Legit" / "sub", world.outside)  # the redeploy replaced the link: make it again
    await _attempt(world, "relativePath", "sub/secret.txt as executable, same hash as the outside file", CONTAIN,
                   lambda: _last(_upload(peer, {"gameName": "Legit", "executable": "sub/secret.txt"},
                                         [("game.sh", b"#!/bin/sh\n"), ("sub/secret.txt", secret)])),
                   literal_install="Legit")

    _relink(install / "Legit" / "sub", world.outside)

    # installPath
    rejected, literal = _install_paths(world)
    for path in rejected:
        await _attempt(world, "installPath", path, REJECT,
                       lambda path=path: _first(_upload(peer, {"gameName": "PathTarget", "installPath": path},
                                                        [("pwned.txt", data)])))
    for path in literal:
        await _attempt(world, "installPath", path, CONTAIN,
                       lambda path=path: _last(_upload(peer, {"gameName": "PathTarget", "installPath": path},
                                                       [("pwned.txt", data)])))
        target = Path(os.path.realpath(path)) / "PathTarget"
        if target.exists():
            assert str(target).startswith(str(install) + "/"), target
            reply = await peer.request("delete_game", {"gameName": "PathTarget"})
            if reply["type"] == "error":  # installed below another folder inside the install folder
                shutil.rmtree(target)

    # executable (config.executable)
    for exe in ["../pwned", "/bin/sh", str(world.outside / "tool.sh"), "a/../../pwned", "x\x00", "C:\\x", "..",
                "not-listed", "\\pwned", ""]:
        await _attempt(world, "executable", exe, REJECT,
                       lambda exe=exe: _first(_upload(peer, {"gameName": "ExeTarget", "executable": exe},
                                                      [("pwned.txt", data)])))

    # complete_upload.shortcut.exe (relative to the game folder)
    init, _ = await _upload(peer, {"gameName": "ShortcutTarget"}, [("game.sh", b"#!/bin/sh\n")], complete=False)
    upload_id = init["payload"]["uploadId"]
    for exe in ["../../outside/tool.sh", "/bin/sh", "..", "../..", "a\x00", "C:\\x", "\\..\\x",
                str(world.outside / "tool.sh"), "", "../Legit/game.sh"]:
        await _attempt(world, "shortcut.exe", exe, REJECT,
                       lambda exe=exe: peer.request("complete_upload", {"uploadId": upload_id, "createShortcut": True,
                                                                        "userId": USER, "shortcut": {"exe": exe}}))
    await peer.request("cancel_upload", {"uploadId": upload_id})

    # chunk filePath / offset / uploadId against a real upload
    init, _ = await _upload(peer, {"gameName": "ChunkTarget"}, [("a.bin", b"0123456789abcdef")], complete=False)
    upload_id = init["payload"]["uploadId"]

    def chunk(header: dict[str, Any], payload: bytes = data) -> Callable[[], Awaitable[dict[str, Any]]]:
        full = {"id": peer.new_id(), "uploadId": upload_id, "filePath": "a.bin", "offset": 0, **header}
        return lambda: peer.send_chunk(full, payload)

    for path in ["../a.bin", "../../outside/secret.txt", "/etc/passwd", str(world.outside / "secret.txt"),
                 "a.bin/../a.bin", "./a.bin", "a.bin\x00", "A.BIN", "a.bin/", "\\a.bin", "evil/secret.txt",
                 "\uff0e\uff0e/a.bin", "..", ""]:
        await _attempt(world, "chunk filePath", path, REJECT, chunk({"filePath": path}))
    for offset in [-1, 16, 11, 2**50, 2**63, 1.5, "0", None, True, -(2**63)]:
        await _attempt(world, "chunk offset", offset, REJECT, chunk({"offset": offset}))
    for bad_id in ["../../outside", "..", "/tmp", str(world.outside), "", "\x00", f"../{upload_id}",
                   f"{upload_id}/../{upload_id}", upload_id.upper(), "upload-" + "0" * 32]:
        await _attempt(world, "chunk uploadId", bad_id, REJECT, chunk({"uploadId": bad_id}))
    for bad_id in ["../../outside", "..", f"../staging/{upload_id}", ""]:
        await _attempt(world, "complete_upload uploadId", bad_id, REJECT,
                       lambda bad_id=bad_id: peer.request("complete_upload", {"uploadId": bad_id}))
        await _attempt(world, "cancel_upload uploadId", bad_id, REJECT,
                       lambda bad_id=bad_id: peer.request("cancel_upload", {"uploadId": bad_id}))
    await peer.request("cancel_upload", {"uploadId": upload_id})

    # delete_game by name: traversal, and symlinks out of the install folder (whose targets hold
    # programs with Steam shortcuts: those shortcuts must survive too)
    for name in ["..", "../outside", "/", "", "a/b", "\x00", ".capydeploy", "../../tmp", *SYMLINK_NAMES]:
        await _attempt(world, "delete_game gameName", name, REJECT,
                       lambda name=name: peer.request("delete_game", {"gameName": name}))
    # delete_game by appId: shortcuts whose exe leaves the install folder through '..' or a symlink
    for exe in [f"{install}/../Apps/tool.sh", f"{install}/evil/tool.sh", f"{install}/up/Apps/tool.sh",
                f"{install}/Legit/../../Apps/tool.sh"]:
        made = await peer.request("create_shortcut", {"userId": USER, "shortcut": {"name": f"Sneaky {exe[-24:]}",
                                                                                  "exe": exe}})
        assert made["type"] == "operation_result", made
        app_id = made["payload"]["appId"]
        await _attempt(world, "delete_game appId", f"{app_id} (exe {exe})", REJECT,
                       lambda app_id=app_id: peer.request("delete_game", {"appId": app_id, "userId": USER}))
    for app_id in [-1, 2**32, 2**64, "123", 1.5, True, None, "../x", [], {}]:
        await _attempt(world, "delete_game appId", app_id, REJECT,
                       lambda app_id=app_id: peer.request("delete_game", {"appId": app_id}))
        await _attempt(world, "delete_shortcut appId", app_id, REJECT,
                       lambda app_id=app_id: peer.request("delete_shortcut", {"userId": USER, "appId": app_id}))
        await _attempt(world, "apply_artwork appId", app_id, REJECT,
                       lambda app_id=app_id: peer.request("apply_artwork", {"userId": USER, "appId": app_id,
                                                                            "artwork": {}}))

    # create_shortcut: malformed exe / startDir are refused; an absolute exe anywhere is a pointer the
    # protocol allows (D7): it may only change Steam's own shortcut file, never the file it names
    for exe in ["relative/x", "", "x\x00", "../x", "~/x", "C:\\x", "\\\\server\\x"]:
        await _attempt(world, "create_shortcut exe", exe, REJECT,
                       lambda exe=exe: peer.request("create_shortcut", {"userId": USER,
                                                                        "shortcut": {"name": "X", "exe": exe}}))
    for start in ["relative", "x\x00", "", "../.."]:
        await _attempt(world, "create_shortcut startDir", start, REJECT,
                       lambda start=start: peer.request("create_shortcut", {
                           "userId": USER, "shortcut": {"name": "X", "exe": "/bin/true", "startDir": start}}))
    for exe in ["/etc/passwd", f"{install}/../../etc/shadow", f"{install}/evil/secret.txt", "/proc/self/exe",
                str(world.outside / "new-file-that-must-not-appear")]:
        await _attempt(world, "create_shortcut exe", exe, CONTAIN,
                       lambda exe=exe: peer.request("create_shortcut", {"userId": USER,
                                                                        "shortcut": {"name": "Pointer", "exe": exe}}),
                       allowed_outside=(world.steam_config,))
    assert not (world.outside / "new-file-that-must-not-appear").exists()

    attempts, escapes = _report(world, "path attacks")
    problems = [r for r in world.results if r.problem or r.escaped]
    assert attempts >= 100
    assert escapes == 0, "\n".join(f"{r.field_name}={r.value}: {r.escaped[:5]}" for r in problems if r.escaped)
    assert not problems, "\n".join(f"{r.field_name}={r.value}: {r.reply}; {r.problem}" for r in problems)
    # The user's own shortcuts outlived every attack.
    listing = await peer.request("list_shortcuts", {"userId": USER})
    app_ids = {shortcut["appId"] for shortcut in listing["payload"]["shortcuts"]}
    assert {world.user_tool_app, world.outside_tool_app} <= app_ids
    assert (world.outside / "secret.txt").read_text() == "TOP SECRET\n"
    assert os.stat(world.outside / "secret.txt").st_mode & 0o777 == 0o644


def _relink(link: Path, target: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)
    link.symlink_to(target)


async def _first(flow: Awaitable[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[str, Any]:
    """The first reply of an upload flow that failed (the error), else its last one."""
    first, last = await flow
    return first if last is None else last


async def _last(flow: Awaitable[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[str, Any]:
    first, last = await flow
    return first if last is None else last


# --- artwork aimed at the device itself -------------------------------------------------------


@dataclass
class Canary:
    """A server on an address the Agent must never fetch from; counts the requests it gets."""

    host: str
    port: int
    hits: int = 0


async def _serve(host: str, counter: Canary | None = None, routes: web.RouteTableDef | None = None) -> web.AppRunner:
    app = web.Application()

    async def anything(request: web.Request) -> web.Response:
        if counter is not None:
            counter.hits += 1
        return web.Response(body=PNG, content_type="image/png")

    if routes is not None:
        app.add_routes(routes)
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner


def _link_local_address() -> str | None:
    """An IPv6 link-local address of this machine with its zone, if it has one (e.g. fe80::1%eth0)."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        raw, _index, _prefix, scope, _flags, name = line.split()
        if scope == "20":  # link scope
            address = ":".join(raw[i : i + 4] for i in range(0, 32, 4))
            return f"{socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))}%{name}"
    return None


async def test_artwork_never_reaches_local_addresses(
    agent_factory: AgentFactory, tmp_path: Path
) -> None:
    canaries: list[Canary] = []
    runners: list[web.AppRunner] = []
    for host in ("127.0.0.1", "127.0.0.2", "::1", "0.0.0.0"):
        canary = Canary(host, 0)
        runner = await _serve(host, canary)
        canary.port = int(runner.addresses[0][1])
        canaries.append(canary)
        runners.append(runner)
    link_local = _link_local_address()
    if link_local is not None:
        try:
            canary = Canary(link_local, 0)
            runner = await _serve(link_local, canary)
            canary.port = int(runner.addresses[0][1])
            canaries.append(canary)
            runners.append(runner)
        except OSError:
            link_local = None
    by_host = {canary.host: canary for canary in canaries}
    loop4, loop4b, loop6, any4 = (by_host[h] for h in ("127.0.0.1", "127.0.0.2", "::1", "0.0.0.0"))

    # The attacker's server, which the Agent may reach (the test allows exactly its port), redirects.
    redirects: dict[str, str] = {}
    routes = web.RouteTableDef()

    @routes.get("/r/{name}")
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(redirects[request.match_info["name"]])

    attacker = await _serve("127.0.0.1", routes=routes)
    runners.append(attacker)
    attacker_port = int(attacker.addresses[0][1])
    hop = f"http://127.0.0.1:{attacker_port}/r"

    targets = {
        "loopback": f"http://127.0.0.1:{loop4.port}/grid.png",
        "loopback-other": f"http://127.0.0.2:{loop4b.port}/grid.png",
        "loopback-short": f"http://127.1:{loop4.port}/grid.png",
        "loopback-decimal": f"http://2130706433:{loop4.port}/grid.png",
        "loopback-hex": f"http://0x7f000001:{loop4.port}/grid.png",
        "loopback-octal": f"http://0177.0.0.1:{loop4.port}/grid.png",
        "localhost": f"http://localhost:{loop4.port}/grid.png",
        "localhost-dot": f"http://localhost.:{loop4.port}/grid.png",
        "ipv6-loopback": f"http://[::1]:{loop6.port}/grid.png",
        "ipv6-loopback-long": f"http://[0:0:0:0:0:0:0:1]:{loop6.port}/grid.png",
        "ipv4-mapped": f"http://[::ffff:127.0.0.1]:{loop4.port}/grid.png",
        "ipv4-mapped-hex": f"http://[::ffff:7f00:1]:{loop4.port}/grid.png",
        "unspecified": f"http://0.0.0.0:{any4.port}/grid.png",
        "unspecified-short": f"http://0:{any4.port}/grid.png",
        "this-network": f"http://0.1.2.3:{any4.port}/grid.png",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "link-local": "http://169.254.1.1/grid.png",
        "userinfo": f"http://127.0.0.1:{attacker_port}@127.0.0.1:{loop4.port}/grid.png",
        "https-loopback": f"https://127.0.0.1:{loop4.port}/grid.png",
        "file": "file:///etc/passwd",
        "ftp": f"ftp://127.0.0.1:{loop4.port}/grid.png",
        "gopher": f"gopher://127.0.0.1:{loop4.port}/_x",
    }
    if link_local is not None:
        name, zone = link_local.split("%")
        targets["ipv6-link-local"] = f"http://[{name}%25{zone}]:{by_host[link_local].port}/grid.png"
    urls: dict[str, str] = {}
    for name, url in targets.items():
        urls[f"direct {name}"] = url
        if url.startswith("http"):
            redirects[name] = url
            urls[f"redirect {name}"] = f"{hop}/{name}"
    redirects["two-hops"] = f"{hop}/loopback"
    urls["redirect two hops"] = f"{hop}/two-hops"
    redirects["scheme-relative"] = f"//127.0.0.1:{loop4.port}/grid.png"
    urls["redirect scheme-relative"] = f"{hop}/scheme-relative"

    agent = await agent_factory(
        steam_command=NO_STEAM_COMMAND, artwork_address_allowed=allow_endpoints([("127.0.0.1", attacker_port)])
    )
    peer = await Peer.open(url_of(agent))
    await peer.pair(lambda: _read_code(agent), "artwork-hub")
    made = await peer.request("create_shortcut", {"userId": USER, "shortcut": {"name": "Art", "exe": "/bin/true"}})
    app_id = made["payload"]["appId"]
    grid = Path(agent.config.home) / ".local/share/Steam/userdata/52079950/config/grid"
    attempts = failures = 0
    unexpected: list[str] = []
    with FsAudit() as audit:
        for label, url in urls.items():
            for key in ("grid", "hero", "logo", "icon", "banner"):
                attempts += 1
                reply = await peer.request(
                    "apply_artwork", {"userId": USER, "appId": app_id, "artwork": {key: url}}, timeout=60
                )
                payload = reply.get("payload") or {}
                failed = [item["type"] for item in payload.get("failed", [])]
                if reply["type"] == "artwork_response" and failed == [key] and not payload.get("applied"):
                    failures += 1
                else:
                    unexpected.append(f"{label} {key}: {json.dumps(reply)[:200]}")
            attempts += 1
            reply = await peer.request(
                "create_shortcut",
                {"userId": USER, "shortcut": {"name": f"Art {label}", "exe": "/bin/true", "artwork": {"grid": url}}},
                timeout=60,
            )
            message = (reply.get("payload") or {}).get("message") or ""
            if reply["type"] == "operation_result" and "grid" in message:
                failures += 1
            else:
                unexpected.append(f"create_shortcut {label}: {json.dumps(reply)[:200]}")
    await peer.close()
    for runner in runners:
        await runner.cleanup()
    hits = {f"{c.host}:{c.port}": c.hits for c in canaries if c.hits}
    forbidden = {(c.host.split("%")[0], c.port) for c in canaries}
    reached = [address for address in audit.connections
               if (isinstance(address, tuple) and (str(address[0]).split("%")[0], address[1]) in forbidden)
               or (isinstance(address, tuple) and str(address[0]).startswith("169.254."))]
    images = sorted(path.name for path in grid.glob("*")) if grid.exists() else []
    print(f"\nartwork aimed at local addresses: {attempts} attempts ({len(urls)} URLs x 5 keys + create_shortcut), "
          f"{failures} failed as they must, canary hits {sum(c.hits for c in canaries)}, "
          f"connections to forbidden addresses {len(reached)}, canaries on "
          + ", ".join(f"{c.host}" for c in canaries))
    assert not unexpected, "\n".join(unexpected)
    assert not hits, hits
    assert not reached, reached
    assert not images, images
    assert failures == attempts
