"""The Decky bridge with a fake emit: state before start, the throttle, start failures, bounded stop."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from capydeploy.agent.state import AgentSnapshot, UploadState
from capydeploy.decky import DEFAULTS_FILE, AgentUnavailable, DeckyPlugin
from capydeploy.decky import plugin as plugin_module
from capydeploy.redaction import RedactingFilter


class RecordingEmit:
    """Decky's `emit` as the panel would see it: (monotonic time, event, payload)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, Any]] = []
        self.fail = False

    async def __call__(self, event: str, *args: Any) -> None:
        if self.fail:
            raise ConnectionError("the frontend went away")
        self.calls.append((time.monotonic(), event, args[0] if len(args) == 1 else args))

    def states(self) -> list[dict[str, Any]]:
        return [payload for _, event, payload in self.calls if event == "state"]

    def events(self, name: str) -> list[Any]:
        return [payload for _, event, payload in self.calls if event == name]


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    plugin_dir = tmp_path / "plugins" / "CapyDeploy"
    plugin_dir.mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    (plugin_dir / DEFAULTS_FILE).write_text(
        json.dumps({"install_dir": "Games", "host": "127.0.0.1", "port": 0, "accept_connections": True, "mdns": False})
    )
    return {"settings": tmp_path / "settings" / "CapyDeploy", "home": home, "plugin": plugin_dir}


@pytest.fixture
def emit() -> RecordingEmit:
    return RecordingEmit()


PluginFactory = Callable[..., DeckyPlugin]


@pytest.fixture
async def make_plugin(folders: dict[str, Path], emit: RecordingEmit) -> AsyncIterator[PluginFactory]:
    made: list[DeckyPlugin] = []

    def make(**options: Any) -> DeckyPlugin:
        plugin = DeckyPlugin(
            settings_dir=folders["settings"],
            user_home=folders["home"],
            plugin_dir=folders["plugin"],
            logger=logging.getLogger("test.decky"),
            emit=emit,
            **options,
        )
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        await plugin.stop()


def upload_snapshot(base: AgentSnapshot, transferred: int, total: int = 1000) -> AgentSnapshot:
    upload = UploadState(
        upload_id="u1",
        game_name="Game",
        current_file="game.bin",
        transferred_bytes=transferred,
        total_bytes=total,
        percentage=100.0 * transferred / total,
        bytes_per_second=1000.0,
        seconds_remaining=(total - transferred) / 1000.0,
    )
    return base.model_copy(update={"upload": upload})


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


# --- before start ---------------------------------------------------------------------------------


async def test_get_state_before_start_has_the_snapshot_shape(make_plugin: PluginFactory, folders: dict[str, Path]) -> None:
    plugin = make_plugin()

    state = await plugin.get_state()

    expected_keys = {field.alias or name for name, field in AgentSnapshot.model_fields.items()}
    assert set(state) == expected_keys
    assert state["running"] is False
    assert state["installDir"] == str(folders["home"] / "Games")
    assert state["acceptConnections"] is True
    assert state["error"] is None
    assert state["authorizedHubs"] == []


async def test_calls_before_start_wait_then_explain(make_plugin: PluginFactory) -> None:
    plugin = make_plugin(ready_timeout=0.2)

    with pytest.raises(AgentUnavailable, match="still starting"):
        await plugin.set_accept_connections(False)
    assert await plugin.pending_steam_requests() == []
    assert await plugin.steam_request_done("r1", {"ok": True, "appId": 1}) is False


async def test_a_call_made_during_start_is_served_once_started(make_plugin: PluginFactory) -> None:
    plugin = make_plugin()
    call = asyncio.create_task(plugin.set_agent_name("Early Bird"))
    await settle()

    await plugin.start()
    await asyncio.wait_for(call, 5.0)

    assert (await plugin.get_state())["name"] == "Early Bird"


# --- start, state events, stop --------------------------------------------------------------------


