"""Pairing codes and the lockout after wrong guesses (D3), as a plain clock-driven class."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ..protocol.constants import PAIRING_CODE_TTL, PAIRING_LOCKOUT, PAIRING_MAX_ATTEMPTS
from ..redaction import SECRETS


@dataclass(frozen=True)
class PairingCode:
    code: str
    hub_id: str
    hub_name: str
    expires_at: float


class PairingOutcome(Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"
    LOCKED = "locked"  # this guess used up the attempts, or pairing was already locked
    EXPIRED = "expired"
    NO_PAIRING = "no_pairing"


def new_code() -> str:
    """Six decimal digits from the OS's secure generator (registered for log redaction)."""
    code = f"{secrets.randbelow(1_000_000):06d}"
    SECRETS.add(code)
    return code


class PairingGate:
    """One pending code at a time; three wrong codes invalidate it and lock pairing for a while.

    Wrong codes are counted across codes, not per code: reconnecting gets a fresh code, and a
    count that started again with each code would let a LAN client guess twice per connection
    forever without ever being locked out. The count is forgotten after a success, when the lock
    starts, when the device's user lifts it, or once no wrong code came for the lockout period.
    """

    def __init__(
        self,
        code_ttl: float = PAIRING_CODE_TTL,
        lockout: float = PAIRING_LOCKOUT,
        max_attempts: int = PAIRING_MAX_ATTEMPTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._code_ttl = code_ttl
        self._lockout = lockout
        self._max_attempts = max_attempts
        self._clock = clock
        self._pending: PairingCode | None = None
        self._wrong_attempts = 0
        self._last_wrong = 0.0
        self._locked_until = 0.0

    @property
    def code_ttl(self) -> float:
        return self._code_ttl

    def lockout_remaining(self) -> float:
        return max(0.0, self._locked_until - self._clock())

    def pending(self) -> PairingCode | None:
        """The live code, or None when there is none or it has expired."""
        if self._pending is not None and self._clock() >= self._pending.expires_at:
            self._pending = None
        return self._pending

    def start(self, hub_id: str, hub_name: str) -> PairingCode:
        """Issue a fresh code for this hub (replacing any other pending code)."""
        if self.lockout_remaining() > 0:
            raise PermissionError("pairing is locked")
        self._pending = PairingCode(new_code(), hub_id, hub_name, self._clock() + self._code_ttl)
        return self._pending

    def cancel(self, hub_id: str) -> bool:
        """Drop the pending code if it belongs to `hub_id` (its connection closed)."""
        if self._pending is not None and self._pending.hub_id == hub_id:
            self._pending = None
            return True
        return False

    def confirm(self, hub_id: str, code: str) -> PairingOutcome:
        if self.lockout_remaining() > 0:
            return PairingOutcome.LOCKED
        pending = self._pending
        if pending is None or pending.hub_id != hub_id:
            return PairingOutcome.NO_PAIRING
        if self._clock() >= pending.expires_at:
            self._pending = None
            return PairingOutcome.EXPIRED
        if hmac.compare_digest(pending.code.encode(), code.encode()):
            self._pending = None
            self._wrong_attempts = 0
            return PairingOutcome.ACCEPTED
        self._forget_old_attempts()
        self._wrong_attempts += 1
        self._last_wrong = self._clock()
        if self._wrong_attempts >= self._max_attempts:
            self._pending = None
            self._wrong_attempts = 0
            self._locked_until = self._clock() + self._lockout
            return PairingOutcome.LOCKED
        return PairingOutcome.WRONG

    def attempts_left(self) -> int:
        self._forget_old_attempts()
        return self._max_attempts - self._wrong_attempts

    def _forget_old_attempts(self) -> None:
        """Wrong codes older than the lockout period no longer count (an old typo never locks)."""
        if self._wrong_attempts and self._clock() - self._last_wrong >= self._lockout:
            self._wrong_attempts = 0

    def reset_lockout(self) -> None:
        """The device's user lifts the lock (D3)."""
        self._locked_until = 0.0
        self._wrong_attempts = 0
