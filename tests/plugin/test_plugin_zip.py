"""The plugin zip, unpacked and run the way Decky runs it: a fresh Python 3.11 that has only aiohttp.

A child process plays Decky Loader: it sets Decky's environment, appends py_modules to sys.path,
installs a small fake `decky` module (folders, logger, an `emit` that records events to a file),
loads main.py from its path as module "_", calls `Plugin()`, `_migration()`, schedules `_main()`,
then answers the panel's calls sent as JSON lines on stdin. From this process a real Hub pairs
(reading the code from the panel's `get_state()`) and deploys a game; then `_unload` must finish
within Decky's 5 s SIGKILL budget, and `_uninstall` must remove the secrets.

Set CAPYDEPLOY_PLUGIN_ZIP to test an already built zip instead of building one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import DeployOptions
from capydeploy.protocol import messages as m

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "CapyDeploy"
DECKY_AIOHTTP = "aiohttp==3.10.11"
UNLOAD_BUDGET = 5.0  # Decky's SIGKILL comes 5 s after it asks the plugin to unload

pytestmark = pytest.mark.slow

# The fake loader. Written to a file and run with `python -I`, so it sees neither this repository
# nor the development venv: only the venv's aiohttp and the unpacked plugin.
DECKY_HOST = r'''
import asyncio, importlib.util, json, logging, os, sys, time, types

plugin_dir, settings_dir, home, runtime_dir, events_path, log_path = sys.argv[1:7]

os.environ.update({
    "DECKY_USER_HOME": home, "DECKY_HOME": os.path.dirname(os.path.dirname(plugin_dir)),
    "DECKY_PLUGIN_DIR": plugin_dir, "DECKY_PLUGIN_SETTINGS_DIR": settings_dir,
    "DECKY_PLUGIN_RUNTIME_DIR": runtime_dir, "DECKY_PLUGIN_LOG_DIR": os.path.dirname(log_path),
    "DECKY_PLUGIN_NAME": "CapyDeploy", "DECKY_PLUGIN_VERSION": "0.1.0",
})
sys.path.append(os.path.join(plugin_dir, "py_modules"))  # what Decky does, and all it does
logging.basicConfig(filename=log_path, level=logging.INFO, format="[%(name)s][%(levelname)s]: %(message)s")

decky = types.ModuleType("decky")
decky.DECKY_USER_HOME = home
decky.DECKY_PLUGIN_DIR = plugin_dir
decky.DECKY_PLUGIN_SETTINGS_DIR = settings_dir
decky.DECKY_PLUGIN_RUNTIME_DIR = runtime_dir
decky.DECKY_PLUGIN_LOG_DIR = os.path.dirname(log_path)
decky.DECKY_PLUGIN_VERSION = "0.1.0"
decky.logger = logging.getLogger("CapyDeploy")

async def emit(event, *args):
    with open(events_path, "a", encoding="utf-8") as events:
        events.write(json.dumps({"event": event, "args": list(args)}) + "\n")

decky.emit = emit
sys.modules["decky"] = decky

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
spec = importlib.util.spec_from_file_location("_", os.path.join(plugin_dir, "main.py"))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
plugin = module.Plugin()
loop.run_until_complete(plugin._migration())
loop.create_task(plugin._main())

def reply(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()

async def call(request):
    try:
        result = await getattr(plugin, request["method"])(*request.get("args", []))
        reply({"id": request["id"], "success": True, "res": result})
    except Exception as error:
        reply({"id": request["id"], "success": False, "res": str(error)})

async def serve():
    import aiohttp, capydeploy, pydantic_core
    reply({"id": "hello", "success": True, "res": {
        "python": list(sys.version_info[:3]), "capydeploy": capydeploy.__file__,
        "pydantic_core": pydantic_core.__file__, "aiohttp": aiohttp.__version__, "aiohttp_file": aiohttp.__file__,
    }})
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()
    while line := await reader.readline():
        request = json.loads(line)
        if request["method"] == "stop":  # Decky: _unload, then _uninstall when removing the plugin
            began = time.monotonic()
            await plugin._unload()
            unload = time.monotonic() - began
            if request.get("uninstall"):
                await plugin._uninstall()
            reply({"id": request["id"], "success": True, "res": unload})
            return
        task = loop.create_task(call(request))  # Decky runs each call in its own task
        tasks.add(task)
        task.add_done_callback(tasks.discard)

loop.run_until_complete(serve())
'''


# --- building and unpacking -------------------------------------------------------------------


def _frontend_dist(tmp: Path) -> Path:
    """The built panel; a stand-in when the frontend was not built yet (pytest runs before pnpm)."""
    if (ROOT / "dist" / "index.js").is_file():
        return ROOT / "dist"
    stub = tmp / "dist"
    stub.mkdir()
    (stub / "index.js").write_text("// stand-in: the frontend build runs after the Python tests\n")
    return stub


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("CAPYDEPLOY_PLUGIN_ZIP")
    if given:
        return Path(given)
    work = tmp_path_factory.mktemp("zip")
    out = work / f"{PLUGIN}.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plugin_zip.py"), "--dist", str(_frontend_dist(work)), "--out", str(out)],
        check=True,
        cwd=ROOT,
        timeout=600,
    )
    return out


@pytest.fixture(scope="session")
def decky_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python 3.11 venv with only what Decky's process brings that matters to us: aiohttp 3.10.11."""
    venv = tmp_path_factory.mktemp("decky-venv")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", DECKY_AIOHTTP],
        check=True,
        timeout=600,
    )
    return python


