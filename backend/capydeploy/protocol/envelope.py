"""The JSON text-frame envelope `{id, type, payload?, error?}` and its parsing (D2)."""

from __future__ import annotations

import functools
import json
import secrets
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from .catalog import REQUEST_MODELS, MessageType
from .errors import ErrorCode, ProtocolError
from .listing import ListingBuilder
from .messages import ErrorBody, UploadFile, WireModel
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
    return _envelope_of(raw)


def _envelope_of(raw: Any) -> Envelope:
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


class ListedFile(Protocol):
    """A file of an upload's list: an `UploadFile` as received, or on the Agent a `FileListing` row as
    read back from disk, or a row of the `FileTable` a live upload keeps (a `StagedFile`)."""

    @property
    def relative_path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str | None: ...


def parse_request_text(text: str | bytes) -> tuple[Envelope, MessageType, BaseModel]:
    """`parse_envelope` then `parse_request`, for a large text frame (an init_upload of many files).

    The entries of `files` are validated as the JSON is read and go into a `FileListing`
    (columns), so a list of 100 000 never exists as objects: as dicts about 600 bytes an entry,
    as `UploadFile`s about 300, all alive until the request is validated (a game's hashes make the
    list 14 MB of text); as columns about 70. The result is always the plain path's: anything but a
    valid init_upload that had objects decoded so is parsed again the plain way, so errors read
    the same.
    """
    try:
        raw, decoded = _loads_decoding_entries(text)
    except (ValueError, RecursionError):
        raw, decoded = None, False  # the plain path reports it
    if decoded:
        try:
            envelope = _envelope_of(raw)
            message_type, request = parse_request(envelope)
        except ProtocolError:
            pass
        else:
            if message_type is MessageType.INIT_UPLOAD:
                envelope.payload = None  # its list is the request's now
                return envelope, message_type, request
    del raw
    envelope = parse_envelope(text)
    message_type, request = parse_request(envelope)
    return envelope, message_type, request


_ENTRY_KEYS = frozenset({"relativePath", "size", "sha256"})


@functools.cache
def upload_file_adapter() -> TypeAdapter[UploadFile]:
    """Validates one file entry on its own (a staged upload's record, an entry as it is read);
    built on first use, not at import."""
    return TypeAdapter(UploadFile)


def decode_file_entries(pairs: list[tuple[str, Any]]) -> Any:
    """JSON object hook: an object shaped like a valid file entry (only its keys, all valid)
    becomes its `UploadFile`; any other object stays a dict."""
    obj = dict(pairs)
    if "relativePath" in obj and obj.keys() <= _ENTRY_KEYS:
        try:
            return upload_file_adapter().validate_python(obj)
        except ValidationError:
            pass
    return obj


# What a file entry becomes as it is read: its values went to the listing being built.
_LISTED = object()


def _loads_decoding_entries(text: str | bytes) -> tuple[Any, bool]:
    """JSON whose list of file entries (each validated by `decode_file_entries`) is read into a
    `FileListing`; True if one was made. Only a list made of every entry read, and of nothing
    else, becomes a listing: any other entry-like object leaves a placeholder that fails the
    request's validation, so that text is parsed again the plain way."""
    builder = ListingBuilder()
    decoded = False

    def decode_object(pairs: list[tuple[str, Any]]) -> Any:
        nonlocal decoded
        obj = decode_file_entries(pairs)
        if isinstance(obj, UploadFile):
            builder.add(obj.relative_path, obj.size, obj.sha256)
            return _LISTED
        for key, value in obj.items():
            if type(value) is list and value and len(value) == len(builder) and value.count(_LISTED) == len(value):
                obj[key] = builder.finish()
                decoded = True
        return obj

    return json.loads(text, object_pairs_hook=decode_object), decoded


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
    return dumps_frame(frame)


def encode_error(code: ErrorCode | int, message: str, message_id: str | None) -> str:
    """Serialise an error reply `{"type": "error", "error": {code, message}}`."""
    frame = {
        "id": message_id if message_id is not None else "",
        "type": MessageType.ERROR.value,
        "error": {"code": int(code), "message": message},
    }
    return dumps_frame(frame)


def dumps_frame(frame: dict[str, Any]) -> str:
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
