"""A staged file's whole-file SHA-256, computed in order while chunks arrive, so completion rarely re-reads.

Chunks are stored by several worker threads at once, yet SHA-256 must see the bytes in order. Each
chunk that continues the claimed prefix becomes a node of a chain, run on one dedicated hash thread
(so nodes run in claim order and never wait for each other): a node copies the hash state left by
the previous node and feeds its own bytes. A node counts only once its chunk was verified and
written (`commit`); stores finish in any order, so a node committed early waits in `_pending` until
the prefix reaches it. If any node fails, the chain is dropped (`gen` moves on) and whatever was not
hashed in order is read back from disk (`claim_catch_up`, and at completion).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from .filesystem import BytesLike


class Hasher(Protocol):
    def update(self, data: BytesLike, /) -> None: ...

    def copy(self) -> Hasher: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def new_hasher() -> Hasher:
    return hashlib.sha256()


@dataclass(frozen=True, slots=True)
class HashClaim:
    """The right to extend the hash over `[start, end)`, valid while `gen` is current."""

    gen: int
    start: int
    end: int
    prev: Future[Hasher] | None
    base: Hasher | None

    def starting_state(self) -> Hasher:
        """The hash state before `start` (runs on the hash thread, after the previous node)."""
        if self.prev is not None:
            return self.prev.result().copy()
        assert self.base is not None
        return self.base.copy()


class FileHash:
    """Hash state of one staged file; touched only on the event loop, except inside worker jobs."""

    __slots__ = ("_hasher", "_pending", "_result", "_size", "_tail", "_tail_end", "gen", "upto")

    def __init__(self, size: int) -> None:
        self._size = size
        # Made on first use: a game of 20 000 files, most carried unchanged, needs few (each is a
        # few hundred bytes of OpenSSL state).
        self._hasher: Hasher | None = None
        # Once every byte is hashed in order, only the digest is kept and the state dropped: a
        # game of 50 000 small files would otherwise hold 12 MB of finished states until completion.
        # Its 32 bytes, not the hex string: 65 bytes a file instead of 113.
        self._result: bytes | None = None
        self.upto = 0  # bytes [0, upto) are in self.hasher
        self.gen = 0  # bumped whenever in-flight nodes must no longer count
        self._tail: Future[Hasher] | None = None
        self._tail_end = 0  # end of the last node handed out
        # start -> (end, state) committed early; made when first needed (most files never do)
        self._pending: dict[int, tuple[int, Hasher]] | None = None

    @classmethod
    def finished(cls, size: int, digest: bytes) -> FileHash:
        """The hash of a file known to be whole and unchanged since `digest` was found."""
        file_hash = cls(size)
        file_hash.upto = file_hash._tail_end = size
        file_hash._result = digest
        return file_hash

    @property
    def hasher(self) -> Hasher:
        """The state over bytes [0, upto); not for a finished file (see `finished_hexdigest`)."""
        assert self._result is None, "the hash is finished"
        if self._hasher is None:
            self._hasher = new_hasher()
        return self._hasher

    @hasher.setter
    def hasher(self, hasher: Hasher) -> None:
        self._hasher = hasher
        self._result = None

    def finished_digest(self) -> bytes | None:
        """`finished_hexdigest`, as its 32 bytes."""
        self._finish_if_done()
        return self._result

    def finished_hexdigest(self) -> str | None:
        """The whole file's SHA-256 once every byte is hashed in order and nothing is in flight."""
        self._finish_if_done()
        return None if self._result is None else self._result.hex()

    def _finish_if_done(self) -> None:
        if self._result is None and self.upto == self._size and self._tail_end == self.upto and not self._pending:
            self._result = self.hasher.digest()
            self._hasher = None

    @property
    def claimed_end(self) -> int:
        """Bytes below this are hashed or being hashed; rewriting them spoils the hash."""
        return self._tail_end

    def claim(self, start: int, end: int) -> HashClaim | None:
        """A node for a chunk at `start`, if it continues the chain."""
        if start != self._tail_end or end <= start or self._result is not None:
            return None
        if self._tail is None or self.upto == start:
            return HashClaim(self.gen, start, end, None, self.hasher)
        return HashClaim(self.gen, start, end, self._tail, None)

    def claim_catch_up(self, held_prefix_end: int, limit: int) -> HashClaim | None:
        """A node that reads held-but-unhashed bytes back from disk, when no chain is in flight."""
        if self._tail_end != self.upto or held_prefix_end <= self.upto:
            return None
        return HashClaim(self.gen, self.upto, min(held_prefix_end, self.upto + limit), None, self.hasher)

    def chained(self, claim: HashClaim, future: Future[Hasher] | None) -> None:
        """`claim` is being hashed by `future`; None only for a claim of the whole file, which
        no later claim can build on."""
        self._tail = future
        self._tail_end = claim.end

    def commit(self, claim: HashClaim, hasher: Hasher) -> bool:
        """The node's chunk is stored: count its state (now, or once every earlier node counts)."""
        if claim.gen != self.gen:
            return False
        if claim.start > self.upto:
            if self._pending is None:
                self._pending = {}
            self._pending[claim.start] = (claim.end, hasher)
            return True
        if claim.start < self.upto:
            self._break_chain()
            return False
        self.hasher = hasher
        self.upto = claim.end
        while self._pending and (ready := self._pending.pop(self.upto, None)) is not None:
            self.upto, self.hasher = ready
        if self.upto == self._tail_end:
            self._tail = None  # caught up: the next claim starts from self.hasher (frees the future)
            self._finish_if_done()
        return True

    def abandon(self, claim: HashClaim) -> None:
        """The node will not count; later nodes built on it must not either."""
        if claim.gen == self.gen:
            self._break_chain()

    def invalidate(self) -> None:
        """Bytes already hashed were rewritten: start over (completion re-reads from disk)."""
        self._hasher = None
        self._result = None
        self.upto = 0
        self._break_chain()

    def restore(self, hasher: Hasher, upto: int) -> None:
        """Adopt a state rebuilt from disk (after an Agent restart)."""
        self.hasher = hasher
        self.upto = upto
        self._break_chain()
        self._finish_if_done()

    def _break_chain(self) -> None:
        self.gen += 1
        self._tail = None
        self._tail_end = self.upto
        self._pending = None


def hash_bytes_after(claim: HashClaim, data: BytesLike) -> Hasher:
    """Worker job: extend the chain with a chunk still in memory."""
    hasher = claim.starting_state()
    hasher.update(data)
    return hasher


def hash_disk_after(claim: HashClaim, read: Callable[[int, int], bytes], piece: int) -> Hasher:
    """Worker job: extend the chain with bytes read back from the staged file."""
    hasher = claim.starting_state()
    offset = claim.start
    while offset < claim.end:
        length = min(piece, claim.end - offset)
        data = read(offset, length)
        if len(data) != length:
            raise OSError(f"staged file ended at byte {offset + len(data)} while hashing")
        hasher.update(data)
        offset += length
    return hasher
