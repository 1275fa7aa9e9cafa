"""One hub's session: handshake -> pairing -> authenticated requests, every request answered once."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..memory import return_free_heap
from ..protocol import (
    REPLY_TYPE,
    CloseCode,
    ErrorCode,
    MessageType,
    ProtocolError,
    decode_chunk,
    encode_error,
    encode_message,
    new_message_id,
    parse_envelope,
    parse_request,
    parse_request_text,
)
from ..protocol import messages as m
from ..protocol.constants import MAX_UNACKED_WORK
from ..protocol.envelope import Envelope
from ..protocol.fitting import fits
from ..protocol.map_message import encode_map_message
from .pairing import PairingOutcome

if TYPE_CHECKING:
    from .server import Agent

log = logging.getLogger(__name__)

# Requests of one hub handled at once; past this the session stops reading (back-pressure).
MAX_CONCURRENT_REQUESTS = 128

# Requests that are not cancelled when the hub's connection drops: they run to the end, only the
# reply is lost, and the hub finds the outcome when it comes back. A complete_upload cancelled while
# its install ran in a worker thread left the game installed but the upload open, and every resume
# of it then failed with 500 (see docs/reliability.md, suite 3).
RUN_TO_COMPLETION = frozenset({MessageType.COMPLETE_UPLOAD})

# Text frames longer than this are parsed and validated in a worker thread, and replies listing
# more files than this are encoded there, so a game of many files never stalls the loop.
PARSE_OFF_LOOP_FROM = 64 * 1024
ENCODE_OFF_LOOP_FROM_ENTRIES = 1000
RETURN_HEAP_FROM = 1024 * 1024

Handler = Callable[["HubSession", Any], Awaitable[BaseModel | None]]


class SessionClosed(Exception):
    """Raised inside a session to stop serving it (the socket is already being closed)."""


class HubSession:
    """Serves one WebSocket connection for its whole life."""

    def __init__(self, agent: Agent, websocket: ServerConnection) -> None:
        self.agent = agent
        self.websocket = websocket
        self.hub_id: str | None = None
        self.hub_name = ""
        self.hub_platform = ""
        self.authenticated = False
        self.connected_at = time.time()
        self.address = _peer_address(websocket)
        self.source = source_of(self.address)  # the key of the per-address handshake limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._uncancellable: set[asyncio.Task[None]] = set()
        self._unacked_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._last_progress = 0.0
        self._deadline: float | None = None  # loop time by which the handshake must progress

    # --- the read loop ------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.agent.config.handshake_timeout
        try:
            while True:
                # Not bound to a local of this loop: the last message (an init_upload of a big game
                # is megabytes) would stay alive until the next one arrives.
                await self._dispatch(await self._receive(loop))
        except (ConnectionClosed, SessionClosed):
            pass
        finally:
            for task in list(self._tasks):
                if task not in self._uncancellable:
                    task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self.agent.session_ended(self)

    async def _dispatch(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self._on_binary(message)
        else:
            await self._on_text(message)

    async def _receive(self, loop: asyncio.AbstractEventLoop) -> str | bytes:
        if self.authenticated or self._deadline is None:
            return await self._receive_in_fragments()
        remaining = self._deadline - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            return await asyncio.wait_for(self.websocket.recv(), remaining)
        except TimeoutError:
            reason = "no hub_connected in time" if self.hub_id is None else "pairing timed out"
            await self.close(CloseCode.POLICY_VIOLATION, reason)
            raise SessionClosed from None

    async def _receive_in_fragments(self) -> str | bytes:
        """The next message, joined here from its fragments (a long one comes in several, see
        the Hub's `in_fragments`). websockets' own `recv` keeps every fragment while it decodes the
        joined copy: three times the message at once, 30 MB for the file list of a game of
        100 000 files, against twice here. Not for use under a timeout: a cancelled stream
        leaves the connection unusable (the handshake's deadline uses `recv`)."""
        fragments = [fragment async for fragment in self.websocket.recv_streaming()]
        if len(fragments) == 1:
            return fragments[0]
        if isinstance(fragments[0], str):
            return "".join(cast(list[str], fragments))
        return b"".join(cast(list[bytes], fragments))

    # --- sending ------------------------------------------------------------------------------

    async def _send(self, text: str | Iterable[str] | AsyncIterable[str]) -> None:
        """Send one message (pieces of text: as its fragments); a send stuck longer than Write
        Wait closes the connection (D4)."""
        try:
            # asyncio.timeout, not wait_for: no task per frame (a game of many files means
            # thousands of acknowledgements a second), and no cancellation dropped (see the Hub).
            async with asyncio.timeout(self.agent.config.write_wait):
                await self.websocket.send(text)
        except TimeoutError:
            log.warning("hub %s: write timed out, closing", self.hub_id)
            self.websocket.transport.abort()
            raise SessionClosed from None

    async def reply(self, request_id: str, message_type: MessageType, payload: BaseModel | None) -> None:
        if not _is_large(payload):
            text = encode_message(message_type, payload, request_id)
            if payload is None or fits(text):
                await self._send(text)
                return
        # A per-file map of a big game (or a few files with very long paths): counted off the
        # loop, then its pieces are made as they are sent (a batch of entries each), off it too.
        assert payload is not None
        pieces = await asyncio.to_thread(_encode_within_limit, message_type, payload, request_id)
        await self._send(_made_off_the_loop(pieces))

    async def reply_error(self, code: ErrorCode | int, message: str, request_id: str | None) -> None:
        await self._send(encode_error(code, message, request_id))

    async def push(self, message_type: MessageType, payload: BaseModel) -> None:
        """A push event: fresh id, no request to answer (D2)."""
        await self._send(encode_message(message_type, payload, new_message_id()))

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(int(code), reason), self.agent.config.write_wait)

    def evict(self, reason: str) -> None:
        """Drop a connection still in the handshake to make room for a newer one, at once: a 1008
        close frame, then the TCP connection is closed without waiting for an answer (an idle peer
        may never give one, and a flood of evicted sockets must not pile up). `run` then ends."""
        websocket = self.websocket
        with contextlib.suppress(Exception):
            websocket.protocol.fail(CloseCode.POLICY_VIOLATION, reason)  # queues the close frame
            websocket.send_data()
        transport = websocket.transport
        transport.close()  # once the close frame is handed to the kernel
        if transport.get_write_buffer_size():  # a peer that reads nothing cannot hold it open
            asyncio.get_running_loop().call_later(1.0, transport.abort)

    # --- text frames --------------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        try:
            if len(text) > PARSE_OFF_LOOP_FROM:
                # An init_upload of thousands of files takes a pydantic pass per path: hundreds of
                # milliseconds the loop (shared with the plugin's UI) must not stand still for.
                long_list = len(text) > RETURN_HEAP_FROM
                if long_list:
                    # Idle write buffers (megabytes) need not sit through the parse of a long list
                    # either (init_upload frees them too, but only once the request is parsed).
                    self.agent.transfer.release_buffers()
                envelope, message_type, payload = await asyncio.to_thread(_parse_large_text, text, long_list)
            else:
                envelope = parse_envelope(text)
                message_type, payload = parse_request(envelope)
        except ProtocolError as error:
            await self.reply_error(error.code, error.message, error.request_id)
            return
        request_id = envelope.id
        if message_type == MessageType.PING:
            await self.reply(request_id, MessageType.PONG, None)
        elif message_type == MessageType.HUB_CONNECTED:
            assert isinstance(payload, m.HubConnected)
            await self._on_hub_connected(request_id, payload)
        elif message_type == MessageType.PAIR_CONFIRM:
            assert isinstance(payload, m.PairConfirm)
            await self._on_pair_confirm(request_id, payload)
        elif not self.authenticated:
            reason = "pairing required" if self.hub_id else "send hub_connected first"
            await self.reply_error(ErrorCode.UNAUTHORIZED, f"unauthorized: {reason}", request_id)
        else:
            await self._spawn_bounded(
                self._answer(request_id, message_type, payload), finish=message_type in RUN_TO_COMPLETION
            )

    async def _spawn_bounded(self, coroutine: Awaitable[None], finish: bool = False) -> None:
        """Start a request task, but read no further while too many are still running."""
        while len(self._tasks) >= MAX_CONCURRENT_REQUESTS:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        self._spawn(coroutine, finish)

    def _spawn(self, coroutine: Awaitable[None], finish: bool = False) -> None:
        """Start a task of this session; `finish` ones are awaited, not cancelled, when it ends."""
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if finish:
            self._uncancellable.add(task)
            task.add_done_callback(self._uncancellable.discard)

    async def _answer(self, request_id: str, message_type: MessageType, payload: BaseModel) -> None:
        """Run one authenticated request and send its single reply."""
        handler = self.agent.handlers.get(message_type)
        try:
            if handler is None:
                raise ProtocolError(ErrorCode.NOT_IMPLEMENTED, f"{message_type.value} is not supported")
            result = await handler(self, payload)
        except ProtocolError as error:
            await self.reply_error(error.code, error.message, request_id)
        except asyncio.CancelledError:
            raise
        except (ConnectionClosed, SessionClosed):
            log.info("hub %s left before %s finished; no reply sent", self.hub_id, message_type.value)
        except Exception:
            log.exception("hub %s: %s failed", self.hub_id, message_type.value)
            await self.reply_error(ErrorCode.INTERNAL, f"{message_type.value} failed: internal error", request_id)
        else:
            await self.reply(request_id, REPLY_TYPE[message_type], result)

    # --- handshake and pairing (D3) -----------------------------------------------------------

    async def _on_hub_connected(self, request_id: str, hello: m.HubConnected) -> None:
        if self.hub_id is not None:
            await self.reply_error(ErrorCode.BAD_REQUEST, "hub_connected was already received", request_id)
            return
        agent = self.agent
        token_valid = agent.hubs.verify(hello.hub_id, hello.token)
        if not agent.settings.accept_connections:
            await self.reply_error(ErrorCode.BLOCKED, "connections are blocked on the device", request_id)
            await self.close(CloseCode.NORMAL, "connections blocked")
            raise SessionClosed
        current = agent.session
        if current is not None and current is not self:
            same_hub = current.hub_id == hello.hub_id
            # A paired hub (valid token) takes the slot from its own stale session, and from a
            # connection still waiting for a pairing code: otherwise any LAN client that starts a
            # pairing could keep the paired hub out for the code's whole life.
            if not (token_valid and (same_hub or not current.authenticated)):
                # Generic on purpose: an unauthenticated peer learns nothing about the connected hub.
                await self.reply_error(ErrorCode.CONFLICT, "another hub is connected", request_id)
                await self.close(CloseCode.NORMAL, "another hub is connected")
                raise SessionClosed
            log.info("hub %s reconnected; closing its stale session", hello.hub_id)
            agent.session = None
            await current.close(CloseCode.GOING_AWAY, "replaced by a new connection")
        self.hub_id = hello.hub_id
        self.hub_name = hello.name
        self.hub_platform = hello.platform or ""
        agent.session = self
        if token_valid:
            await self._become_authenticated()
            await self.reply(request_id, MessageType.AGENT_STATUS, agent.status())
            return
        if agent.pairing.lockout_remaining() > 0:
            seconds = int(agent.pairing.lockout_remaining()) + 1
            await self.reply_error(
                ErrorCode.UNAUTHORIZED, f"pairing is locked for {seconds} s after too many wrong codes", request_id
            )
            await self.close(CloseCode.POLICY_VIOLATION, "pairing locked")
            raise SessionClosed
        code = agent.pairing.start(hello.hub_id, hello.name)
        self._deadline = asyncio.get_running_loop().time() + agent.pairing.code_ttl
        log.info("hub %s (%s) asked to pair; code shown on the device", hello.hub_id, hello.name)
        agent.pairing_started(code)
        expires_in = max(0, round(code.expires_at - time.monotonic()))
        await self.reply(request_id, MessageType.PAIRING_REQUIRED, m.PairingRequired(expires_in=expires_in))

    async def _on_pair_confirm(self, request_id: str, confirm: m.PairConfirm) -> None:
        agent = self.agent
        if self.authenticated:
            await self.reply_error(ErrorCode.BAD_REQUEST, "already paired", request_id)
            return
        if self.hub_id is None:
            await self.reply(request_id, MessageType.PAIR_FAILED, m.PairFailed(reason="send hub_connected first"))
            return
        outcome = agent.pairing.confirm(self.hub_id, confirm.code)
        if outcome is PairingOutcome.ACCEPTED:
            token = await agent.hubs.authorize(self.hub_id, self.hub_name, self.hub_platform)
            log.info("hub %s paired", self.hub_id)
            await self.reply(request_id, MessageType.PAIR_SUCCESS, m.PairSuccess(token=token))
            await self._become_authenticated()
            await self.push(MessageType.AGENT_STATUS, agent.status())
            return
        reasons = {
            PairingOutcome.WRONG: f"invalid code ({agent.pairing.attempts_left()} attempts left)",
            PairingOutcome.LOCKED: "too many wrong codes; pairing is locked for "
            f"{int(agent.pairing.lockout_remaining()) + 1} s",
            PairingOutcome.EXPIRED: "code expired; reconnect to get a new one",
            PairingOutcome.NO_PAIRING: "no pairing in progress for this hub",
        }
        log.info("hub %s: pairing failed (%s)", self.hub_id, outcome.value)
        agent.state_changed()
        await self.reply(request_id, MessageType.PAIR_FAILED, m.PairFailed(reason=reasons[outcome]))

    async def _become_authenticated(self) -> None:
        assert self.hub_id is not None
        self.authenticated = True
        self._deadline = None
        self.agent.pairing.cancel(self.hub_id)
        self.agent.handshake_done(self)
        await self.agent.hubs.touch(self.hub_id, self.hub_name, self.hub_platform)
        self.agent.state_changed()

    # --- binary chunk frames (D6) ---------------------------------------------------------------

    async def _on_binary(self, data: bytes) -> None:
        if not self.authenticated:
            await self.close(CloseCode.POLICY_VIOLATION, "binary frame before authentication")
            raise SessionClosed
        # Back-pressure: read no further while too much work is unacknowledged.
        while self._unacked_bytes > MAX_UNACKED_WORK:
            self._room.clear()
            await self._room.wait()
        self._unacked_bytes += len(data)
        await self._spawn_bounded(self._answer_chunk(data))

    async def _answer_chunk(self, data: bytes) -> None:
        request_id: str | None = None
        try:
            frame = decode_chunk(data, max_data=self.agent.transfer.chunk_size)
            request_id = frame.header.id
            assert self.hub_id is not None
            result = await self.agent.transfer.write_chunk(self.hub_id, frame)
            await self.reply(request_id, MessageType.UPLOAD_CHUNK_RESPONSE, result)
            await self.maybe_push_progress()
        except ProtocolError as error:
            await self.reply_error(error.code, error.message, error.request_id or request_id)
        except (asyncio.CancelledError, SessionClosed, ConnectionClosed):
            raise
        except Exception:
            log.exception("hub %s: chunk failed", self.hub_id)
            await self.reply_error(ErrorCode.INTERNAL, "chunk failed: internal error", request_id)
        finally:
            self._unacked_bytes -= len(data)
            if self._unacked_bytes <= MAX_UNACKED_WORK:
                self._room.set()

    async def maybe_push_progress(self, force: bool = False) -> None:
        """upload_progress at most every 250 ms, and always at 100 % (D6)."""
        progress = self.agent.transfer.progress()
        if progress is None:
            return
        now = time.monotonic()
        done = progress.transferred_bytes >= progress.total_bytes
        if not force and not done and now - self._last_progress < self.agent.config.progress_interval:
            return
        self._last_progress = now
        self.agent.progress_changed()
        total = progress.total_bytes
        await self.push(
            MessageType.UPLOAD_PROGRESS,
            m.UploadProgress(
                upload_id=progress.upload_id,
                transferred_bytes=progress.transferred_bytes,
                total_bytes=total,
                current_file=progress.current_file,
                percentage=round(100.0 * progress.transferred_bytes / total, 2) if total else 100.0,
            ),
        )


def _parse_large_text(text: str, long_list: bool) -> tuple[Envelope, MessageType, BaseModel]:
    if long_list:
        # The fragments it was joined from were freed blocks of malloc's heap (10 MB for the list
        # of a game of 100 000 files): where the heap had no free room for them, it grew, and that
        # room would stay resident below what the upload makes next. Whole blocks, handed back
        # here (0.4–1.1 ms measured in the Agent) before the parse needs memory again.
        return_free_heap()
    return parse_request_text(text)


def _encode_within_limit(message_type: MessageType, payload: BaseModel, request_id: str) -> Iterator[str]:
    """A large reply as the pieces of one message, its biggest per-file map cut to the entries
    that fit (D4): a game of 100 000 files' `result_sha256` is about 12 MB. Those maps only save
    the Hub work; of a map of byte counts (`resumeFrom`) the largest are kept."""
    maps = [(name, value) for name, value in vars(payload).items() if _is_map(value)]
    if not maps:
        return iter((encode_message(message_type, payload, request_id),))
    field, entries = max(maps, key=lambda item: len(item[1]))
    kept, pieces = encode_map_message(message_type, payload, request_id, field, entries)
    if kept < len(entries):
        log.warning(
            "%s: %d of the %d entries of %s sent; the others would pass the message size limit",
            message_type.value, kept, len(entries), field,
        )
    return pieces


async def _made_off_the_loop(pieces: Iterator[str]) -> AsyncIterator[str]:
    """The pieces of a large message, each made in a worker thread as it is sent. websockets
    takes the next piece as soon as the last one is written: made on the loop, the 50 pieces of
    the map of a game of 100 000 files (1-2 ms each) held it for 60 ms at a time."""
    while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
        yield piece


def _is_map(value: object) -> bool:
    return isinstance(value, Mapping)


def _is_large(payload: BaseModel | None) -> bool:
    """A payload with a per-file map of a big game (resumeFrom, sha256): encoded off the loop."""
    if payload is None:
        return False
    # A map that is not a dict makes its entries as they are written: only the pieces can.
    return any(
        _is_map(value) and (len(value) > ENCODE_OFF_LOOP_FROM_ENTRIES or not isinstance(value, dict))
        for value in vars(payload).values()
    )


def source_of(address: str) -> str:
    """The key of the per-address handshake limit: the IPv4 address, or the /64 of an IPv6 one
    (a single host may hold a whole /64)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _peer_address(websocket: ServerConnection) -> str:
    try:
        address = websocket.remote_address
    except Exception:
        return ""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address or "")

