"""The Agent: owns its services and the websockets server; sessions do the talking."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ..memory import (
    AGENT_TUNING,
    collect_full,
    defer_full_collections,
    freeze_startup_objects,
    full_collection_due,
    keep_freed_memory,
    resume_full_collections,
    return_free_heap,
)
from ..protocol import CloseCode, MessageType, constants
from ..protocol import messages as m
from .config import AgentConfig
from .connection import Handler, HubSession
from .handlers import HANDLERS
from .hubs import HubRegistry
from .mdns import MdnsAdvertiser
from .network import lan_addresses
from .pairing import PairingCode, PairingGate
from .services import build_steam_service, build_transfer_service
from .settings import AgentSettings
from .state import (
    AgentSnapshot,
    AuthorizedHub,
    ConnectedHub,
    InstalledGame,
    PendingPairing,
    StateListener,
    UploadState,
)

log = logging.getLogger(__name__)

EventListener = Callable[[str, dict[str, Any]], None]
RECENT_INSTALLS = 10
# Full garbage collections wait until no transfer work has run for this long (see memory.py).
GC_AFTER_IDLE_SECONDS = 3.0
GC_CHECK_INTERVAL = 1.0
TRIM_WHILE_BUSY_INTERVAL = 5.0


class Agent:
    """One Agent process (standalone or inside Decky). Start it, stop it, read its snapshot."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.settings = AgentSettings.load(self.data_dir / "settings.json", config.defaults)
        if config.name:
            self.settings.name = config.name
        self.hubs = HubRegistry(self.data_dir / "hubs.json")
        self.pairing = PairingGate(code_ttl=config.pairing_code_ttl, lockout=config.pairing_lockout)
        self.transfer = build_transfer_service(self.install_dir)
        self.steam, self.steam_requests = build_steam_service(config, self._on_steam_request)
        self.handlers: dict[MessageType, Handler] = dict(HANDLERS)
        self.session: HubSession | None = None
        self.recent_installs: deque[InstalledGame] = deque(maxlen=RECENT_INSTALLS)
        self.port = config.port
        self.error: str | None = None
        self._server: Server | None = None
        # Connections not yet authenticated, oldest first (a dict keeps insertion order).
        self._handshaking: dict[HubSession, None] = {}
        self._state_listeners: list[StateListener] = []
        self._event_listeners: list[EventListener] = []
        self._upload_rate = _RateMeter()
        self._maintenance: asyncio.Task[None] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._mdns: MdnsAdvertiser | None = None
        self._mdns_start: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def install_dir(self) -> Path:
        if self.config.install_dir is not None:
            return Path(self.config.install_dir)
        if self.settings.install_dir:
            return Path(self.settings.install_dir)
        return self.config.resolved_home() / "Games"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        keep_freed_memory(AGENT_TUNING)
        freeze_startup_objects()  # shorter GC pauses on the shared loop (games of many files)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.install_dir.mkdir, parents=True, exist_ok=True)
        await self.settings.save(self.data_dir / "settings.json")
        config = self.config
        self._server = await serve(
            self._handle,
            config.host,
            config.port,
            process_request=self._process_request,
            max_size=constants.MAX_MESSAGE,
            max_queue=4,
            open_timeout=config.handshake_timeout,
            ping_interval=config.ping_period,
            ping_timeout=config.pong_wait,
            close_timeout=config.write_wait,
            write_limit=constants.CHUNK_SIZE * 4,
            compression=None,
            server_header=f"CapyDeploy-Agent/{config.version}",
        )
        sockets = list(self._server.sockets)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._maintenance = asyncio.create_task(self._maintain())
        defer_full_collections()  # no full GC pause while a transfer runs: see _collect_when_idle
        self._collector = asyncio.create_task(self._collect_when_idle())
        if config.mdns:
            self._mdns = MdnsAdvertiser(
                self.settings.agent_id,
                self.settings.name,
                config.version,
                config.platform,
                self.port,
                lambda: lan_addresses(config.host),
                interfaces=config.mdns_interfaces,
            )
            # Registration takes a second or two; serving hubs need not wait for it.
            self._mdns_start = asyncio.create_task(self._mdns.start())
        log.info("listening on ws://%s:%d%s", config.host, self.port, constants.WS_PATH)
        self.state_changed()

    async def stop(self) -> None:
        for task in (self._maintenance, self._collector):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._collector is not None:
            resume_full_collections()
        self._maintenance = self._collector = None
        server, self._server = self._server, None
        mdns, self._mdns = self._mdns, None
        if server is not None:
            server.close(close_connections=True)
        # Closing sockets and withdrawing the mDNS record run side by side: Decky allows 5 s in all.
        await asyncio.gather(self._close_server(server), self._stop_mdns(mdns))
        await self.transfer.close()
        self.state_changed()

    @staticmethod
    async def _close_server(server: Server | None) -> None:
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 3.0)

    async def _stop_mdns(self, mdns: MdnsAdvertiser | None) -> None:
        if mdns is not None:
            await mdns.stop()  # bounded, never raises
        self._mdns_start = None

    async def _maintain(self) -> None:
        """Housekeeping: expire staged uploads older than 24 h, hourly."""
        while True:
            try:
                await self.transfer.discard_expired()
            except Exception:
                log.exception("expiring staged uploads failed")
            await asyncio.sleep(3600)

    async def _collect_when_idle(self) -> None:
        """The full garbage collections `defer_full_collections` holds back, run once transfers
        have been idle for a while: a pause then stalls no upload. Write buffers are freed then too.
        While transfers run, malloc's free heap is handed back every few seconds."""
        loop = asyncio.get_running_loop()
        trimmed_at = loop.time()
        while True:
            await asyncio.sleep(GC_CHECK_INTERVAL)
            if self.transfer.idle_seconds() < GC_AFTER_IDLE_SECONDS:
                if loop.time() - trimmed_at >= TRIM_WHILE_BUSY_INTERVAL:
                    # A burst of large chunk frames, or a long list read, leaves megabytes free
                    # between blocks in use: resident for the rest of the transfer otherwise
                    # (about 19 MiB through a 100 000-file upload). 0.4-1.1 ms, in a thread.
                    await asyncio.to_thread(return_free_heap)
                    trimmed_at = loop.time()
                continue
            trimmed_at = loop.time()
            self.transfer.release_buffers()  # an abandoned upload's, say; nothing when none are kept
            if full_collection_due():
                collect_full()

    # --- the websockets shell -----------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != constants.WS_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        session = HubSession(self, websocket)
        self._admit(session)
        try:
            await session.run()
        finally:
            self._handshaking.pop(session, None)

    def _admit(self, session: HubSession) -> None:
        """Count a new connection against the handshake limits, evicting older ones to make room.

        A full set never refuses the newcomer: that let anyone on the LAN lock every hub out, the
        paired one included, by holding the slots with idle sockets. The oldest pending connection
        goes instead, so a real hub, which sends `hub_connected` within milliseconds, always gets in.
        One source address (an IPv4 address, an IPv6 /64) may hold only a few of the slots: past
        that it evicts its own oldest, so a flood from one machine cannot evict anyone else.
        Connections that already sent `hub_connected` (a pairing waiting for its code) go last.
        """
        config = self.config
        source = session.source
        while True:
            same_source = [pending for pending in self._handshaking if pending.source == source]
            if len(same_source) >= max(1, config.max_pending_per_address):
                self._evict(same_source)
            elif len(self._handshaking) >= max(1, config.max_pending_handshakes):
                self._evict(list(self._handshaking))
            else:
                break
        self._handshaking[session] = None

    def _evict(self, candidates: list[HubSession]) -> None:
        """Drop the oldest of `candidates` (ordered oldest first), preferring ones still silent."""
        victim = next((pending for pending in candidates if pending.hub_id is None), candidates[0])
        self._handshaking.pop(victim, None)
        log.debug("too many pending connections: dropping the oldest one, from %s", victim.address)
        victim.evict("too many pending connections")

    @property
    def pending_handshakes(self) -> int:
        """Connections open and not yet authenticated (at most `max_pending_handshakes`)."""
        return len(self._handshaking)

    def handshake_done(self, session: HubSession) -> None:
        """An authenticated session no longer counts against the handshake limit."""
        self._handshaking.pop(session, None)

    # --- called by sessions -------------------------------------------------------------------

    def status(self) -> m.AgentStatus:
        return m.AgentStatus(
            name=self.settings.name,
            version=self.config.version,
            platform=self.config.platform,
            accept_connections=self.settings.accept_connections,
            protocol_version=constants.PROTOCOL_VERSION,
            capabilities=list(constants.CAPABILITIES),
        )

    def info(self) -> m.InfoResponse:
        return m.InfoResponse(
            agent=m.AgentInfo(
                id=self.settings.agent_id,
                name=self.settings.name,
                platform=self.config.platform,
                capabilities=list(constants.CAPABILITIES),
                version=self.config.version,
                protocol_version=constants.PROTOCOL_VERSION,
            )
        )

    def session_ended(self, session: HubSession) -> None:
        if session.hub_id is not None:
            self.pairing.cancel(session.hub_id)
        if self.session is session:
            self.session = None
        self.state_changed()

    def pairing_started(self, code: PairingCode) -> None:
        self.emit("pairing", {"code": code.code, "hubName": code.hub_name, "expiresIn": self.pairing.code_ttl})
        self.state_changed()

    def game_installed(self, game: InstalledGame) -> None:
        self.recent_installs.appendleft(game)
        self.emit("game_installed", {"gameName": game.game_name, "path": game.path, "appId": game.app_id})
        self.state_changed()

    def _on_steam_request(self, request: dict[str, Any]) -> None:
        """The Steam-client backend asks the panel to act; the panel also pulls pending ones."""
        self.emit("steam_request", request)

    def progress_changed(self) -> None:
        progress = self.transfer.progress()
        if progress is not None:
            self._upload_rate.add(progress.upload_id, progress.transferred_bytes)
        self.state_changed()

    # --- listeners ----------------------------------------------------------------------------

    def add_state_listener(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)

    def add_event_listener(self, listener: EventListener) -> None:
        self._event_listeners.append(listener)

    def state_changed(self) -> None:
        if not self._state_listeners:
            return
        snapshot = self.snapshot()
        for listener in list(self._state_listeners):
            try:
                listener(snapshot)
            except Exception:
                log.exception("state listener failed")

    def emit(self, name: str, data: dict[str, Any]) -> None:
        for listener in list(self._event_listeners):
            try:
                listener(name, data)
            except Exception:
                log.exception("event listener failed")

    # --- the snapshot -------------------------------------------------------------------------

    def snapshot(self) -> AgentSnapshot:
        pending = self.pairing.pending()
        now_wall, now_mono = time.time(), time.monotonic()
        session = self.session
        return AgentSnapshot(
            agent_id=self.settings.agent_id,
            name=self.settings.name,
            version=self.config.version,
            platform=self.config.platform,
            running=self.running,
            host=self.config.host,
            port=self.port,
            addresses=lan_addresses(self.config.host),
            accept_connections=self.settings.accept_connections,
            install_dir=str(self.install_dir),
            pairing=None
            if pending is None
            else PendingPairing(
                code=pending.code,
                hub_name=pending.hub_name,
                expires_at=now_wall + (pending.expires_at - now_mono),
                expires_in=max(0.0, pending.expires_at - now_mono),
            ),
            lockout_remaining=self.pairing.lockout_remaining(),
            connected_hub=None
            if session is None or session.hub_id is None
            else ConnectedHub(
                id=session.hub_id,
                name=session.hub_name,
                platform=session.hub_platform,
                address=session.address,
                authenticated=session.authenticated,
                connected_at=session.connected_at,
            ),
            authorized_hubs=[
                AuthorizedHub(
                    id=hub.id, name=hub.name, platform=hub.platform, paired_at=hub.paired_at, last_seen=hub.last_seen
                )
                for hub in self.hubs.records()
            ],
            upload=self._upload_state(),
            recent_installs=list(self.recent_installs),
            error=self.error,
        )

    def _upload_state(self) -> UploadState | None:
        progress = self.transfer.progress()
        if progress is None:
            return None
        speed = self._upload_rate.rate(progress.upload_id)
        left = progress.total_bytes - progress.transferred_bytes
        return UploadState(
            upload_id=progress.upload_id,
            game_name=progress.game_name,
            current_file=progress.current_file,
            transferred_bytes=progress.transferred_bytes,
            total_bytes=progress.total_bytes,
            percentage=100.0 * progress.transferred_bytes / progress.total_bytes if progress.total_bytes else 100.0,
            bytes_per_second=speed,
            seconds_remaining=left / speed if speed > 0 else None,
        )

    # --- what the device's user can do (panel, terminal) --------------------------------------

    async def set_accept_connections(self, enabled: bool) -> None:
        self.settings.accept_connections = bool(enabled)
        await self.settings.save(self.data_dir / "settings.json")
        self.state_changed()

    async def set_name(self, name: str) -> None:
        name = name.strip()
        if not name or len(name) > constants.MAX_NAME_LENGTH:
            raise ValueError("the name must be 1 to 255 characters")
        self.settings.name = name
        await self.settings.save(self.data_dir / "settings.json")
        if self._mdns is not None:
            await self._mdns.set_name(name)
        self.state_changed()

    async def set_install_dir(self, path: str) -> None:
        folder = Path(path).expanduser()
        if not folder.is_absolute():
            raise ValueError("the install folder must be an absolute path")
        if self.transfer.progress() is not None:
            raise ValueError("an upload is in progress")
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        self.settings.install_dir = str(folder)
        await self.settings.save(self.data_dir / "settings.json")
        await self.transfer.close()
        self.transfer = build_transfer_service(self.install_dir)
        self.state_changed()

    def reset_pairing_lockout(self) -> None:
        self.pairing.reset_lockout()
        self.state_changed()

    async def revoke_hub(self, hub_id: str) -> bool:
        revoked = await self.hubs.revoke(hub_id)
        session = self.session
        if session is not None and session.hub_id == hub_id:
            await session.close(CloseCode.REVOKED, "token revoked on the device")
        self.state_changed()
        return revoked

    async def disconnect_hub(self) -> bool:
        session = self.session
        if session is None:
            return False
        await session.close(CloseCode.NORMAL, "disconnected on the device")
        return True

    async def cancel_upload(self) -> bool:
        progress = self.transfer.progress()
        session = self.session
        if progress is None:
            return False
        await self.transfer.cancel_upload(progress.hub_id, progress.upload_id)
        if session is not None and session.authenticated:
            with contextlib.suppress(Exception):
                await session.push(
                    MessageType.OPERATION_EVENT,
                    m.OperationEvent(
                        type="install",
                        status=m.OperationStatus.ERROR,
                        game_name=progress.game_name,
                        progress=0,
                        message="Upload cancelled on the device",
                    ),
                )
        self.state_changed()
        return True

    async def forget_secrets(self) -> None:
        """Remove every hub token (plugin uninstall)."""
        await self.hubs.clear()


class _RateMeter:
    """Bytes per second over the last few seconds, for the panel's speed and time left."""

    WINDOW = 3.0

    def __init__(self) -> None:
        self._upload_id = ""
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, upload_id: str, transferred: int) -> None:
        now = time.monotonic()
        if upload_id != self._upload_id:
            self._upload_id = upload_id
            self._samples.clear()
        self._samples.append((now, transferred))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.WINDOW:
            self._samples.popleft()

    def rate(self, upload_id: str) -> float:
        if upload_id != self._upload_id or len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
