"""Advertises the Agent on the LAN by mDNS/DNS-SD (D1), and re-registers when its addresses change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence

from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from ..protocol.constants import MDNS_SERVICE_TYPE

log = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL = 15.0
DEFAULT_START_TIMEOUT = 5.0
DEFAULT_STOP_TIMEOUT = 2.0

AddressesProvider = Callable[[], list[str]]


class MdnsAdvertiser:
    """One `_capydeploy._tcp.local.` record: instance name = agent id, TXT id/name/platform/version.

    mDNS is a convenience (a Hub can always type the address), so nothing here raises into the
    Agent: failures are logged and the background refresh tries again. Every coroutine keeps to
    the event loop (zeroconf's asyncio API); `stop()` returns within its timeout even if the
    network misbehaves.

    `interfaces` restricts the sockets to those addresses (tests use `["127.0.0.1"]`); `None`
    means every interface.
    """

    def __init__(  # noqa: PLR0917 - the positional signature the Agent wires in
        self,
        agent_id: str,
        name: str,
        version: str,
        platform: str,
        port: int,
        addresses_provider: AddressesProvider,
        *,
        interfaces: Sequence[str] | None = None,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        service_type: str = MDNS_SERVICE_TYPE,
    ) -> None:
        self.agent_id = agent_id
        self.name = name
        self.version = version
        self.platform = platform
        self.port = port
        self.service_type = service_type
        self.refresh_interval = refresh_interval
        self._addresses_provider = addresses_provider
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._zeroconf: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._addresses: list[str] = []
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    # --- what callers see ---------------------------------------------------------------------

    @property
    def instance_name(self) -> str:
        return f"{self.agent_id}.{self.service_type}"

    @property
    def registered(self) -> bool:
        return self._info is not None

    @property
    def addresses(self) -> list[str]:
        """The addresses currently advertised (empty when nothing is registered)."""
        return list(self._addresses) if self._info is not None else []

    async def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Register (waiting at most `timeout` for the announcement), then keep the record fresh.

        Safe to run as a background task: a `stop()` that comes first, or meanwhile, wins. An
        advertiser is started once; make a new one to advertise again after `stop()`.
        """
        if self._poller is not None or self._closed:
            return
        try:
            await asyncio.wait_for(self.refresh(), timeout)
        except Exception as error:  # the refresh loop tries again
            log.warning("mDNS: could not advertise %s yet: %s", self.instance_name, _describe(error))
        if not self._closed and self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="capydeploy-mdns-refresh")

    async def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Say goodbye on the network and close the sockets; never takes longer than `timeout`."""
        self._closed = True
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
        closing = asyncio.ensure_future(self._withdraw())
        done, _ = await asyncio.wait({closing}, timeout=timeout)
        if not done:
            closing.cancel()
            log.warning("mDNS: goodbye not finished within %.1f s; sockets left to the process exit", timeout)
        elif (error := closing.exception()) is not None:
            log.warning("mDNS: closing failed: %s", _describe(error))

    async def refresh(self) -> bool:
        """Register again if the address list changed or nothing is registered; True if it did."""
        async with self._lock:
            if self._closed:
                return False
            addresses = self._current_addresses()
            if self._info is not None and addresses == self._addresses:
                return False
            if self._info is not None:
                log.info("mDNS: addresses changed %s -> %s; registering again", self._addresses, addresses)
            await self._close_locked()
            if not addresses:
                log.info("mDNS: no usable address; not advertising until one appears")
                return False
            await self._register_locked(addresses)
            return True

    async def set_name(self, name: str) -> None:
        """Update the TXT `name` after the device's user renamed the Agent."""
        async with self._lock:
            self.name = name
            zc, old = self._zeroconf, self._info
            if zc is None or old is None:
                return
            info = self._service_info(self._addresses)
            try:
                await (await zc.async_update_service(info))
            except Exception as error:
                log.warning("mDNS: could not update the name: %s", _describe(error))
                return
            self._info = info

    # --- the work -----------------------------------------------------------------------------

    def _current_addresses(self) -> list[str]:
        try:
            found = self._addresses_provider()
        except Exception as error:
            log.warning("mDNS: listing addresses failed: %s", _describe(error))
            return list(self._addresses)
        return sorted({address for address in found if _is_ipv4(address)})

    def _service_info(self, addresses: list[str]) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            self.service_type,
            self.instance_name,
            port=self.port,
            properties={"id": self.agent_id, "name": self.name, "platform": self.platform, "version": self.version},
            addresses=[socket.inet_aton(address) for address in addresses],
            # The host label is the agent id, so we never collide with the device's own host
            # name (Avahi on SteamOS answers for that one).
            server=f"{self.agent_id}.local.",
        )

    async def _register_locked(self, addresses: list[str]) -> None:
        # A fresh instance per address set: zeroconf binds one socket per interface address at
        # creation, so after a Wi-Fi reconnect the old sockets would answer on a dead address.
        interfaces = self._interfaces if self._interfaces is not None else InterfaceChoice.All
        zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        self._zeroconf = zc
        info = self._service_info(addresses)
        await (await zc.async_register_service(info))
        self._info = info
        self._addresses = addresses
        log.info("mDNS: advertising %s on %s port %d", self.instance_name, ", ".join(addresses), self.port)

    async def _close_locked(self) -> None:
        zc, self._zeroconf = self._zeroconf, None
        self._info = None
        if zc is not None:
            await zc.async_close()  # sends the goodbye packets first

    async def _withdraw(self) -> None:
        async with self._lock:
            await self._close_locked()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await asyncio.wait_for(self.refresh(), DEFAULT_START_TIMEOUT)
            except Exception as error:
                log.warning("mDNS: refresh failed: %s", _describe(error))


def _is_ipv4(address: str) -> bool:
    with contextlib.suppress(OSError):
        socket.inet_aton(address)
        return address.count(".") == 3
    return False


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
