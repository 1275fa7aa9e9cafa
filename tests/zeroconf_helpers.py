"""Shared by the mDNS tests of the Agent (`tests/agent/test_mdns.py`) and of the Hub
(`tests/hub/test_discovery.py`): real zeroconf over loopback multicast, never on the LAN."""

from __future__ import annotations

import secrets
import socket
import struct
from collections.abc import Callable

import pytest

from capydeploy.agent.mdns import MdnsAdvertiser

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


MULTICAST_PROBLEM = loopback_multicast_problem()  # probed once per test run
needs_multicast = pytest.mark.skipif(MULTICAST_PROBLEM is not None, reason=MULTICAST_PROBLEM or "")


def unique_agent_id() -> str:
    # Unique per run: other test runs on this machine browse the same loopback group.
    return f"agent-{secrets.token_hex(6)}"


class Addresses:
    """A mutable address list, as a Wi-Fi reconnect would change it."""

    def __init__(self, *addresses: str) -> None:
        self.current = list(addresses)

    def __call__(self) -> list[str]:
        return list(self.current)


class Advertisers:
    """Makes advertisers confined to loopback, each with a unique agent id; `stop_all` at teardown."""

    def __init__(self) -> None:
        self.made: list[MdnsAdvertiser] = []

    def make(self, addresses: Callable[[], list[str]] | None = None, **overrides: object) -> MdnsAdvertiser:
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
        self.made.append(advertiser)
        return advertiser

    async def stop_all(self) -> None:
        for advertiser in self.made:
            await advertiser.stop()
