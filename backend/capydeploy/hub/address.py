"""Parse an agent address: `host`, `host:port`, `[v6]:port` or a full `ws://` URL (D1)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..protocol.constants import DEFAULT_PORT, WS_PATH


@dataclass(frozen=True)
class AgentAddress:
    host: str
    port: int
    path: str = WS_PATH

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{self.path}"

    @property
    def key(self) -> str:
        """How the token store remembers this address."""
        return f"{self.host}:{self.port}"


def parse_agent_address(text: str) -> AgentAddress:
    text = text.strip()
    if not text:
        raise ValueError("empty agent address")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme != "ws":
            raise ValueError(f"unsupported scheme {parts.scheme!r}: the agent speaks plain ws://")
        if not parts.hostname:
            raise ValueError(f"no host in {text!r}")
        return AgentAddress(parts.hostname, parts.port or DEFAULT_PORT, parts.path or WS_PATH)
    parts = urlsplit(f"//{text}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in {text!r}")
    return AgentAddress(parts.hostname, port)
