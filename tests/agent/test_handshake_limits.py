"""The limits on connections still in the handshake (issue 7): idle sockets from the LAN never lock a
real hub out. A full set evicts its oldest member instead of refusing the newcomer, and one source
address may hold only `max_pending_per_address` of the slots. Real sockets on loopback; sources other
than 127.0.0.1 are other loopback addresses (127.0.0.2, ...), which Linux routes to `lo`.

Every peer sends one `ping` right after it connects and waits for the `pong`: that proves the Agent
admitted it before the next one connects, so which peers are evicted is deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from capydeploy.agent.connection import source_of
from capydeploy.agent.server import Agent
from capydeploy.hub.client import HubClient
from capydeploy.protocol.constants import MAX_PENDING_HANDSHAKES, MAX_PENDING_PER_ADDRESS
from tests.conftest import AgentFactory, RawPeer, code_from_state, url_of

EVICTED = "too many pending connections"
TIMED_OUT = "no hub_connected in time"


class Peers:
    """Idle peers opened by a test, closed at its end."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.opened: list[RawPeer] = []

    async def open(self, source: str = "127.0.0.1") -> RawPeer:
        peer = await RawPeer.open(self.agent, local_addr=(source, 0))
        self.opened.append(peer)
        assert await answers_ping(peer), "a new connection was not served"
        return peer

    async def close(self) -> None:
        for peer in self.opened:
            peer.ws.transport.abort()


PeersFactory = Callable[[Agent], Peers]


@pytest.fixture
async def peers_of() -> AsyncIterator[PeersFactory]:
    made: list[Peers] = []

    def make(agent: Agent) -> Peers:
        made.append(Peers(agent))
        return made[-1]

    yield make
    for peers in made:
        await peers.close()


async def answers_ping(peer: RawPeer) -> bool:
    try:
        await peer.send("ping", None, "still-there")
        reply = await peer.recv(timeout=30)
    except ConnectionClosed:
        return False
    return bool(reply["type"] == "pong" and reply["id"] == "still-there")


async def closed_with(peer: RawPeer) -> tuple[int | None, str | None]:
    """Wait (a hang guard, not a timing) until the Agent closes `peer`; its close code and reason."""
    await asyncio.wait_for(peer.ws.wait_closed(), 30)
    return peer.ws.close_code, peer.ws.close_reason


async def pair(agent: Agent, hub_config: Path) -> None:
    """Pair a hub and leave: its token is on disk, the Agent holds no session."""
    async with HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent), reconnect=False):
        pass
    for _ in range(200):
        if agent.session is None and agent.pending_handshakes == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the pairing session did not end")


@pytest.mark.parametrize(
    "sources",
    [
        pytest.param(["127.0.0.1"] * 40, id="one-address"),
        pytest.param([f"127.0.0.{2 + index // 8}" for index in range(40)], id="five-addresses"),
    ],
)
async def test_idle_websockets_do_not_lock_out_the_paired_hub(
    agent_factory: AgentFactory, hub_config: Path, peers_of: PeersFactory, sources: list[str]
) -> None:
    agent = await agent_factory()  # the product's limits: 32 in all, 8 per address
    await pair(agent, hub_config)
    peers = peers_of(agent)
    idle = [await peers.open(source) for source in sources]
    assert agent.pending_handshakes <= MAX_PENDING_HANDSHAKES

    # The paired hub comes back (from 127.0.0.1) while the slots are full: it gets straight in.
    client = HubClient(url_of(agent), config_dir=hub_config, reconnect=False)
    try:
        status = await client.connect()
        assert status.name == "Test Deck"
        assert (await client.get_info()).agent.name == "Test Deck"
        session = agent.session
        assert session is not None and session.authenticated
    finally:
        await client.close()

    # Who made room: the oldest idle sockets, closed with 1008; the others are still served.
    # One address: the hub took one of 127.0.0.1's own slots. Five: the oldest slot of all.
    kept = (MAX_PENDING_PER_ADDRESS if len(set(sources)) == 1 else MAX_PENDING_HANDSHAKES) - 1
    evicted, alive = idle[: len(idle) - kept], idle[len(idle) - kept :]
    for peer in evicted:
        assert await closed_with(peer) == (1008, EVICTED)
    for peer in alive:
        assert await answers_ping(peer)
    assert agent.pending_handshakes == kept


async def test_a_flood_from_one_address_evicts_only_its_own_connections(
    agent_factory: AgentFactory, peers_of: PeersFactory
) -> None:
    agent = await agent_factory()
    peers = peers_of(agent)
    hub = await peers.open("127.0.0.3")  # the oldest of all, still silent
    flood = [await peers.open("127.0.0.2") for _ in range(40)]
    assert agent.pending_handshakes == 1 + MAX_PENDING_PER_ADDRESS
    for peer in flood[: -MAX_PENDING_PER_ADDRESS]:
        assert await closed_with(peer) == (1008, EVICTED)
    assert await answers_ping(hub)
    assert (await hub.hello(hub_id="late-hub"))["type"] == "pairing_required"


async def test_a_pairing_in_progress_is_evicted_last(agent_factory: AgentFactory, peers_of: PeersFactory) -> None:
    agent = await agent_factory(max_pending_handshakes=3, max_pending_per_address=3)
    peers = peers_of(agent)
    pairing = await peers.open()
    assert (await pairing.hello(hub_id="pairing-hub"))["type"] == "pairing_required"
    first, second = await peers.open(), await peers.open()
    third = await peers.open()  # the set is full: the oldest silent one goes, not the pairing
    assert await closed_with(first) == (1008, EVICTED)
    fourth = await peers.open()
    assert await closed_with(second) == (1008, EVICTED)
    assert agent.pending_handshakes == 3
    assert await answers_ping(third) and await answers_ping(fourth)

    # The pairing goes on undisturbed: the code shown on the device still works.
    code = agent.snapshot().pairing
    assert code is not None
    await pairing.send("pair_confirm", {"code": code.code}, "confirm")
    assert (await pairing.recv())["type"] == "pair_success"
    assert agent.pending_handshakes == 2


async def test_idle_websockets_are_still_closed_at_the_handshake_timeout(
    agent_factory: AgentFactory, peers_of: PeersFactory
) -> None:
    agent = await agent_factory(handshake_timeout=2.0)
    peers = peers_of(agent)
    extra = 4
    idle = [await peers.open() for _ in range(MAX_PENDING_PER_ADDRESS + extra)]
    # The oldest were evicted (or, on a slow machine, timed out first); the rest time out.
    for peer in idle[:extra]:
        code, reason = await closed_with(peer)
        assert code == 1008 and reason in (EVICTED, TIMED_OUT)
    for peer in idle[extra:]:
        assert await closed_with(peer) == (1008, TIMED_OUT)
    for _ in range(200):
        if agent.pending_handshakes == 0:
            break
        await asyncio.sleep(0.05)
    assert agent.pending_handshakes == 0


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("192.168.1.20", "192.168.1.20"),
        ("::ffff:192.168.1.20", "192.168.1.20"),
        ("fd00:1:2:3:aaaa:bbbb:cccc:dddd", "fd00:1:2:3::/64"),
        ("fe80::1%wlan0", "fe80::/64"),
        ("", ""),
    ],
)
def test_the_per_address_limit_counts_an_ipv6_64_as_one_source(address: str, source: str) -> None:
    assert source_of(address) == source
