"""The binary chunk frame `[u32 big-endian header length][UTF-8 JSON header][data]` (D6)."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

from pydantic import ValidationError

from .constants import CHUNK_SIZE, MAX_CHUNK_HEADER, MAX_MESSAGE
from .envelope import describe_validation_error
from .errors import FrameError
from .messages import ChunkHeader

_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class ChunkFrame:
    header: ChunkHeader
    data: memoryview

    def checksum_ok(self) -> bool:
        """True when the header carries no checksum or the data matches it."""
        if self.header.checksum is None:
            return True
        return hashlib.sha256(self.data).hexdigest() == self.header.checksum


def encode_chunk(header: ChunkHeader, data: bytes | memoryview) -> bytes:
    """Build one frame; raises FrameError when the header or data exceed the limits."""
    header_bytes = json.dumps(header.to_wire(), separators=(",", ":"), ensure_ascii=False).encode()
    if len(header_bytes) > MAX_CHUNK_HEADER:
        raise FrameError(f"chunk header is {len(header_bytes)} bytes, more than {MAX_CHUNK_HEADER}")
    if len(data) > CHUNK_SIZE:
        raise FrameError(f"chunk data is {len(data)} bytes, more than {CHUNK_SIZE}")
    return b"".join((_LENGTH.pack(len(header_bytes)), header_bytes, data))


def decode_chunk(frame: bytes | bytearray | memoryview, max_data: int = CHUNK_SIZE) -> ChunkFrame:
    """Split and validate one frame; FrameError says what is wrong (with the id when readable)."""
    view = memoryview(frame)
    if len(view) > MAX_MESSAGE:
        raise FrameError(f"frame is {len(view)} bytes, more than {MAX_MESSAGE}")
    if len(view) < _LENGTH.size:
        raise FrameError(f"frame is {len(view)} bytes, too short for the 4-byte header length")
    (header_length,) = _LENGTH.unpack_from(view)
    if header_length == 0:
        raise FrameError("chunk header length is 0")
    if header_length > MAX_CHUNK_HEADER:
        raise FrameError(f"chunk header length {header_length} is more than {MAX_CHUNK_HEADER}")
    if header_length > len(view) - _LENGTH.size:
        raise FrameError(
            f"chunk header length {header_length} is more than the {len(view) - _LENGTH.size} bytes that follow"
        )
    header_end = _LENGTH.size + header_length
    try:
        raw = json.loads(bytes(view[_LENGTH.size : header_end]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"chunk header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise FrameError("chunk header must be a JSON object")
    raw_id = raw.get("id")
    request_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 128 else None
    try:
        header = ChunkHeader.model_validate(raw)
    except ValidationError as exc:
        raise FrameError(describe_validation_error(exc, prefix="header"), request_id) from None
    data = view[header_end:]
    if len(data) > max_data:
        raise FrameError(f"chunk data is {len(data)} bytes, more than the chunk size {max_data}", request_id)
    return ChunkFrame(header=header, data=data)
