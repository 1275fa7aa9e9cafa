"""Hub-side discovery and AGENT resolution, against a real advertisement over loopback multicast."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import pytest

from capydeploy.agent.mdns import MdnsAdvertiser
from capydeploy.hub import resolve
from capydeploy.hub.address import AgentAddress
from capydeploy.hub.discovery import DiscoveredAgent, discover_agents, resolve_name
from capydeploy.hub.resolve import resolve_agent
from tests.zeroconf_helpers import LOOPBACK, Advertisers, needs_multicast, unique_agent_id


@pytest.fixture
async def advertised() -> AsyncIterator[MdnsAdvertiser]:
    """An agent-like record, unique per run (other runs on this machine browse the same group)."""
    advertisers = Advertisers()
    agent_id = unique_agent_id()
    advertiser = advertisers.make(lambda: ["127.0.0.1"], agent_id=agent_id, name=f"Steam Deck {agent_id[-6:]}", port=43210)
    await advertiser.start()
    assert advertiser.registered
    yield advertiser
    await advertisers.stop_all()


# --- discovery ----------------------------------------------------------------------------------


@needs_multicast
async def test_discover_lists_the_advertised_agent(advertised: MdnsAdvertiser) -> None:
    agents = await discover_agents(2.0, interfaces=LOOPBACK)

    mine = [agent for agent in agents if agent.id == advertised.agent_id]
    assert mine == [
        DiscoveredAgent(
            id=advertised.agent_id,
            name=advertised.name,
            platform="linux",
            version="0.1.0",
            addresses=("127.0.0.1",),
            port=43210,
        )
    ]
    assert mine[0].address == AgentAddress("127.0.0.1", 43210)


@needs_multicast
@pytest.mark.parametrize("spelling", ["exact", "upper", "id"])
async def test_resolve_name_by_name_or_id(advertised: MdnsAdvertiser, spelling: str) -> None:
    text = {"exact": advertised.name, "upper": advertised.name.upper(), "id": advertised.agent_id}[spelling]

    began = time.monotonic()
    address = await resolve_name(text, 5.0, interfaces=LOOPBACK)

    assert address == AgentAddress("127.0.0.1", 43210)
    assert time.monotonic() - began < 4.0  # answers as soon as it matched, not at the timeout


@needs_multicast
async def test_resolve_name_of_nobody_is_none(advertised: MdnsAdvertiser) -> None:
    began = time.monotonic()
    assert await resolve_name(f"nobody {secrets.token_hex(4)}", 1.0, interfaces=LOOPBACK) is None
    assert time.monotonic() - began < 2.5


def test_matching_ignores_case_and_surrounding_spaces() -> None:
    agent = DiscoveredAgent("agent-1", "Steam Deck", "linux", "1", ("10.0.0.2",), 9999)
    assert agent.matches("  steam deck ")
    assert agent.matches("AGENT-1")
    assert not agent.matches("steam")
    assert not agent.matches("")


# --- resolve_agent: the AGENT argument ------------------------------------------------------------


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The system resolver as a stub that knows nothing, recording what it was asked."""
    asked: list[str] = []

    async def knows_nothing(host: str, timeout: float) -> bool:
        asked.append(host)
        return False

    monkeypatch.setattr(resolve, "_dns_resolves", knows_nothing)
    return asked


@pytest.fixture
def no_mdns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    async def nobody(name: str, timeout: float = 3.0, **_: object) -> AgentAddress | None:
        asked.append(name)
        return None

    monkeypatch.setattr(resolve, "resolve_name", nobody)
    return asked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.168.1.20", AgentAddress("192.168.1.20", 9999)),
        ("192.168.1.20:1234", AgentAddress("192.168.1.20", 1234)),
        ("ws://192.168.1.20:9000/ws", AgentAddress("192.168.1.20", 9000)),
        ("[fe80::1]:9999", AgentAddress("fe80::1", 9999)),
        ("fe80::1", AgentAddress("fe80::1", 9999)),
        ("deck.lan", AgentAddress("deck.lan", 9999)),
        ("deck.lan:9000", AgentAddress("deck.lan", 9000)),
    ],
)
async def test_addresses_are_used_as_typed_without_lookups(
    text: str, expected: AgentAddress, no_dns: list[str], no_mdns: list[str]
) -> None:
    assert await resolve_agent(text) == expected
    assert no_dns == []
    assert no_mdns == []


async def test_a_single_label_the_resolver_knows_is_a_host(monkeypatch: pytest.MonkeyPatch, no_mdns: list[str]) -> None:
    async def knows(host: str, timeout: float) -> bool:
        return host == "steamdeck"

    monkeypatch.setattr(resolve, "_dns_resolves", knows)

    assert await resolve_agent("steamdeck:9001") == AgentAddress("steamdeck", 9001)
    assert no_mdns == []


async def test_localhost_resolves_through_the_real_resolver(no_mdns: list[str]) -> None:
    assert await resolve_agent("localhost:9001") == AgentAddress("localhost", 9001)
    assert no_mdns == []


async def test_a_name_with_spaces_goes_straight_to_mdns(no_dns: list[str], no_mdns: list[str]) -> None:
    with pytest.raises(ValueError, match="no agent advertises that name"):
        await resolve_agent("Living Room Deck")
    assert no_dns == []
    assert no_mdns == ["Living Room Deck"]


async def test_a_port_typed_after_a_name_is_not_part_of_the_name(no_dns: list[str], no_mdns: list[str]) -> None:
    with pytest.raises(ValueError, match="no agent"):
        await resolve_agent("Living Room Deck:9999")
    assert no_mdns == ["Living Room Deck"]


async def test_an_unknown_single_label_is_tried_by_mdns(no_dns: list[str], no_mdns: list[str]) -> None:
    with pytest.raises(ValueError, match="no agent"):
        await resolve_agent("mydeck")
    assert no_dns == ["mydeck"]
    assert no_mdns == ["mydeck"]


async def test_empty_text_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        await resolve_agent("   ")


@needs_multicast
async def test_resolve_agent_finds_an_advertised_name(advertised: MdnsAdvertiser, no_dns: list[str]) -> None:
    address = await resolve_agent(advertised.name.lower(), interfaces=LOOPBACK)

    assert address == AgentAddress("127.0.0.1", 43210)
    assert no_dns == []  # a name with a space is never a host name


@needs_multicast
async def test_resolve_agent_finds_an_advertised_agent_id(advertised: MdnsAdvertiser, no_dns: list[str]) -> None:
    address = await resolve_agent(advertised.agent_id, interfaces=LOOPBACK)

    assert address == AgentAddress("127.0.0.1", 43210)
    assert no_dns == [advertised.agent_id]  # a single label: the resolver is asked first


@needs_multicast
async def test_a_dot_local_host_the_resolver_misses_is_asked_by_mdns(
    advertised: MdnsAdvertiser, no_dns: list[str]
) -> None:
    # The advertisement's host name is <agent id>.local, with the advertised address.
    address = await resolve_agent(f"{advertised.agent_id}.local:9100", interfaces=LOOPBACK)

    assert address == AgentAddress("127.0.0.1", 9100)
