"""The plugin's backend: runs the Agent inside Decky's process and serves the panel's calls.

Never imports Decky's `decky` module: `main.py` hands over the folders, the logger and `emit`.
Decky may call any panel method before `start()` has finished (or after it failed), so each one
copes: `get_state()` answers at once, the others wait a little for the start, then explain.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..agent.config import AgentConfig
from ..agent.server import Agent
from ..agent.settings import AgentSettings
from ..agent.state import AgentSnapshot
from ..redaction import install_redaction
from .config import DEFAULTS_FILE, build_agent_config, load_plugin_defaults
from .emitter import DEFAULT_INTERVAL, Emit, StateEmitter

FORWARDED_EVENTS = frozenset({"game_installed", "steam_request"})
STOP_BUDGET = 4.0  # Decky sends SIGKILL 5 s after asking us to unload
READY_TIMEOUT = 10.0
# What the Agent keeps in Decky's settings folder; uninstall removes exactly these.
_AGENT_FILES = ("hubs.json", "settings.json")
_AGENT_FOLDERS = ("steam-requests",)


class AgentUnavailable(RuntimeError):
    """A panel call that needs the Agent when it is not running; the message is shown to the user."""


class DeckyPlugin:
    """Builds the Agent from Decky's folders; `start`, `stop`, `uninstall`, and the panel's methods."""

    def __init__(
        self,
        settings_dir: str | Path,
        user_home: str | Path,
        plugin_dir: str | Path,
        logger: logging.Logger,
        emit: Emit,
        *,
        defaults_file: str | Path | None = None,
        state_interval: float = DEFAULT_INTERVAL,
        ready_timeout: float = READY_TIMEOUT,
        stop_budget: float = STOP_BUDGET,
    ) -> None:
        self.log = logger
        _install_redaction_on(logger)
        self.settings_dir = Path(settings_dir)
        self.plugin_dir = Path(plugin_dir)
        defaults_path = Path(defaults_file) if defaults_file is not None else self.plugin_dir / DEFAULTS_FILE
        self.config: AgentConfig = build_agent_config(
            settings_dir, user_home, load_plugin_defaults(defaults_path, logger), logger
        )
        self.agent: Agent | None = None
        self.error: str | None = None  # a failure before the Agent object existed
        self.ready_timeout = ready_timeout
        self.stop_budget = stop_budget
        self._emitter = StateEmitter(emit, logger, interval=state_interval)
        self._started = asyncio.Event()
        self._start_called = False
        self._initial = self._read_settings()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the Agent. A failure is logged with its cause and shown in the state's `error`."""
        if self._start_called:
            return
        self._start_called = True
        self._emitter.start()
        try:
            agent = Agent(self.config)
            self.agent = agent
            agent.add_state_listener(self._emitter.update)
            agent.add_event_listener(self._on_event)
            await agent.start()
            self.log.info(
                "CapyDeploy agent %s listening on %s:%d (install folder %s)",
                agent.settings.agent_id,
                self.config.host,
                agent.port,
                agent.install_dir,
            )
        except Exception as error:
            await self._start_failed(error)
        finally:
            self._started.set()
            self._emitter.update(self._snapshot())

    async def stop(self) -> None:
        """Stop serving and flush the last state; returns within `stop_budget` seconds whatever hangs."""
        began = time.monotonic()
        deadline = began + self.stop_budget
        if self._start_called and not self._started.is_set():
            # An unload during start-up: give the start a moment so there is something to stop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._started.wait(), min(1.0, self.stop_budget / 4))
        agent = self.agent
        if agent is not None:
            stopping = asyncio.ensure_future(agent.stop())
            done, _ = await asyncio.wait({stopping}, timeout=max(0.1, deadline - time.monotonic() - 0.5))
            if not done:
                stopping.cancel()
                self.log.warning("the agent did not stop within the budget; leaving the rest to the process exit")
            elif (error := stopping.exception()) is not None:
                self.log.error("stopping the agent failed: %s", _describe(error), exc_info=error)
        await self._emitter.flush(max(0.05, min(0.5, deadline - time.monotonic())))
        self._emitter.close()
        self.log.info("CapyDeploy agent stopped in %.2f s", time.monotonic() - began)

    async def uninstall(self) -> None:
        """Forget every hub's token and remove the Agent's files from Decky's settings folder."""
        agent = self.agent
        if agent is not None:
            try:
                await asyncio.wait_for(agent.forget_secrets(), 2.0)
            except Exception as error:
                self.log.error("forgetting the hubs' tokens failed: %s", _describe(error))
        await asyncio.to_thread(self._remove_agent_files)
        self.log.info("CapyDeploy settings and secrets removed from %s", self.settings_dir)

    # --- the panel's calls (names as src/backend.ts calls them) -------------------------------

    async def get_state(self) -> dict[str, Any]:
        return self._snapshot().to_wire()

    async def set_accept_connections(self, on: bool) -> None:
        with self._reported("set_accept_connections"):
            agent = await self._require_agent()
            await agent.set_accept_connections(bool(on))

    async def cancel_upload(self) -> bool:
        with self._reported("cancel_upload"):
            agent = await self._require_agent()
            return await agent.cancel_upload()

    async def revoke_hub(self, hub_id: str) -> bool:
        with self._reported("revoke_hub"):
            agent = await self._require_agent()
            return await agent.revoke_hub(str(hub_id))

    async def disconnect_hub(self) -> bool:
        with self._reported("disconnect_hub"):
            agent = await self._require_agent()
            return await agent.disconnect_hub()

    async def reset_pairing_lockout(self) -> None:
        with self._reported("reset_pairing_lockout"):
            agent = await self._require_agent()
            agent.reset_pairing_lockout()

    async def set_agent_name(self, name: str) -> None:
        with self._reported("set_agent_name"):
            agent = await self._require_agent()
            await agent.set_name(str(name))

    async def set_install_dir(self, path: str) -> None:
        with self._reported("set_install_dir"):
            agent = await self._require_agent()
            await agent.set_install_dir(str(path))

    async def pending_steam_requests(self) -> list[dict[str, Any]]:
        """Shortcut requests the panel has not answered yet; [] while the Agent is not there."""
        with self._reported("pending_steam_requests"):
            requests = await self._steam_requests()
            if requests is None:
                return []
            return list(await requests.pending_requests())

    async def steam_request_done(self, request_id: str, result: Mapping[str, Any] | None) -> bool:
        """The panel's answer to one shortcut request; False when nobody knows that request."""
        with self._reported("steam_request_done"):
            requests = await self._steam_requests()
            if requests is None:
                return False
            return bool(await requests.complete_request(str(request_id), result))

    # --- helpers ------------------------------------------------------------------------------

    async def _require_agent(self) -> Agent:
        await self._wait_started()
        if self.agent is None:
            raise AgentUnavailable(f"the CapyDeploy agent is not running: {self.error or 'not started'}")
        return self.agent

    async def _wait_started(self) -> None:
        if self._started.is_set():
            return
        try:
            await asyncio.wait_for(self._started.wait(), self.ready_timeout)
        except TimeoutError:
            raise AgentUnavailable("the CapyDeploy agent is still starting; try again in a moment") from None

    async def _steam_requests(self) -> Any:
        try:
            await self._wait_started()
        except AgentUnavailable:
            return None
        # Added to Agent by the Steam-client shortcut backend; absent on an Agent without it.
        return getattr(self.agent, "steam_requests", None)

    @contextlib.contextmanager
    def _reported(self, call: str) -> Iterator[None]:
        """Log a failed panel call with its context; Decky hands str(error) to the panel."""
        try:
            yield
        except AgentUnavailable as error:
            self.log.warning("%s: %s", call, error)
            raise
        except ValueError as error:  # the user's input was refused: say why, no traceback
            self.log.warning("%s refused: %s", call, error)
            raise
        except Exception:
            self.log.exception("%s failed", call)
            raise

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "game_installed":
            self.log.info("installed %s at %s (appId %s)", data.get("gameName"), data.get("path"), data.get("appId"))
        if name in FORWARDED_EVENTS:
            self._emitter.event(name, data)

    async def _start_failed(self, error: Exception) -> None:
        message = f"The agent could not start: {_describe_start_error(error, self.config)}"
        self.log.error("%s", message, exc_info=error)
        agent = self.agent
        if agent is None:
            self.error = message
            return
        agent.error = message
        if agent.running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent.stop(), 2.0)

    def _read_settings(self) -> AgentSettings | None:
        try:
            return AgentSettings.load(self.settings_dir / "settings.json", self.config.defaults)
        except Exception as error:
            self.log.warning("could not read the agent's settings: %s", _describe(error))
            return None

    def _snapshot(self) -> AgentSnapshot:
        agent = self.agent
        if agent is not None:
            try:
                return agent.snapshot()
            except Exception as error:
                self.log.exception("building the agent's state failed")
                return self._placeholder(f"the agent's state is unavailable: {_describe(error)}")
        return self._placeholder(self.error)

    def _placeholder(self, error: str | None) -> AgentSnapshot:
        """The state's shape while no Agent answers (starting, or failed to start)."""
        config, initial = self.config, self._initial
        install_dir = initial.install_dir if initial and initial.install_dir else str(config.resolved_home() / "Games")
        return AgentSnapshot(
            agent_id=initial.agent_id if initial else "",
            name=initial.name if initial else "",
            version=config.version,
            platform=config.platform,
            running=False,
            host=config.host,
            port=config.port,
            addresses=[],
            accept_connections=initial.accept_connections if initial else True,
            install_dir=install_dir,
            pairing=None,
            lockout_remaining=0.0,
            connected_hub=None,
            authorized_hubs=[],
            upload=None,
            recent_installs=[],
            error=error,
        )

    def _remove_agent_files(self) -> None:
        folder = self.settings_dir
        if not folder.is_dir():
            return
        for entry in os.listdir(folder):
            path = folder / entry
            # The files themselves and the temp files an interrupted atomic write left behind.
            if entry in _AGENT_FILES or any(entry.startswith(f".{name}.") for name in _AGENT_FILES):
                path.unlink(missing_ok=True)
            elif entry in _AGENT_FOLDERS and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when nothing else is left in it


def _install_redaction_on(logger: logging.Logger) -> None:
    """Codes and tokens stay out of Decky's plugin log, whichever handler writes the line."""
    install_redaction()
    current: logging.Logger | None = logger
    while current is not None:
        install_redaction(current)
        current = current.parent if current.propagate else None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _describe_start_error(error: Exception, config: AgentConfig) -> str:
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return f"port {config.port} is already in use by another program ({error.strerror})"
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {error.strerror} ({error.filename or f'{config.host}:{config.port}'})"
    return _describe(error)