@pytest.fixture(params=["py_modules"])
def unpacked(request: pytest.FixtureRequest, plugin_zip: Path, tmp_path: Path) -> Path:
    """The plugin as installed. Layout "bin" is what Decky's own builder makes of backend/'s
    Dockerfile output (it copies /backend/out into bin/), the same files one folder down."""
    plugins = tmp_path / "homebrew" / "plugins"
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(plugins)
    plugin_dir = plugins / PLUGIN
    if request.param == "bin":
        (plugin_dir / "bin").mkdir()
        (plugin_dir / "py_modules").rename(plugin_dir / "bin" / "py_modules")
    # Test settings: loopback only, any free port, no mDNS (multicast must not reach the LAN).
    defaults_path = plugin_dir / "capydeploy-defaults.json"
    defaults = json.loads(defaults_path.read_text())
    defaults.update({"host": "127.0.0.1", "port": 0, "mdns": False})
    defaults_path.write_text(json.dumps(defaults))
    return plugin_dir


# --- the layout -----------------------------------------------------------------------------------


def test_zip_has_deckys_layout(plugin_zip: Path) -> None:
    with zipfile.ZipFile(plugin_zip) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {PLUGIN}, "exactly one top folder"
    inside = {name.split("/", 1)[1] for name in names}
    first_level = {name.split("/")[0] for name in inside}
    for required in ("plugin.json", "package.json", "main.py", "LICENSE", "dist", "py_modules", "capydeploy-defaults.json"):
        assert required in first_level, f"{required} missing from the zip"
    if (ROOT / "README.md").is_file():
        assert "README.md" in first_level
    assert "dist/index.js" in inside
    for forbidden in ("src", "tests", "node_modules", "backend", "defaults", "scripts", ".venv"):
        assert forbidden not in first_level, f"{forbidden}/ must not ship"
    assert not [name for name in inside if "__pycache__" in name or name.endswith(".pyc")]
    assert "py_modules/capydeploy/decky/plugin.py" in inside
    modules = {name.split("/")[1] for name in inside if name.startswith("py_modules/")}
    for vendored in ("websockets", "pydantic", "pydantic_core", "annotated_types", "typing_inspection", "vdf", "zeroconf", "ifaddr"):
        assert vendored in modules, f"{vendored} not vendored"
    for provided in ("aiohttp", "yarl", "multidict", "attrs", "frozenlist", "aiosignal", "propcache"):
        assert provided not in modules, f"{provided} is Decky's; it must not ship"
    compiled = [name for name in inside if name.endswith(".so")]
    assert compiled, "no compiled extension at all?"
    assert all("cpython-311-x86_64-linux-gnu" in name for name in compiled), compiled


def test_entrypoint_builds_the_same_runtime_as_the_zip(plugin_zip: Path, tmp_path: Path) -> None:
    """backend/entrypoint.sh as Decky's builder runs it (output folder from the environment)."""
    out = tmp_path / "out"
    env = {**os.environ, "CAPYDEPLOY_OUT": str(out), "PYTHON": sys.executable}
    subprocess.run(["sh", str(ROOT / "backend" / "entrypoint.sh")], check=True, env=env, timeout=600)

    built = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    with zipfile.ZipFile(plugin_zip) as archive:
        shipped = {name.split("/", 1)[1] for name in archive.namelist() if name.startswith(f"{PLUGIN}/py_modules/")}
    assert built == shipped


