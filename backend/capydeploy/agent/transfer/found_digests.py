"""The whole-file hashes complete_upload found for files the Hub gave none for (`result_sha256`)."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping

from ...protocol.listing import DIGEST_BYTES


class FoundDigests(Mapping[str, str]):
    """Path -> lowercase hex SHA-256, held as the staged files' own path strings and their
    digests' bytes end to end: the 100 000 hex strings and their dict (about 15 MB) are made a
    batch at a time as the reply is written (`protocol.map_message`), never all at once."""

    __slots__ = ("_digests", "_lookup", "_paths")

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._digests = bytearray()  # 32 bytes a file, in the order of `_paths`
        self._lookup: dict[str, int] | None = None

    def add(self, path: str, digest: bytes) -> None:
        self._paths.append(path)
        if len(digest) != DIGEST_BYTES:
            raise ValueError("a SHA-256 digest is 32 bytes")
        self._digests += digest
        self._lookup = None

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __getitem__(self, path: str) -> str:
        # A lookup by path is not on the reply's way (that reads `items`); its index is made on
        # first use.
        if self._lookup is None:
            self._lookup = {name: index for index, name in enumerate(self._paths)}
        return self._hex(self._lookup[path])

    def items(self) -> ItemsView[str, str]:
        return _HexItems(self)

    def pairs(self) -> Iterator[tuple[str, str]]:
        return ((path, self._hex(index)) for index, path in enumerate(self._paths))

    def _hex(self, index: int) -> str:
        return self._digests[DIGEST_BYTES * index : DIGEST_BYTES * (index + 1)].hex()


class _HexItems(ItemsView[str, str]):
    """`items()` in order, each hex made as it is read, with no lookup by path."""

    _mapping: FoundDigests

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self._mapping.pairs()
