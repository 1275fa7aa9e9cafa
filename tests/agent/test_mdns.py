"""The Agent's mDNS advertisement, browsed for real over loopback multicast (never on the LAN)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from capydeploy.agent.mdns import MdnsAdvertiser
from capydeploy.hub.discovery import DiscoveredAgent, discover_agents, resolve_name
from tests.zeroconf_helpers import LOOPBACK, Addresses, Advertisers, needs_multicast

pytestmark = needs_multicast


@pytest.fixture
async def advertiser_factory() -> AsyncIterator[Callable[..., MdnsAdvertiser]]:
    advertisers = Advertisers()
    yield advertisers.make
    await advertisers.stop_all()


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
