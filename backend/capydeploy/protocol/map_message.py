"""A message with a per-file map of a big game (`resumeFrom`, `result_sha256`), written in pieces.

The map of 100 000 files is about 12 MB of JSON. Made as one string, it existed three times on
the way out (the text, its UTF-8 bytes, the frame), beside the dict of hex strings it was made
from: the Agent's peak for a game of many files. Here the map is read once to count what fits,
then written a batch of entries at a time as the fragments of one message (D4 limits the whole
message, as the receiver joins them). Its entries may be made as they are read (`EntryMap`), so
100 000 hex digests never exist at once either.

A map that would pass the 10 MiB limit keeps as many entries as fit and drops the rest (they are
optional and only save work: a file left out is sent or hashed again). Of a map of byte counts
the largest are kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from . import constants
from .envelope import dumps_frame
from .fitting import utf8_length

BATCH_ENTRIES = 2048  # a fragment of about 230 KB for a map of hashes


class EntryMap(Protocol):
    """A dict, or a map that makes its values as they are read (see the Agent's found digests)."""

    def __len__(self) -> int: ...
    def items(self) -> Iterable[tuple[str, Any]]: ...


def encode_map_message(
    message_type: str, payload: BaseModel, message_id: str, field: str, entries: EntryMap
) -> tuple[int, Iterator[str]]:
    """The message of `payload` with `entries` as its `field`, as text pieces to send as one
    fragmented message; with how many entries it keeps. The other fields are written by pydantic.
    """
    rest = payload.model_dump_json(by_alias=True, exclude_none=True, exclude={field})
    alias = type(payload).model_fields[field].alias or field
    envelope = dumps_frame({"id": message_id, "type": str(message_type)})
    separator = "," if rest != "{}" else ""
    head = f'{envelope[:-1]},"payload":{rest[:-1]}{separator}"{alias}":{{'  # aliases are camelCase ASCII
    tail = "}}}"  # the map, the payload, the envelope
    budget = constants.MAX_MESSAGE - utf8_length(head) - utf8_length(tail)
    if budget < 0:
        raise ValueError(f"{message_type} is over the message limit without its {alias}")
    kept, batched = count_that_fit(entries.items(), budget)
    if kept < len(entries) and all(type(value) is int for _, value in entries.items()):
        ordered = sorted(entries.items(), key=lambda item: item[1], reverse=True)
        kept, batched = count_that_fit(ordered, budget)
        return kept, _pieces(head, ordered, kept, batched, tail)
    return kept, _pieces(head, entries.items(), kept, batched, tail)  # read a second time


def count_that_fit(items: Iterable[tuple[str, Any]], budget: int) -> tuple[int, int]:
    """How many of `items`, in order, fit in `budget` bytes, and how many of those are written
    a whole batch at a time (the rest entry by entry: so `_pieces` writes exactly what was counted,
    even where a batch and its entries would be escaped differently)."""
    used = kept = 0
    for batch in _batches(items):
        size = utf8_length(_entries_text(batch)) + (1 if kept else 0)
        if used + size <= budget:
            used, kept = used + size, kept + len(batch)
            continue
        batched = kept
        for entry in batch:
            size = utf8_length(_entries_text((entry,))) + (1 if kept else 0)
            if used + size > budget:
                break
            used, kept = used + size, kept + 1
        return kept, batched
    return kept, kept


def _pieces(head: str, items: Iterable[tuple[str, Any]], kept: int, batched: int, tail: str) -> Iterator[str]:
    yield head
    written = 0
    for batch in _batches(itertools.islice(items, kept)):
        separator = "," if written else ""
        if written + len(batch) <= batched:
            yield separator + _entries_text(batch)
        else:
            yield separator + ",".join(_entries_text((entry,)) for entry in batch)
        written += len(batch)
    yield tail


def _batches(items: Iterable[tuple[str, Any]]) -> Iterator[list[tuple[str, Any]]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, BATCH_ENTRIES)):
        yield batch


def _entries_text(entries: Sequence[tuple[str, Any]]) -> str:
    """`"key":value,...` of a JSON object (escaped as `dumps_frame` escapes a whole frame)."""
    return dumps_frame(dict(entries))[1:-1]
