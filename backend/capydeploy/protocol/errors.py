"""Error codes, close codes and the one exception type that carries a protocol error."""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """The `error.code` values of the seed's table."""

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    NOT_FOUND = 404
    BLOCKED = 406
    CONFLICT = 409
    INTERNAL = 500
    NOT_IMPLEMENTED = 501


class CloseCode(IntEnum):
    """WebSocket close codes the Agent uses (D2)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    REVOKED = 4001


class ProtocolError(Exception):
    """A request that must be answered with `{"type": "error", "error": {code, message}}`."""

    def __init__(self, code: ErrorCode | int, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"ProtocolError({int(self.code)}, {self.message!r})"


class FrameError(ProtocolError):
    """A binary chunk frame that cannot be decoded; always a 400."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(ErrorCode.BAD_REQUEST, message, request_id)