async def test_start_uses_decky_folders_and_emits_state(
    make_plugin: PluginFactory, folders: dict[str, Path], emit: RecordingEmit
) -> None:
    plugin = make_plugin()
    await plugin.start()
    await settle()

    state = await plugin.get_state()
    assert state["running"] is True
    assert state["port"] > 0
    assert state["installDir"] == str(folders["home"] / "Games")
    assert (folders["home"] / "Games").is_dir()
    assert (folders["settings"] / "settings.json").is_file()
    assert plugin.config.shortcut_backend == "steam-client"
    assert plugin.config.data_dir == folders["settings"]
    assert emit.states()[-1]["running"] is True


async def test_settings_changes_are_emitted_at_once_and_in_order(make_plugin: PluginFactory, emit: RecordingEmit) -> None:
    plugin = make_plugin()
    await plugin.start()
    await settle()
    before = len(emit.states())

    await plugin.set_accept_connections(False)
    await plugin.set_accept_connections(True)
    await plugin.set_agent_name("Couch Deck")
    await settle()

    changes = emit.states()[before:]
    assert [state["acceptConnections"] for state in changes[:2]] == [False, True]
    assert changes[-1]["name"] == "Couch Deck"


async def test_upload_progress_is_throttled_and_the_last_state_arrives(
    make_plugin: PluginFactory, emit: RecordingEmit, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = make_plugin()
    await plugin.start()
    await settle()
    agent = plugin.agent
    assert agent is not None
    base = agent.snapshot()
    first = len(emit.calls)

    # 200 progress updates over ~1 s, through the Agent's own listener path.
    current = {"snapshot": base}
    monkeypatch.setattr(agent, "snapshot", lambda: current["snapshot"])
    began = time.monotonic()
    for step in range(1, 201):
        current["snapshot"] = upload_snapshot(base, transferred=step * 5)
        agent.state_changed()
        await asyncio.sleep(0.005)
    burst = time.monotonic() - began
    await asyncio.sleep(0.6)  # the trailing edge

    sent = [(at, payload) for at, event, payload in emit.calls[first:] if event == "state"]
    assert sent, "nothing was emitted"
    # At most 4 a second (+1 for the leading edge), never two closer than the interval.
    assert len(sent) <= int(burst / 0.25) + 2, f"{len(sent)} state events in {burst:.2f} s"
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(sent)]
    assert all(gap >= 0.25 - 0.02 for gap in gaps), gaps
    assert sent[-1][1]["upload"]["transferredBytes"] == 1000  # the latest state, not a stale one


