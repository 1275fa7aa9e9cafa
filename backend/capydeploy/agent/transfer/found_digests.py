"""The whole-file hashes complete_upload found for files the Hub gave none for (`result_sha256`)."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping


class FoundDigests(Mapping[str, str]):
    """Path -> lowercase hex SHA-256, held as the staged files' own path strings and 32-byte
    digests: the 100 000 hex strings and their dict (about 15 MB) are made a batch at a time as
    the reply is written (`protocol.map_message`), never all at once."""

    __slots__ = ("_digests", "_lookup", "_paths")

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._digests: list[bytes] = []
        self._lookup: dict[str, int] | None = None

    def add(self, path: str, digest: bytes) -> None:
        self._paths.append(path)
        self._digests.append(digest)
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
        return self._digests[self._lookup[path]].hex()

    def items(self) -> ItemsView[str, str]:
        return _HexItems(self)

    def pairs(self) -> Iterator[tuple[str, str]]:
        return ((path, digest.hex()) for path, digest in zip(self._paths, self._digests, strict=True))


class _HexItems(ItemsView[str, str]):
    """`items()` in order, each hex made as it is read, with no lookup by path."""

    _mapping: FoundDigests

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self._mapping.pairs()
