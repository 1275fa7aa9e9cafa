"""The binary chunk frame: round trips and precise errors."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capydeploy.protocol import FrameError, decode_chunk, encode_chunk
from capydeploy.protocol.constants import CHUNK_SIZE, MAX_CHUNK_HEADER
from capydeploy.protocol.messages import ChunkHeader

_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"), min_size=1, max_size=10
).filter(lambda s: s not in (".", ".."))
_paths = st.lists(_segment, min_size=1, max_size=4).map("/".join).filter(lambda p: p[1:2] != ":")


@given(
    message_id=st.text(max_size=40),
    upload_id=st.text(alphabet="abcdef0123456789-", min_size=1, max_size=64),
    file_path=_paths,
    offset=st.integers(min_value=0, max_value=2**40),
    data=st.binary(max_size=4096),
    with_checksum=st.booleans(),
)
def test_frame_round_trip(
    message_id: str, upload_id: str, file_path: str, offset: int, data: bytes, with_checksum: bool
) -> None:
    checksum = hashlib.sha256(data).hexdigest() if with_checksum else None
    header = ChunkHeader(id=message_id, upload_id=upload_id, file_path=file_path, offset=offset, checksum=checksum)
    frame = encode_chunk(header, data)
    decoded = decode_chunk(frame)
    assert decoded.header == header
    assert bytes(decoded.data) == data
    assert decoded.checksum_ok()


def _frame(header: object, data: bytes = b"", length: int | None = None) -> bytes:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack(">I", len(raw) if length is None else length) + raw + data


GOOD = {"id": "c1", "uploadId": "u1", "filePath": "a.bin", "offset": 0}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "too short"),
        (b"\x00\x00", "too short"),
        (_frame(GOOD, length=0), "header length is 0"),
        (_frame(GOOD, length=MAX_CHUNK_HEADER + 1), f"more than {MAX_CHUNK_HEADER}"),
        (_frame(GOOD, length=10_000), "more than the"),
        (_frame(b"{not json"), "not valid UTF-8 JSON"),
        (_frame(b"\xff\xfe"), "not valid UTF-8 JSON"),
        (_frame([1, 2]), "must be a JSON object"),
        (_frame({**GOOD, "offset": -1}), "header.offset"),
        (_frame({**GOOD, "filePath": "../x"}), "header.filePath"),
        (_frame({**GOOD, "uploadId": ""}), "header.uploadId"),
        (_frame({**GOOD, "checksum": "xyz"}), "header.checksum"),
        (_frame({k: v for k, v in GOOD.items() if k != "filePath"}), "header.filePath"),
        (_frame(GOOD, b"x" * (CHUNK_SIZE + 1)), "more than the chunk size"),
    ],
)
def test_bad_frames_say_what_is_wrong(frame: bytes, message: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_chunk(frame)
    assert message in caught.value.message
    assert caught.value.code == 400


def test_bad_frame_keeps_readable_id() -> None:
    with pytest.raises(FrameError) as caught:
        decode_chunk(_frame({**GOOD, "offset": "zero"}))
    assert caught.value.request_id == "c1"


def test_checksum_mismatch_detected() -> None:
    header = ChunkHeader(id="c", upload_id="u", file_path="f", offset=0, checksum=hashlib.sha256(b"a").hexdigest())
    assert not decode_chunk(encode_chunk(header, b"b")).checksum_ok()


def test_encode_refuses_oversized_data() -> None:
    header = ChunkHeader(id="c", upload_id="u", file_path="f", offset=0)
    with pytest.raises(FrameError, match="chunk data"):
        encode_chunk(header, b"x" * (CHUNK_SIZE + 1))


@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_frame_error(frame: bytes) -> None:
    try:
        decode_chunk(frame)
    except FrameError:
        pass
