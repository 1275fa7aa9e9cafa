"""The Agent's mDNS advertisement, browsed for real over loopback multicast (never on the LAN)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable

import pytest

from capydeploy.agent.mdns import MdnsAdvertiser
from capydeploy.hub.discovery import DiscoveredAgent, discover_agents, resolve_name

LOOPBACK = ["127.0.0.1"]  # every socket stays on lo: nothing leaves this machine


def loopback_multicast_problem() -> str | None:
    """Why multicast over loopback cannot work here, or None when a probe datagram came back."""
    group = "224.0.0.251"
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("", 0))
        port = receiver.getsockname()[1]
        membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        receiver.settimeout(1.0)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.sendto(b"capydeploy-probe", (group, port))
        data, _ = receiver.recvfrom(64)
    except OSError as error:
        return f"multicast over loopback unavailable on this machine: {error}"
    finally:
        receiver.close()
        sender.close()
    return None if data == b"capydeploy-probe" else "multicast over loopback returned a foreign datagram"


_PROBLEM = loopback_multicast_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")


def unique_agent_id() -> str:
    # Unique per run: other test runs on this machine browse the same loopback group.
    return f"agent-{secrets.token_hex(6)}"


class Addresses:
    """A mutable address list, as a Wi-Fi reconnect would change it."""

    def __init__(self, *addresses: str) -> None:
        self.current = list(addresses)

    def __call__(self) -> list[str]:
        return list(self.current)


@pytest.fixture
async def advertiser_factory() -> AsyncIterator[Callable[..., MdnsAdvertiser]]:
    made: list[MdnsAdvertiser] = []

    def make(addresses: Callable[[], list[str]] | None = None, **overrides: object) -> MdnsAdvertiser:
        agent_id = str(overrides.pop("agent_id", unique_agent_id()))
        advertiser = MdnsAdvertiser(
            agent_id,
            str(overrides.pop("name", f"Test Deck {agent_id[-4:]}")),
            "0.1.0",
            "linux",
            int(overrides.pop("port", 9999)),  # type: ignore[call-overload]
            addresses or Addresses("127.0.0.1"),
            interfaces=LOOPBACK,
            **overrides,  # type: ignore[arg-type]
        )
        made.append(advertiser)
        return advertiser

    yield make
    for advertiser in made:
        await advertiser.stop()


async def find(agent_id: str, timeout: float = 2.0) -> DiscoveredAgent | None:
    agents = await discover_agents(timeout, interfaces=LOOPBACK)
    return next((agent for agent in agents if agent.id == agent_id), None)


async def test_advertised_record_is_found_by_browsing(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    advertiser = advertiser_factory(port=45678)
    await advertiser.start()
    assert advertiser.registered
    assert advertiser.addresses == ["127.0.0.1"]

    found = await find(advertiser.agent_id)

    assert found == DiscoveredAgent(
        id=advertiser.agent_id,
        name=advertiser.name,
        platform="linux",
        version="0.1.0",
        addresses=("127.0.0.1",),
        port=45678,
    )


async def test_instance_name_is_the_agent_id(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    advertiser = advertiser_factory()
    assert advertiser.instance_name == f"{advertiser.agent_id}._capydeploy._tcp.local."


async def test_resolved_by_name_case_insensitively(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    advertiser = advertiser_factory(name="Living Room Deck", port=41234)
    await advertiser.start()

    address = await resolve_name("living room DECK", 3.0, interfaces=LOOPBACK)

    assert address is not None
    assert (address.host, address.port) == ("127.0.0.1", 41234)


async def test_registers_again_when_the_addresses_change(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    addresses = Addresses("127.0.0.1")
    advertiser = advertiser_factory(addresses)
    await advertiser.start()
    assert await advertiser.refresh() is False  # nothing changed

    addresses.current = ["127.0.0.2"]
    assert await advertiser.refresh() is True

    assert advertiser.addresses == ["127.0.0.2"]
    found = await find(advertiser.agent_id)
    assert found is not None
    assert found.addresses == ("127.0.0.2",)


async def test_background_refresh_follows_address_changes(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    addresses = Addresses("127.0.0.1")
    advertiser = advertiser_factory(addresses, refresh_interval=0.2)
    await advertiser.start()

    addresses.current = ["127.0.0.3"]
    deadline = time.monotonic() + 5.0
    while advertiser.addresses != ["127.0.0.3"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)

    assert advertiser.addresses == ["127.0.0.3"]


async def test_no_address_means_no_record_until_one_appears(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    addresses = Addresses()
    advertiser = advertiser_factory(addresses)
    await advertiser.start()
    assert not advertiser.registered

    addresses.current = ["127.0.0.1", "fe80::1"]  # IPv6 entries are not advertised
    assert await advertiser.refresh() is True
    assert advertiser.addresses == ["127.0.0.1"]


async def test_a_rename_updates_the_txt_record(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    advertiser = advertiser_factory(name="Old Name")
    await advertiser.start()

    await advertiser.set_name("New Name")

    found = await find(advertiser.agent_id)
    assert found is not None
    assert found.name == "New Name"


async def test_stop_is_quick_and_withdraws_the_record(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    advertiser = advertiser_factory()
    await advertiser.start()

    began = time.monotonic()
    await advertiser.stop()
    elapsed = time.monotonic() - began

    assert elapsed < 2.5
    assert not advertiser.registered
    assert await find(advertiser.agent_id, timeout=1.5) is None


async def test_a_failing_address_provider_never_raises(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    def broken() -> list[str]:
        raise OSError("netlink is gone")

    advertiser = advertiser_factory(broken)
    await advertiser.start()  # logged, not raised

    assert not advertiser.registered


async def test_stop_wins_over_a_start_still_running(advertiser_factory: Callable[..., MdnsAdvertiser]) -> None:
    advertiser = advertiser_factory()
    starting = asyncio.create_task(advertiser.start())  # the way an Agent may start it: in the background
    await asyncio.sleep(0.1)

    await advertiser.stop()
    await asyncio.wait_for(starting, 6.0)

    assert not advertiser.registered
    assert advertiser._poller is None  # no refresh loop left behind
