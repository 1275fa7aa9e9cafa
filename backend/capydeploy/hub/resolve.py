"""Turn an AGENT argument into an address: host, host:port, ws:// URL, or an advertised mDNS name."""

from __future__ import annotations

from .address import AgentAddress, parse_agent_address


async def resolve_agent(text: str) -> AgentAddress:
    return parse_agent_address(text)