async def test_the_end_of_an_upload_is_delivered(
    make_plugin: PluginFactory, emit: RecordingEmit, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = make_plugin()
    await plugin.start()
    await settle()
    agent = plugin.agent
    assert agent is not None
    base = agent.snapshot()
    current = {"snapshot": upload_snapshot(base, 10)}
    monkeypatch.setattr(agent, "snapshot", lambda: current["snapshot"])

    agent.state_changed()
    current["snapshot"] = upload_snapshot(base, 500)
    agent.state_changed()
    current["snapshot"] = base  # done: no upload any more
    agent.state_changed()
    await asyncio.sleep(0.4)

    assert emit.states()[-1]["upload"] is None


async def test_game_installed_and_steam_request_are_forwarded_pairing_is_not(
    make_plugin: PluginFactory, emit: RecordingEmit
) -> None:
    plugin = make_plugin()
    await plugin.start()
    agent = plugin.agent
    assert agent is not None

    agent.emit("game_installed", {"gameName": "Game", "path": "/home/deck/Games/Game", "appId": 123})
    agent.emit("steam_request", {"id": "r1", "kind": "remove", "appId": 123})
    agent.emit("pairing", {"code": "123456", "hubName": "PC", "expiresIn": 60})
    await settle()

    assert emit.events("game_installed") == [{"gameName": "Game", "path": "/home/deck/Games/Game", "appId": 123}]
    assert emit.events("steam_request") == [{"id": "r1", "kind": "remove", "appId": 123}]
    assert emit.events("pairing") == []


async def test_a_failing_emit_is_logged_and_later_states_still_go_out(
    make_plugin: PluginFactory, emit: RecordingEmit, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = make_plugin()
    emit.fail = True
    await plugin.start()
    await settle()
    assert "emitting 'state' failed" in caplog.text

    emit.fail = False
    await plugin.set_agent_name("Back Again")
    await settle()
    assert emit.states()[-1]["name"] == "Back Again"


async def test_stop_is_quick_and_reports_not_running(make_plugin: PluginFactory, emit: RecordingEmit) -> None:
    plugin = make_plugin()
    await plugin.start()
    await settle()

    began = time.monotonic()
    await plugin.stop()
    elapsed = time.monotonic() - began

    assert elapsed < 1.5, elapsed
    assert emit.states()[-1]["running"] is False
    assert (await plugin.get_state())["running"] is False


async def test_stop_keeps_its_budget_when_the_agent_hangs(make_plugin: PluginFactory) -> None:
    plugin = make_plugin(stop_budget=1.0)
    await plugin.start()
    agent = plugin.agent
    assert agent is not None
    release = asyncio.Event()
    real_stop = agent.stop

    async def stuck() -> None:
        while not release.is_set():  # even shrugs off cancellation, like a stuck worker
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue
        await real_stop()

    agent.stop = stuck  # type: ignore[method-assign]
    began = time.monotonic()
    await plugin.stop()
    elapsed = time.monotonic() - began
    release.set()
    await settle(0.2)

    assert elapsed < 1.3, elapsed


async def test_stop_before_start_is_harmless(make_plugin: PluginFactory) -> None:
    plugin = make_plugin()
    began = time.monotonic()
    await plugin.stop()
    assert time.monotonic() - began < 1.0


# --- failures are kept, not lost ------------------------------------------------------------------


async def test_a_busy_port_is_reported_in_the_state_and_the_log(
    make_plugin: PluginFactory, folders: dict[str, Path], emit: RecordingEmit, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        defaults = json.loads((folders["plugin"] / DEFAULTS_FILE).read_text())
        (folders["plugin"] / DEFAULTS_FILE).write_text(json.dumps({**defaults, "port": port}))
        plugin = make_plugin()

        await plugin.start()  # never raises
        await settle()

        state = await plugin.get_state()
    assert state["running"] is False
    assert state["error"] is not None
    assert f"port {port} is already in use" in state["error"]
    assert emit.states()[-1]["error"] == state["error"]
    assert "already in use" in caplog.text
    assert "Traceback" in caplog.text or any(record.exc_info for record in caplog.records)
    # The settings still work, so the user can fix things from the panel.
    await plugin.set_agent_name("Still Here")
    assert (await plugin.get_state())["name"] == "Still Here"


async def test_a_failure_before_the_agent_exists_is_kept(
    make_plugin: PluginFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_agent(config: object) -> None:
        raise PermissionError(13, "Permission denied", "/home/deck/homebrew/settings/CapyDeploy")

    monkeypatch.setattr(plugin_module, "Agent", broken_agent)
    plugin = make_plugin()

    await plugin.start()

    state = await plugin.get_state()
    assert state["running"] is False
    assert "permission denied" in state["error"].lower()
    with pytest.raises(AgentUnavailable, match="not running: The agent could not start"):
        await plugin.set_agent_name("x")
    assert await plugin.pending_steam_requests() == []
    assert "could not start" in caplog.text


async def test_refused_input_reaches_the_panel_as_an_error(make_plugin: PluginFactory) -> None:
    plugin = make_plugin()
    await plugin.start()

    with pytest.raises(ValueError, match="absolute"):
        await plugin.set_install_dir("relative/folder")
    with pytest.raises(ValueError, match="1 to 255"):
        await plugin.set_agent_name("   ")


# --- the Steam-client request queue ---------------------------------------------------------------


async def test_steam_requests_delegate_to_the_agent(make_plugin: PluginFactory) -> None:
    plugin = make_plugin()
    await plugin.start()
    agent = plugin.agent
    assert agent is not None

    class FakeQueue:
        def __init__(self) -> None:
            self.done: list[tuple[str, Any]] = []

        async def pending_requests(self) -> list[dict[str, Any]]:
            return [{"id": "r1", "kind": "remove", "appId": 7}]

        async def complete_request(self, request_id: str, result: Any) -> bool:
            self.done.append((request_id, result))
            return request_id == "r1"

    queue = FakeQueue()
    agent.steam_requests = queue  # type: ignore[attr-defined]

    assert await plugin.pending_steam_requests() == [{"id": "r1", "kind": "remove", "appId": 7}]
    assert await plugin.steam_request_done("r1", {"ok": True, "appId": 7}) is True
    assert await plugin.steam_request_done("nope", {"ok": False, "error": "x"}) is False
    assert queue.done[0] == ("r1", {"ok": True, "appId": 7})


async def test_without_a_steam_request_queue_the_answers_are_empty(make_plugin: PluginFactory) -> None:
    plugin = make_plugin()
    await plugin.start()
    agent = plugin.agent
    assert agent is not None
    if hasattr(agent, "steam_requests"):
        agent.steam_requests = None  # type: ignore[attr-defined]

    assert await plugin.pending_steam_requests() == []
    assert await plugin.steam_request_done("r1", {"ok": True, "appId": 1}) is False


# --- uninstall, logging ---------------------------------------------------------------------------


async def test_uninstall_removes_secrets_and_settings_only(make_plugin: PluginFactory, folders: dict[str, Path]) -> None:
    plugin = make_plugin()
    await plugin.start()
    agent = plugin.agent
    assert agent is not None
    await agent.hubs.authorize("hub-1", "PC", "windows")
    stranger = folders["settings"] / "someone-elses.txt"
    stranger.write_text("keep me")
    await plugin.stop()
    assert (folders["settings"] / "hubs.json").is_file()

    await plugin.uninstall()

    assert not (folders["settings"] / "hubs.json").exists()
    assert not (folders["settings"] / "settings.json").exists()
    assert stranger.read_text() == "keep me"


async def test_uninstall_leaves_no_folder_behind_when_it_held_only_ours(
    make_plugin: PluginFactory, folders: dict[str, Path]
) -> None:
    plugin = make_plugin()
    await plugin.start()
    await plugin.stop()

    await plugin.uninstall()

    assert not folders["settings"].exists()


async def test_uninstall_without_start_still_removes_the_files(folders: dict[str, Path], emit: RecordingEmit) -> None:
    folders["settings"].mkdir(parents=True)
    (folders["settings"] / "hubs.json").write_text('{"hubs": []}')
    plugin = DeckyPlugin(folders["settings"], folders["home"], folders["plugin"], logging.getLogger("t"), emit)

    await plugin.uninstall()

    assert not (folders["settings"] / "hubs.json").exists()


def test_redaction_is_installed_on_the_plugin_loggers_handlers(folders: dict[str, Path], emit: RecordingEmit) -> None:
    logger = logging.getLogger("test.decky.redaction")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        DeckyPlugin(folders["settings"], folders["home"], folders["plugin"], logger, emit)
        assert any(isinstance(existing, RedactingFilter) for existing in handler.filters)
    finally:
        logger.removeHandler(handler)


def test_defaults_file_problems_fall_back_to_built_ins(
    folders: dict[str, Path], emit: RecordingEmit, caplog: pytest.LogCaptureFixture
) -> None:
    (folders["plugin"] / DEFAULTS_FILE).write_text(json.dumps({"port": "9999", "colour": "blue", "install_dir": "/srv/games"}))

    plugin = DeckyPlugin(folders["settings"], folders["home"], folders["plugin"], logging.getLogger("t"), emit)

    assert plugin.config.port == 9999  # the built-in default: "9999" is not a number
    assert plugin.config.defaults["install_dir"] == "/srv/games"  # absolute paths stay absolute
    assert "port must be a int" in caplog.text
    assert "unknown key 'colour'" in caplog.text


def test_a_missing_defaults_file_is_not_fatal(folders: dict[str, Path], emit: RecordingEmit) -> None:
    (folders["plugin"] / DEFAULTS_FILE).unlink()

    plugin = DeckyPlugin(folders["settings"], folders["home"], folders["plugin"], logging.getLogger("t"), emit)

    assert plugin.config.port == 9999
    assert plugin.config.defaults["install_dir"] == str(folders["home"] / "Games")
