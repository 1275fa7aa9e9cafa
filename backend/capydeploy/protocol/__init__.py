"""The wire protocol between Hub and Agent: messages, envelope, binary frames, path rules.

Pure code: no sockets, no files, no Steam. Everything else in the package builds on it.
"""

from . import constants
from .catalog import PUSH_TYPES, REPLY_MODELS, REPLY_TYPE, REQUEST_MODELS, UNAUTHENTICATED_TYPES, MessageType
from .envelope import (
    Envelope,
    describe_validation_error,
    encode_error,
    encode_message,
    new_message_id,
    parse_envelope,
    parse_payload,
    parse_request,
    parse_request_text,
)
from .errors import CloseCode, ErrorCode, FrameError, ProtocolError
from .frames import ChunkFrame, decode_chunk, encode_chunk
from .paths import PathRuleError, validate_game_name, validate_relative_path
from .types import account_id_of

__all__ = [
    "PUSH_TYPES",
    "REPLY_MODELS",
    "REPLY_TYPE",
    "REQUEST_MODELS",
    "UNAUTHENTICATED_TYPES",
    "ChunkFrame",
    "CloseCode",
    "Envelope",
    "ErrorCode",
    "FrameError",
    "MessageType",
    "PathRuleError",
    "ProtocolError",
    "account_id_of",
    "constants",
    "decode_chunk",
    "describe_validation_error",
    "encode_chunk",
    "encode_error",
    "encode_message",
    "new_message_id",
    "parse_envelope",
    "parse_payload",
    "parse_request",
    "parse_request_text",
    "validate_game_name",
    "validate_relative_path",
]
