"""The JSON text-frame envelope `{id, type, payload?, error?}` and its parsing (D2)."""

from __future__ import annotations

import json
import secrets
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .catalog import REQUEST_MODELS, MessageType
from .errors import ErrorCode, ProtocolError
from .messages import ErrorBody, WireModel
from .types import MessageId

ModelT = TypeVar("ModelT", bound=BaseModel)


class Envelope(WireModel):
    id: MessageId
    type: str
    payload: dict[str, Any] | None = None
    error: ErrorBody | None = None


def new_message_id() -> str:
    """A fresh id for push events and Hub requests."""
    return secrets.token_hex(8)


def describe_validation_error(exc: ValidationError, prefix: str = "payload") -> str:
    """One readable line naming each bad field with its camelCase wire path."""
    parts: list[str] = []
    for error in exc.errors(include_url=False)[:5]:
        location = ".".join([prefix, *(_loc_part(part) for part in error["loc"])]).replace(".[", "[")
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        parts.append(f"{location}: {message}")
    more = len(exc.errors()) - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _loc_part(part: int | str) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    return part


def parse_envelope(text: str | bytes) -> Envelope:
    """Parse a text frame; raise ProtocolError(400) naming what is wrong (with the id if readable)."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"invalid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "message must be a JSON object")
    request_id = raw.get("id")
    readable_id = request_id if isinstance(request_id, str) and len(request_id) <= 128 else None
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, describe_validation_error(exc, prefix="message"), readable_id
        ) from None


def parse_payload(envelope: Envelope, model: type[ModelT]) -> ModelT:
    """Validate an envelope's payload against `model`; 400 naming the field on failure."""
    try:
        return model.model_validate(envelope.payload or {})
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, describe_validation_error(exc), envelope.id) from None


def parse_request(envelope: Envelope) -> tuple[MessageType, BaseModel]:
    """Resolve a request's type and payload model; 501 for unknown types, 400 for bad payloads."""
    try:
        message_type = MessageType(envelope.type)
    except ValueError:
        raise ProtocolError(
            ErrorCode.NOT_IMPLEMENTED, f"unknown message type {envelope.type[:64]!r}", envelope.id
        ) from None
    model = REQUEST_MODELS.get(message_type)
    if model is None:
        raise ProtocolError(
            ErrorCode.NOT_IMPLEMENTED, f"{message_type.value} is not a request", envelope.id
        )
    return message_type, parse_payload(envelope, model)


def encode_message(message_type: str, payload: BaseModel | dict[str, Any] | None, message_id: str) -> str:
    """Serialise one text frame."""
    frame: dict[str, Any] = {"id": message_id, "type": str(message_type)}
    if isinstance(payload, WireModel):
        frame["payload"] = payload.to_wire()
    elif isinstance(payload, BaseModel):
        frame["payload"] = payload.model_dump(mode="json", by_alias=True, exclude_none=True)
    elif payload is not None:
        frame["payload"] = payload
    return _dumps(frame)


def encode_error(code: ErrorCode | int, message: str, message_id: str | None) -> str:
    """Serialise an error reply `{"type": "error", "error": {code, message}}`."""
    frame = {
        "id": message_id if message_id is not None else "",
        "type": MessageType.ERROR.value,
        "error": {"code": int(code), "message": message},
    }
    return _dumps(frame)


def _dumps(frame: dict[str, Any]) -> str:
    """Compact JSON for a text frame, always valid UTF-8.

    JSON may carry a lone surrogate as an escape (`"\\ud800"`), and such an id or value is echoed
    back; written raw it could not be encoded as UTF-8 and the send would fail. Those frames are
    written with every non-ASCII character escaped, which round-trips to the same string.
    """
    text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(frame, separators=(",", ":"), ensure_ascii=True)
    return text
