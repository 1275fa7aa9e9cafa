"""Finds Agents on the LAN by mDNS/DNS-SD (`_capydeploy._tcp.local.`, D1), without blocking the loop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ..protocol.constants import MDNS_SERVICE_TYPE
from .address import AgentAddress

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 1500
CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True)
class DiscoveredAgent:
    """One advertised Agent: what its TXT record says, and where to reach it."""

    id: str
    name: str
    platform: str
    version: str
    addresses: tuple[str, ...]
    port: int

    @property
    def address(self) -> AgentAddress:
        """Where to connect: the first advertised address (IPv4 first)."""
        return AgentAddress(self.addresses[0], self.port)

    def matches(self, text: str) -> bool:
        """The advertised name (case-insensitive) or the agent id."""
        wanted = text.strip().casefold()
        return bool(wanted) and wanted in (self.name.strip().casefold(), self.id.casefold())


async def discover_agents(
    timeout: float = 3.0,
    *,
    interfaces: Sequence[str] | None = None,
    service_type: str = MDNS_SERVICE_TYPE,
) -> list[DiscoveredAgent]:
    """Browse for `timeout` seconds; every Agent that answered, sorted by name."""
    found: dict[str, DiscoveredAgent] = {}
    deadline = time.monotonic() + timeout
    async with _AgentBrowser(interfaces, service_type) as browser:
        while (left := deadline - time.monotonic()) > 0:
            try:
                instance, agent = await asyncio.wait_for(browser.updates.get(), left)
            except TimeoutError:
                break
            if agent is None:
                found.pop(instance, None)
            else:
                found[instance] = agent
    return sorted(found.values(), key=lambda agent: (agent.name.casefold(), agent.id))


async def resolve_name(
    name: str,
    timeout: float = 3.0,
    *,
    interfaces: Sequence[str] | None = None,
    service_type: str = MDNS_SERVICE_TYPE,
) -> AgentAddress | None:
    """The address of the Agent advertising `name` (case-insensitive) or id `name`; None if none did.

    Returns as soon as a match is resolved, else after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    async with _AgentBrowser(interfaces, service_type) as browser:
        while (left := deadline - time.monotonic()) > 0:
            try:
                _, agent = await asyncio.wait_for(browser.updates.get(), left)
            except TimeoutError:
                break
            if agent is not None and agent.matches(name):
                return agent.address
    return None


class _AgentBrowser:
    """A short-lived browser: each resolved (or removed) service lands on `updates`."""

    def __init__(self, interfaces: Sequence[str] | None, service_type: str) -> None:
        self._interfaces = list(interfaces) if interfaces is not None else InterfaceChoice.All
        self._service_type = service_type
        self.updates: asyncio.Queue[tuple[str, DiscoveredAgent | None]] = asyncio.Queue()
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._resolving: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> _AgentBrowser:
        self._zeroconf = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        self._browser = AsyncServiceBrowser(self._zeroconf.zeroconf, self._service_type, handlers=[self._on_change])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._resolving:
            task.cancel()
        closing = asyncio.ensure_future(self._close())
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT)
        if not done:
            closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._resolving, return_exceptions=True)

    async def _close(self) -> None:
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zeroconf is not None:
            await self._zeroconf.async_close()

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        # Called by zeroconf inside the loop; resolution is async, so it goes to a task.
        if state_change is ServiceStateChange.Removed:
            self.updates.put_nowait((name, None))
            return
        task = asyncio.create_task(self._resolve(zeroconf, service_type, name))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        try:
            if not await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS):
                log.debug("mDNS: %s did not answer in time", name)
                return
        except Exception as error:
            log.debug("mDNS: resolving %s failed: %s", name, error)
            return
        agent = agent_from_info(info, service_type)
        if agent is not None:
            self.updates.put_nowait((name, agent))


def agent_from_info(info: AsyncServiceInfo, service_type: str = MDNS_SERVICE_TYPE) -> DiscoveredAgent | None:
    """Read an Agent from a resolved service; None when it has no address or port."""
    text = {key: value or "" for key, value in info.decoded_properties.items()}
    addresses = sorted(set(info.parsed_addresses()), key=_address_order)
    if not addresses or not info.port:
        return None
    instance = info.name.removesuffix("." + service_type)
    return DiscoveredAgent(
        id=text.get("id") or instance,
        name=text.get("name") or instance,
        platform=text.get("platform", ""),
        version=text.get("version", ""),
        addresses=tuple(addresses),
        port=info.port,
    )


def _address_order(address: str) -> tuple[int, str]:
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return (3, address)
    if parsed.version == 4:
        return (0 if not parsed.is_loopback else 1, address)
    return (2, address)