# --- running it like Decky ------------------------------------------------------------------------


class DeckyHost:
    """The child process playing Decky Loader; `call` is the panel's `call(name, ...args)`."""

    def __init__(self, process: asyncio.subprocess.Process, folders: dict[str, Path]) -> None:
        self.process = process
        self.folders = folders
        self._ids = itertools.count()
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())
        self.hello: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting["hello"] = self.hello

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            future = self._waiting.pop(message["id"], None)
            if future is None or future.done():
                continue
            if message["success"]:
                future.set_result(message["res"])
            else:
                future.set_exception(RuntimeError(message["res"]))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(RuntimeError(f"the Decky host exited: {self.stderr()}"))

    def stderr(self) -> str:
        path = self.folders["stderr"]
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def call(self, method: str, *args: Any, timeout: float = 15.0, **extra: Any) -> Any:
        request_id = str(next(self._ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"id": request_id, "method": method, "args": list(args), **extra}) + "\n").encode())
        await self.process.stdin.drain()
        return await asyncio.wait_for(future, timeout)

    async def state_where(self, check: Any, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.call("get_state")
            if check(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"state never matched; last: {state}")
            await asyncio.sleep(0.1)

    def events(self) -> list[dict[str, Any]]:
        path = self.folders["events"]
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
async def decky_host(unpacked: Path, decky_python: Path, tmp_path: Path) -> AsyncIterator[DeckyHost]:
    homebrew = unpacked.parent.parent
    folders = {
        "plugin": unpacked,
        "settings": homebrew / "settings" / PLUGIN,
        "home": tmp_path / "deck-home",
        "runtime": homebrew / "data" / PLUGIN,
        "events": tmp_path / "events.jsonl",
        "log": homebrew / "logs" / PLUGIN / "plugin.log",
        "stderr": tmp_path / "host-stderr.txt",
    }
    # A Steam install with one user, for the shortcut the panel is asked to create.
    (folders["home"] / ".local/share/Steam/userdata/52079950/config").mkdir(parents=True)
    folders["log"].parent.mkdir(parents=True)
    script = tmp_path / "decky_host.py"
    script.write_text(DECKY_HOST)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    with folders["stderr"].open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(decky_python),
            "-I",  # isolated: no PYTHONPATH, no user site, not even the script's folder
            str(script),
            *(str(folders[key]) for key in ("plugin", "settings", "home", "runtime", "events", "log")),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=tmp_path,
            env=env,
        )
    host = DeckyHost(process, folders)
    try:
        yield host
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        host._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await host._reader


def make_game(folder: Path) -> dict[str, bytes]:
    files = {
        "game.sh": b"#!/bin/sh\necho tiny game\n",
        "data/level1.bin": os.urandom(300_000),
        "data/empty.txt": b"",
    }
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    return files


@contextlib.contextmanager
def reporting(name: str) -> Iterator[None]:
    began = time.monotonic()
    yield
    print(f"{name}: {time.monotonic() - began:.3f} s")


async def play_the_panel(host: DeckyHost, app_id: int, answered: list[dict[str, Any]]) -> None:
    """What src/steamRequests.ts does: pull pending Steam requests, "create" each, report back."""
    while True:
        for request in await host.call("pending_steam_requests"):
            if any(done["id"] == request["id"] for done in answered):
                continue
            assert await host.call("steam_request_done", request["id"], {"ok": True, "appId": app_id}) is True
            answered.append(request)
        await asyncio.sleep(0.1)


