"""The hub's exceptions: one type carries the agent's error code and message."""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub library raises."""


class AgentError(HubError):
    """The agent answered a request with an error (or a refusal such as pair_failed)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (error {code})")
        self.code = code
        self.message = message


class ConnectionLost(HubError):
    """The connection dropped (or could not be made) before the request was answered."""


class RevokedError(AgentError):
    """The agent revoked this hub's token (close code 4001); the hub does not reconnect."""

    def __init__(self, message: str = "this hub's token was revoked on the device") -> None:
        super().__init__(4001, message)
