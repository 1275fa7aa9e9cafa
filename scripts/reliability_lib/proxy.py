"""A loopback TCP relay between a Hub and an Agent that trips after a chosen number of bytes.

The Hub connects to the proxy; the proxy connects to the Agent and copies bytes both ways. A
`Trip` armed on a connection counts the bytes the Hub sends (WebSocket framing, JSON and chunk
data alike) from the moment it is armed. When the count reaches the trip's budget, the proxy has
forwarded exactly `budget` bytes, stops reading from the Hub, and acts:

* `cut`   - aborts both sockets (the Hub and the Agent each see the connection reset);
* `close` - closes both sockets cleanly at the TCP level, with no WebSocket close frame;
* a callback - e.g. SIGKILL the Agent or fill its disk; the callback says whether to cut after it,
  or to go on relaying.

New connections wait at `gate` (an event) before the proxy dials the Agent, so a suite can check
the disk while no Hub traffic reaches the Agent. Trips queued with `queue_trips` are armed on the
next connections, one per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

READ_SIZE = 256 * 1024

# Returns True to cut the connection after the callback, False to keep relaying.
TripCallback = Callable[["Link", "Trip"], Awaitable[bool]]


@dataclass
class Trip:
    budget: int  # bytes from the Hub forwarded before acting
    action: str = "cut"  # "cut", "close" or "call"
    callback: TripCallback | None = None
    tag: str = ""


@dataclass
class ProxyStats:
    connections: int = 0
    trips: int = 0
    cuts: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    tripped_at: list[int] = field(default_factory=list)


class Link:
    """One Hub connection and its Agent connection."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        agent: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.agent_reader, self.agent_writer = agent
        self.trip: Trip | None = None
        self.counted = 0  # bytes from the Hub since the trip was armed
        self.up_total = 0
        self.closed = asyncio.Event()

    def arm(self, trip: Trip | None) -> None:
        self.trip = trip
        self.counted = 0

    def cut(self, clean: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for writer in (self.client_writer, self.agent_writer):
            if clean:
                writer.close()
            else:
                writer.transport.abort()

    async def run(self) -> None:
        up = asyncio.create_task(self._pump_up())
        down = asyncio.create_task(self._pump_down())
        closed = asyncio.create_task(self.closed.wait())
        try:
            await asyncio.wait({up, down, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down, closed):
                task.cancel()
            await asyncio.gather(up, down, closed, return_exceptions=True)
            if not self.closed.is_set():
                self.cut(clean=True)

    async def _pump_up(self) -> None:
        stats = self.proxy.stats
        while True:
            data = await self.client_reader.read(READ_SIZE)
            if not data:
                return
            trip = self.trip
            if trip is not None and self.counted + len(data) >= trip.budget:
                keep = max(0, trip.budget - self.counted)
                if keep:
                    self.agent_writer.write(data[:keep])
                    await self.agent_writer.drain()
                stats.bytes_up += keep
                self.up_total += keep
                self.counted += keep
                self.trip = None
                stats.trips += 1
                stats.tripped_at.append(self.up_total)
                if await self.proxy.act(self, trip):
                    return
                rest = data[keep:]
                if rest:
                    self.agent_writer.write(rest)
                    await self.agent_writer.drain()
                    stats.bytes_up += len(rest)
                    self.up_total += len(rest)
                    self.counted += len(rest)
                continue
            self.agent_writer.write(data)
            await self.agent_writer.drain()
            stats.bytes_up += len(data)
            self.up_total += len(data)
            self.counted += len(data)

    async def _pump_down(self) -> None:
        while True:
            data = await self.agent_reader.read(READ_SIZE)
            if not data:
                return
            self.client_writer.write(data)
            await self.client_writer.drain()
            self.proxy.stats.bytes_down += len(data)


class FaultProxy:
    def __init__(self, agent_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.agent_port = agent_port
        self.port = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.stats = ProxyStats()
        self.links: set[Link] = set()
        self._queued: deque[Trip] = deque()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- planning -------------------------------------------------------------------------------

    def queue_trips(self, *trips: Trip) -> None:
        """Arm these on the next new connections, one each."""
        self._queued.extend(trips)

    def arm_live(self, trip: Trip) -> bool:
        """Arm the trip on the live connection (the newest one); False when there is none."""
        live = [link for link in self.links if not link.closed.is_set()]
        if not live:
            return False
        live[-1].arm(trip)
        return True

    def disarm(self) -> None:
        self._queued.clear()
        for link in self.links:
            link.arm(None)

    def cut_all(self, clean: bool = False) -> int:
        count = 0
        for link in list(self.links):
            if not link.closed.is_set():
                link.cut(clean)
                count += 1
        return count

    # --- relaying -------------------------------------------------------------------------------

    async def act(self, link: Link, trip: Trip) -> bool:
        """Do what the trip says; True when the connection is gone (the pump stops)."""
        if trip.action == "call":
            assert trip.callback is not None
            cut = await trip.callback(link, trip)
            if cut:
                self.stats.cuts += 1
                link.cut()
            return cut
        self.stats.cuts += 1
        link.cut(clean=trip.action == "close")
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.gate.wait()
            try:
                agent = await asyncio.open_connection(self.host, self.agent_port)
            except OSError:
                self.stats.upstream_failures += 1
                writer.transport.abort()
                return
            link = Link(self, (reader, writer), agent)
            self.stats.connections += 1
            if self._queued:
                link.arm(self._queued.popleft())
            self.links.add(link)
            try:
                await link.run()
            finally:
                self.links.discard(link)
        except (ConnectionError, OSError):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        finally:
            self._tasks.discard(task)