async def test_unpacked_plugin_pairs_deploys_unloads_and_uninstalls(decky_host: DeckyHost, tmp_path: Path) -> None:
    hello = await asyncio.wait_for(decky_host.hello, 30)
    folders = decky_host.folders
    # It really is the fresh interpreter, our package from the unpacked zip, Decky's aiohttp.
    assert hello["python"][:2] == [3, 11]
    assert Path(hello["capydeploy"]).is_relative_to(folders["plugin"] / "py_modules")
    assert Path(hello["pydantic_core"]).is_relative_to(folders["plugin"] / "py_modules")
    assert hello["aiohttp"] == "3.10.11"
    assert not Path(hello["aiohttp_file"]).is_relative_to(folders["plugin"])

    state = await decky_host.state_where(lambda s: s["running"] or s["error"])
    assert state["error"] is None, state["error"]
    assert state["installDir"] == str(folders["home"] / "Games")
    port = state["port"]

    codes: list[str] = []

    async def read_code_from_panel(_: m.PairingRequired) -> str:
        shown = await decky_host.state_where(lambda s: s["pairing"] is not None)
        codes.append(str(shown["pairing"]["code"]))
        return codes[-1]

    client = HubClient(
        f"ws://127.0.0.1:{port}/ws", config_dir=tmp_path / "hub", pair=read_code_from_panel, reconnect=False
    )
    try:
        await client.connect()
        info = await client.get_info()
        assert info.agent.id == state["agentId"]

        game = tmp_path / "Tiny Game"
        files = make_game(game)
        answered: list[dict[str, Any]] = []
        panel = asyncio.create_task(play_the_panel(decky_host, 3_000_000_123, answered))
        try:
            with reporting("deploy"):
                result = await client.deploy(game, DeployOptions(game_name="Tiny Game", executable="game.sh"))
        finally:
            panel.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await panel
        installed = folders["home"] / "Games" / "Tiny Game"
        assert Path(result.path) == installed
        # The shortcut went through the panel's SteamClient bridge and came back with its appId.
        assert result.shortcut_error is None, result.shortcut_error
        assert result.app_id == 3_000_000_123
        assert [request["kind"] for request in answered] == ["create"]
        assert answered[0]["exe"] == str(installed / "game.sh")
        for relative, data in files.items():
            assert (installed / relative).read_bytes() == data

        after = await decky_host.state_where(lambda s: s["recentInstalls"] and s["upload"] is None)
        assert after["recentInstalls"][0]["gameName"] == "Tiny Game"
        assert [hub["name"] for hub in after["authorizedHubs"]] == [client.identity.name]
        assert after["connectedHub"] is not None

        # The panel heard it live too (events recorded by the fake decky.emit).
        events = decky_host.events()
        assert any(event["event"] == "state" for event in events)
        installs = [event["args"][0] for event in events if event["event"] == "game_installed"]
        assert installs and installs[-1]["gameName"] == "Tiny Game"
        assert [event["args"][0]["id"] for event in events if event["event"] == "steam_request"] == [
            answered[0]["id"]
        ]

        # Unload with the Hub still connected, as when the Deck shuts down mid-session.
        unload_seconds = await decky_host.call("stop", uninstall=True, timeout=30)
        print(f"_unload took {unload_seconds:.3f} s (Decky's budget: {UNLOAD_BUDGET} s)")
        assert unload_seconds < UNLOAD_BUDGET
    finally:
        await client.close()

    assert await asyncio.wait_for(decky_host.process.wait(), 10) == 0, decky_host.stderr()
    # _uninstall: the secrets and settings are gone, the installed game stays.
    assert not (folders["settings"] / "hubs.json").exists()
    assert not (folders["settings"] / "settings.json").exists()
    assert (folders["home"] / "Games" / "Tiny Game" / "game.sh").exists()

    log = folders["log"].read_text()
    assert codes and not any(code in log for code in codes), "a pairing code reached the plugin log"
    assert "could not start" not in log
    assert "Traceback" not in log, log
    assert "Traceback" not in decky_host.stderr(), decky_host.stderr()


@pytest.mark.parametrize("unpacked", ["bin"], indirect=True)
async def test_main_finds_the_runtime_where_deckys_builder_puts_it(decky_host: DeckyHost) -> None:
    hello = await asyncio.wait_for(decky_host.hello, 30)
    assert Path(hello["capydeploy"]).is_relative_to(decky_host.folders["plugin"] / "bin" / "py_modules")

    state = await decky_host.state_where(lambda s: s["running"] or s["error"])
    assert state["error"] is None, state["error"]

    unload_seconds = await decky_host.call("stop", timeout=30)
    assert unload_seconds < UNLOAD_BUDGET
    assert await asyncio.wait_for(decky_host.process.wait(), 10) == 0, decky_host.stderr()
