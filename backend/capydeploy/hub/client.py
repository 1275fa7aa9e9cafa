"""HubClient: connect, pair, correlate replies by id, keep alive, reconnect, typed requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import platform
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import websockets
from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .. import __version__
from ..protocol import CloseCode, MessageType, encode_chunk, encode_message, new_message_id
from ..protocol import constants as c
from ..protocol import messages as m
from ..protocol.catalog import REPLY_MODELS
from .address import AgentAddress, parse_agent_address
from .config import HubIdentity, hub_config_dir
from .errors import AgentError, ConnectionLost, HubError, RevokedError
from .tokens import TokenStore

if TYPE_CHECKING:
    from .deploy import DeployOptions, DeployResult, ProgressCallback
    from .hashcache import HashCache

log = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT", bound=BaseModel)
PairCallback = Callable[[m.PairingRequired], Awaitable[str]]
PushListener = Callable[[MessageType, BaseModel], None]

RECONNECT_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _platform() -> str:
    return platform.system().lower() or "unknown"


FRAGMENT_CHARS = 256 * 1024


def in_fragments(text: str) -> str | Iterator[str]:
    """A long message as several frames (one message still): a frame stays in the receiving
    websockets' parser until the next frame arrives, so the Agent would hold the last 10 MiB file
    list through the whole init_upload it starts (the Hub waits for the reply meanwhile); only a
    fragment stays so. Slices of a str split between characters: each is valid UTF-8."""
    if len(text) <= FRAGMENT_CHARS:
        return text
    return (text[start : start + FRAGMENT_CHARS] for start in range(0, len(text), FRAGMENT_CHARS))


class HubClient:
    """A connection to one Agent. Use as `async with HubClient("deck.local", ...) as client:`."""

    def __init__(
        self,
        agent: str | AgentAddress,
        *,
        config_dir: str | Path | None = None,
        pair: PairCallback | None = None,
        request_timeout: float = c.REQUEST_TIMEOUT,
        ping_period: float = c.PING_PERIOD,
        pong_wait: float = c.PONG_WAIT,
        reconnect: bool = True,
        reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
    ) -> None:
        self.address = agent if isinstance(agent, AgentAddress) else parse_agent_address(agent)
        self.config_dir = hub_config_dir(config_dir)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.identity = HubIdentity.load_or_create(self.config_dir)
        self.tokens = TokenStore(self.config_dir / "tokens.json")
        self._pair = pair
        self.request_timeout = request_timeout
        self._ping_period = ping_period
        self._pong_wait = pong_wait
        self._reconnect = reconnect
        self._reconnect_delays = reconnect_delays
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        self._listeners: list[PushListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._closing = False
        self._fatal: HubError | None = None
        self._last_received = 0.0
        self._reconnecting: asyncio.Task[None] | None = None
        self.agent_id: str | None = None
        self.status: m.AgentStatus | None = None
        self.reconnects = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> HubClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> m.AgentStatus:
        """Open the socket, say hub_connected, pair if the agent asks, learn the agent's id."""
        self._closing = False
        self._fatal = None
        await self._open()
        try:
            status = await self._handshake()
        except BaseException:
            await self.close()
            raise
        self._connected.set()
        return status

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5.0)
        await self._stop_tasks()
        self._fail_pending(ConnectionLost("the hub closed the connection"))
        self._connected.clear()

    async def _open(self) -> None:
        try:
            self._ws = await websockets.connect(
                self.address.url,
                max_size=c.MAX_MESSAGE,
                ping_interval=None,  # the hub keeps alive with JSON pings (D4)
                open_timeout=c.HANDSHAKE_TIMEOUT,
                close_timeout=c.WRITE_WAIT,
                compression=None,
                write_limit=c.CHUNK_SIZE * 4,
                max_queue=64,
            )
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as error:
            raise ConnectionLost(f"cannot connect to {self.address.url}: {error}") from None
        self._last_received = time.monotonic()
        self._tasks = [asyncio.create_task(self._read_loop(self._ws)), asyncio.create_task(self._ping_loop())]

    async def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []

    async def _handshake(self) -> m.AgentStatus:
        known_agent = self.tokens.agent_for_address(self.address.key)
        hello = m.HubConnected(
            name=self.identity.name,
            version=__version__,
            hub_id=self.identity.hub_id,
            token=self.tokens.token_for(known_agent),
            platform=_platform(),
            protocol_version=c.PROTOCOL_VERSION,
        )
        reply_type, payload = await self._exchange(MessageType.HUB_CONNECTED, hello)
        if reply_type == MessageType.PAIRING_REQUIRED:
            pairing = m.PairingRequired.model_validate(payload)
            if self._pair is None:
                raise AgentError(401, "pairing required: pair this hub first (capydeploy-hub pair AGENT)")
            code = (await self._pair(pairing)).strip()
            confirm_type, confirm = await self._exchange(MessageType.PAIR_CONFIRM, m.PairConfirm(code=code))
            if confirm_type == MessageType.PAIR_FAILED:
                raise AgentError(401, f"pairing failed: {m.PairFailed.model_validate(confirm).reason}")
            token = m.PairSuccess.model_validate(confirm).token
            info = await self.get_info()
            self.agent_id = info.agent.id
            self.tokens.save_token(self.agent_id, token, info.agent.name, self.address.key)
            self.status = m.AgentStatus(
                name=info.agent.name,
                version=info.agent.version or "",
                platform=info.agent.platform,
                accept_connections=True,
                capabilities=info.agent.capabilities,
            )
            return self.status
        if reply_type != MessageType.AGENT_STATUS:
            raise AgentError(500, f"unexpected reply {reply_type} to hub_connected")
        self.status = m.AgentStatus.model_validate(payload)
        if known_agent is None:
            info = await self.get_info()
            known_agent = info.agent.id
            self.tokens.remember_address(self.address.key, known_agent)
        self.agent_id = known_agent
        return self.status

    # --- reading and keepalive ----------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._last_received = time.monotonic()
                if isinstance(message, str):
                    self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            self._connection_dropped(ws)

    def _dispatch(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            log.warning("agent sent invalid JSON")
            return
        if not isinstance(frame, dict):
            return
        message_id = frame.get("id")
        future = self._pending.pop(message_id, None) if isinstance(message_id, str) else None
        if future is not None:
            if not future.done():
                future.set_result((str(frame.get("type")), frame))
            return
        self._deliver_push(frame)

    def _deliver_push(self, frame: dict[str, Any]) -> None:
        try:
            message_type = MessageType(str(frame.get("type")))
            model = REPLY_MODELS[message_type]
            payload = model.model_validate(frame.get("payload") or {})
        except (ValueError, KeyError, ValidationError):
            return
        if message_type == MessageType.AGENT_STATUS:
            assert isinstance(payload, m.AgentStatus)
            self.status = payload
        for listener in list(self._listeners):
            try:
                listener(message_type, payload)
            except Exception:
                log.exception("push listener failed")

    async def _ping_loop(self) -> None:
        """JSON ping every 5 s; nothing heard for 15 s means the connection is dead (D4)."""
        while True:
            await asyncio.sleep(self._ping_period)
            ws = self._ws
            if ws is None:
                return
            if time.monotonic() - self._last_received > self._pong_wait:
                log.warning("agent silent for %.0f s; dropping the connection", self._pong_wait)
                ws.transport.abort()
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.send(encode_message(MessageType.PING, None, new_message_id())), c.WRITE_WAIT)

    async def _notice_drop(self, ws: ClientConnection) -> None:
        """A send found the socket closed: wait until the read loop has seen it too (it clears
        `connected` and starts the reconnection). A send on a closed socket fails without yielding,
        so a caller that retried at once (a deploy resuming) would spin on the dead socket."""
        reader = self._tasks[0] if self._tasks else None
        if ws is self._ws and reader is not None and not reader.done():
            await asyncio.wait({reader}, timeout=c.WRITE_WAIT)

    def _connection_dropped(self, ws: ClientConnection) -> None:
        if ws is not self._ws:
            return
        self._connected.clear()
        code = ws.close_code
        if code == CloseCode.REVOKED:
            self._fatal = RevokedError()
            if self.agent_id:
                self.tokens.forget(self.agent_id)
        reason = ws.close_reason or "connection lost"
        self._fail_pending(self._fatal or ConnectionLost(f"connection to the agent lost ({code}: {reason})"))
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        # A clean close (1000) is the agent's user disconnecting us on purpose: stay away.
        if self._closing or self._fatal is not None or not self._reconnect or code == CloseCode.NORMAL:
            if self._fatal is None and not self._closing:
                self._fatal = ConnectionLost(f"the agent closed the connection ({reason})")
            return
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        """Come back with backoff; never after 4001, never after the user closed us."""
        last_error: HubError | None = None
        for delay in self._reconnect_delays:
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._stop_tasks()
                await self._open()
                await self._handshake()
            except AgentError as error:
                self._fatal = error
                break
            except HubError as error:
                last_error = error
                continue
            self.reconnects += 1
            self._connected.set()
            log.info("reconnected to %s", self.address.url)
            return
        self._fatal = self._fatal or last_error or ConnectionLost("could not reconnect")

    def _fail_pending(self, error: HubError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    # --- requests -----------------------------------------------------------------------------

    def subscribe(self, listener: PushListener) -> Callable[[], None]:
        """Receive push events (upload_progress, operation_event, agent_status); returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once connected, waiting for a reconnection in progress; raise if it failed for good."""
        if self._fatal is not None:
            raise self._fatal
        if self._connected.is_set():
            return
        task = self._reconnecting
        if task is None or task.done():
            raise ConnectionLost("not connected to the agent")
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout or self.request_timeout * 2)
        except TimeoutError:
            raise ConnectionLost("not connected to the agent") from None
        if self._fatal is not None:
            raise self._fatal
        if not self._connected.is_set():
            raise ConnectionLost("not connected to the agent")

    async def _exchange(
        self, message_type: MessageType, payload: BaseModel | None, timeout: float | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Send one request and wait for the reply with its id; agent errors raise AgentError."""
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected")
        message_id = new_message_id()
        future: asyncio.Future[tuple[str, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result and drops a
            # cancellation that lands as the inner await finishes (a cancelled deploy went on).
            async with asyncio.timeout(c.WRITE_WAIT):
                await ws.send(in_fragments(encode_message(message_type, payload, message_id)))
            async with asyncio.timeout(timeout or self.request_timeout):
                reply_type, frame = await future
        except TimeoutError:
            raise ConnectionLost(f"no reply to {message_type.value} within the request timeout") from None
        except ConnectionClosed:
            await self._notice_drop(ws)
            raise ConnectionLost("connection lost while sending") from None
        finally:
            self._pending.pop(message_id, None)
            # A drop while we were still sending fails the future too: mark it seen, or asyncio
            # logs "Future exception was never retrieved" for every request cut that way.
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()
        if reply_type == MessageType.ERROR:
            error = frame.get("error") or {}
            raise AgentError(int(error.get("code", 500)), str(error.get("message", "unknown error")))
        payload_dict = frame.get("payload") or {}
        return reply_type, payload_dict if isinstance(payload_dict, dict) else {}

    async def request(
        self, message_type: MessageType, payload: BaseModel | None, reply_model: type[ReplyT], timeout: float | None = None
    ) -> ReplyT:
        await self.wait_connected()
        _, reply = await self._exchange(message_type, payload, timeout)
        try:
            return reply_model.model_validate(reply)
        except ValidationError as error:
            raise AgentError(500, f"malformed {message_type.value} reply: {error}") from None

    async def send_chunk(self, header: m.ChunkHeader, data: bytes | memoryview) -> asyncio.Future[m.UploadChunkResponse]:
        """Send one binary chunk; the returned future resolves with its acknowledgement."""
        ws = self._ws
        if ws is None or not self._connected.is_set():
            raise ConnectionLost("not connected")
        loop = asyncio.get_running_loop()
        raw: asyncio.Future[tuple[str, dict[str, Any]]] = loop.create_future()
        self._pending[header.id] = raw
        ack: asyncio.Future[m.UploadChunkResponse] = loop.create_future()

        def settle(done: asyncio.Future[tuple[str, dict[str, Any]]]) -> None:
            if ack.done():
                return
            if done.cancelled():
                ack.cancel()
            elif (error := done.exception()) is not None:
                ack.set_exception(error)
            else:
                reply_type, frame = done.result()
                if reply_type == MessageType.ERROR:
                    body = frame.get("error") or {}
                    ack.set_exception(AgentError(int(body.get("code", 500)), str(body.get("message", ""))))
                else:
                    try:
                        ack.set_result(m.UploadChunkResponse.model_validate(frame.get("payload") or {}))
                    except ValidationError as error:
                        ack.set_exception(AgentError(500, f"malformed chunk reply: {error}"))

        raw.add_done_callback(settle)
        try:
            async with asyncio.timeout(c.WRITE_WAIT):  # not wait_for: see _exchange
                await ws.send(encode_chunk(header, data))
        except (TimeoutError, ConnectionClosed) as error:
            self._pending.pop(header.id, None)
            if isinstance(error, ConnectionClosed):
                await self._notice_drop(ws)
            raise ConnectionLost("connection lost while sending a chunk") from None
        return ack

    # --- typed requests -----------------------------------------------------------------------

    async def ping(self) -> None:
        await self.request(MessageType.PING, None, m.Empty)

    async def get_info(self) -> m.InfoResponse:
        if not self._connected.is_set():  # also used inside the handshake
            _, reply = await self._exchange(MessageType.GET_INFO, None)
            return m.InfoResponse.model_validate(reply)
        return await self.request(MessageType.GET_INFO, None, m.InfoResponse)

    async def get_config(self) -> m.ConfigResponse:
        return await self.request(MessageType.GET_CONFIG, None, m.ConfigResponse)

    async def get_steam_users(self) -> m.SteamUsersResponse:
        return await self.request(MessageType.GET_STEAM_USERS, None, m.SteamUsersResponse)

    async def list_shortcuts(self, user_id: int | str) -> m.ShortcutsResponse:
        return await self.request(MessageType.LIST_SHORTCUTS, m.ListShortcuts(user_id=user_id), m.ShortcutsResponse)

    async def create_shortcut(
        self, user_id: int | str, shortcut: m.ShortcutSpec, restart_steam: bool = False
    ) -> m.OperationResult:
        payload = m.CreateShortcut(user_id=user_id, shortcut=shortcut, restart_steam=restart_steam or None)
        return await self.request(MessageType.CREATE_SHORTCUT, payload, m.OperationResult, timeout=self.request_timeout * 3)

    async def delete_shortcut(self, user_id: int | str, app_id: int, restart_steam: bool = False) -> m.OperationResult:
        payload = m.DeleteShortcut(user_id=user_id, app_id=app_id, restart_steam=restart_steam or None)
        return await self.request(MessageType.DELETE_SHORTCUT, payload, m.OperationResult, timeout=self.request_timeout * 3)

    async def apply_artwork(
        self, user_id: int | str, app_id: int, artwork: m.Artwork, restart_steam: bool = False
    ) -> m.ArtworkResponse:
        payload = m.ApplyArtwork(user_id=user_id, app_id=app_id, artwork=artwork, restart_steam=restart_steam or None)
        return await self.request(MessageType.APPLY_ARTWORK, payload, m.ArtworkResponse, timeout=self.request_timeout * 3)

    async def restart_steam(self) -> m.SteamResponse:
        return await self.request(MessageType.RESTART_STEAM, None, m.SteamResponse, timeout=self.request_timeout * 3)

    async def init_upload(self, request: m.InitUpload) -> m.UploadInitResponse:
        return await self.request(MessageType.INIT_UPLOAD, request, m.UploadInitResponse)

    async def complete_upload(self, request: m.CompleteUpload, timeout: float | None = None) -> m.OperationResult:
        return await self.request(MessageType.COMPLETE_UPLOAD, request, m.OperationResult, timeout=timeout)

    async def cancel_upload(self, upload_id: str) -> m.OperationResult:
        return await self.request(MessageType.CANCEL_UPLOAD, m.CancelUpload(upload_id=upload_id), m.OperationResult)

    async def delete_game(self, request: m.DeleteGame) -> m.OperationResult:
        return await self.request(MessageType.DELETE_GAME, request, m.OperationResult, timeout=self.request_timeout * 3)

    # --- deploying ----------------------------------------------------------------------------

    async def deploy(
        self,
        folder: str | Path,
        options: DeployOptions | None = None,
        progress: ProgressCallback | None = None,
        cache: HashCache | None = None,
    ) -> DeployResult:
        """Send a game folder and install it (see hub/deploy.py); resumes on its own after a drop."""
        from .deploy import DeployOptions, deploy_folder  # noqa: PLC0415 - deploy builds on this module

        folder = Path(folder)
        from .hashcache import HashCache  # noqa: PLC0415

        if cache is None:
            cache = HashCache(self.config_dir / "hash-cache.json")
        return await deploy_folder(self, folder, options or DeployOptions(game_name=folder.name), progress, cache=cache)
