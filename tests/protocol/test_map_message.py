"""A reply with a per-file map (`resumeFrom`, `result_sha256`) is written as the pieces of one
message: the same JSON value as the plain encoding when it fits, cut to the most entries that fit
when it does not, and never held whole."""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capydeploy.protocol import constants
from capydeploy.protocol.catalog import MessageType
from capydeploy.protocol.envelope import dumps_frame, encode_message
from capydeploy.protocol.map_message import BATCH_ENTRIES, encode_map_message
from capydeploy.protocol.messages import OperationResult, UploadInitResponse

# Any text, lone surrogates too: a batch holding one is escaped differently from its entries.
keys = st.text(min_size=1, max_size=10)
message_ids = st.text(max_size=8)
resume_maps = st.dictionaries(keys, st.integers(0, 2**50), max_size=40)
hex_maps = st.dictionaries(keys, st.text("0123456789abcdef", min_size=64, max_size=64), max_size=40)


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _resume_reply(resume_from: dict[str, int]) -> UploadInitResponse:
    return UploadInitResponse.model_construct(upload_id="upload-1", chunk_size=1 << 20, resume_from=resume_from)


def _hash_result(digests: dict[str, str]) -> OperationResult:
    return OperationResult.model_construct(success=True, path="/games/G", sha256=digests)


@given(resume_maps, message_ids)
def test_a_map_that_fits_is_written_whole_as_the_plain_encoding_writes_it(
    resume_from: dict[str, int], message_id: str
) -> None:
    reply = _resume_reply(resume_from)
    kept, pieces = encode_map_message(MessageType.UPLOAD_INIT_RESPONSE, reply, message_id, "resume_from", resume_from)
    text = "".join(pieces)
    assert kept == len(resume_from)
    assert json.loads(text) == json.loads(encode_message(MessageType.UPLOAD_INIT_RESPONSE, reply, message_id))


@given(hex_maps, st.booleans())
def test_the_map_joins_the_other_fields_or_stands_alone(digests: dict[str, str], alone: bool) -> None:
    # Alone: no other field is set, so the payload's own JSON is `{}` and takes no comma.
    result = OperationResult.model_construct(sha256=digests) if alone else _hash_result(digests)
    _, pieces = encode_map_message(MessageType.OPERATION_RESULT, result, "r", "sha256", digests)
    payload = json.loads("".join(pieces))["payload"]
    assert payload == ({"sha256": digests} if alone else {"success": True, "path": "/games/G", "sha256": digests})


def _entry_bytes(key: str, value: Any) -> int:
    return _utf8(dumps_frame({key: value})) - 2 + 1  # the entry and its comma


@given(st.one_of(resume_maps, hex_maps), st.integers(0, 3000))
def test_a_map_over_the_limit_keeps_the_most_entries_that_fit(entries: dict[str, Any], room: int) -> None:
    reply = _resume_reply({})
    empty = "".join(encode_map_message(MessageType.UPLOAD_INIT_RESPONSE, reply, "r", "resume_from", {})[1])
    limit = _utf8(empty) + room
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "MAX_MESSAGE", limit)
        kept, pieces = encode_map_message(MessageType.UPLOAD_INIT_RESPONSE, reply, "r", "resume_from", entries)
        text = "".join(pieces)
    assert _utf8(text) <= limit
    sent = json.loads(text)["payload"]["resumeFrom"]
    assert len(sent) == kept <= len(entries)
    assert all(entries[key] == value for key, value in sent.items())  # true, only fewer
    left_out = [key for key in entries if key not in sent]
    if left_out and all(type(value) is int for value in entries.values()):
        assert min(sent.values(), default=2**63) >= max(entries[key] for key in left_out)  # the largest kept
    if left_out:  # the next entry in the order written would not have fitted
        order = sorted(entries, key=entries.__getitem__, reverse=True) if isinstance(next(iter(entries.values())), int) else list(entries)
        following = order[kept]
        assert _utf8(text) + _entry_bytes(following, entries[following]) - (0 if kept else 1) > limit


def test_many_entries_are_written_a_batch_at_a_time() -> None:
    digests = {f"data/file-{n:05}.bin": f"{n:064x}" for n in range(2 * BATCH_ENTRIES + 5)}
    kept, pieces = encode_map_message(MessageType.OPERATION_RESULT, _hash_result(digests), "r", "sha256", digests)
    written = list(pieces)
    assert kept == len(digests) and len(written) == 5  # head, three batches, tail
    assert json.loads("".join(written))["payload"]["sha256"] == digests


class _LazyHexMap:
    """Makes each hex digest as it is read, as the Agent's found digests do."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def items(self) -> Iterator[tuple[str, str]]:
        return ((f"data/file-{n:05}.bin", f"{n:064x}") for n in range(self.count))


def _traced_peak_while_sent(pieces: Iterator[str]) -> int:
    sent = 0
    for piece in pieces:  # sent and dropped, as websockets sends a fragment
        sent += _utf8(piece)
    assert sent > 0
    return tracemalloc.get_traced_memory()[1]


def test_the_message_never_exists_whole() -> None:
    count = 100_000
    lazy = _LazyHexMap(count)
    gc.collect()
    tracemalloc.start()
    try:
        _, pieces = encode_map_message(MessageType.OPERATION_RESULT, _hash_result({}), "r", "sha256", lazy)
        lean = _traced_peak_while_sent(pieces)
    finally:
        tracemalloc.stop()
    whole = _utf8("".join(encode_map_message(MessageType.OPERATION_RESULT, _hash_result({}), "r", "sha256", lazy)[1]))
    assert whole > 8_000_000
    assert lean < 0.25 * whole  # a batch or two at a time, not the 8.9 MB message
