"""Every JSON example of the seed protocol parses with its model and serialises back unchanged."""

from __future__ import annotations

import json

import pytest

from capydeploy.protocol import REPLY_MODELS, REQUEST_MODELS, MessageType
from capydeploy.protocol.messages import ChunkHeader, WireModel

T = MessageType

# (message type, payload) exactly as in ../shared/spec/websocket-api.md, except that
# pairing_required carries code "" (decision D3) and the seed's literal `...` list item is dropped.
SEED_EXAMPLES: list[tuple[MessageType, str]] = [
    (T.HUB_CONNECTED, '{"name": "CapyDeploy Hub", "version": "0.1.0", "hubId": "hub-abc123", "token": "stored-token-or-empty"}'),
    (T.PAIRING_REQUIRED, '{"code": "", "expiresIn": 60}'),
    (T.PAIR_CONFIRM, '{ "code": "123456" }'),
    (T.PAIR_SUCCESS, '{ "token": "secure-auth-token..." }'),
    (T.PAIR_FAILED, '{ "reason": "invalid code" }'),
    (T.AGENT_STATUS, '{"name": "Steam Deck", "version": "0.1.0", "platform": "linux", "acceptConnections": true}'),
    (
        T.INFO_RESPONSE,
        '{"agent": {"id": "agent-abc123", "name": "Steam Deck", "platform": "linux", "capabilities": ["file_upload", "steam_shortcuts"]}}',
    ),
    (T.CONFIG_RESPONSE, '{ "installPath": "/home/deck/Games" }'),
    (T.STEAM_USERS_RESPONSE, '{"users": [{ "id": "76561198012345678", "name": "Gamer" }]}'),
    (T.LIST_SHORTCUTS, '{ "userId": 76561198012345678 }'),
    (
        T.SHORTCUTS_RESPONSE,
        '{"shortcuts": [{"appId": 2857492837, "name": "Celeste", "exe": "/home/deck/Games/Celeste/Celeste.exe"}]}',
    ),
    (
        T.CREATE_SHORTCUT,
        '{"userId": 76561198012345678, "shortcut": {"name": "Celeste", "exe": "/path/to/Celeste.exe", '
        '"startDir": "/path/to/game", "artwork": { "grid": "https://...", "hero": "https://..." }}}',
    ),
    (T.OPERATION_RESULT, '{ "appId": 2857492837, "success": true }'),
    (T.DELETE_SHORTCUT, '{"userId": "76561198012345678", "appId": 2857492837, "restartSteam": true}'),
    (
        T.APPLY_ARTWORK,
        '{"userId": "76561198012345678", "appId": 2857492837, "artwork": {"grid": "https://...", '
        '"hero": "https://...", "logo": "https://..."}}',
    ),
    (T.ARTWORK_RESPONSE, '{"applied": ["grid", "hero"], "failed": [{"type": "logo", "error": "download failed"}]}'),
    (T.STEAM_RESPONSE, '{ "success": true, "message": "Steam restarted" }'),
    (
        T.INIT_UPLOAD,
        '{"config": {"gameName": "Celeste", "installPath": "/home/deck/Games", "executable": "Celeste.exe"}, '
        '"totalSize": 1234567890, "files": [{ "relativePath": "Celeste.exe", "size": 12345 }, '
        '{ "relativePath": "data/game.pak", "size": 1234555545 }]}',
    ),
    (T.UPLOAD_INIT_RESPONSE, '{"uploadId": "upload-abc123", "chunkSize": 1048576}'),
    (T.UPLOAD_CHUNK_RESPONSE, '{"uploadId": "upload-abc123", "bytesWritten": 1048576, "totalWritten": 52428800}'),
    (
        T.COMPLETE_UPLOAD,
        '{"uploadId": "upload-abc123", "createShortcut": true, "shortcut": {"name": "Celeste", '
        '"exe": "Celeste.exe", "artwork": { "grid": "...", "hero": "..." }}}',
    ),
    (T.OPERATION_RESULT, '{"success": true, "path": "/home/deck/Games/Celeste", "appId": 2857492837}'),
    (T.CANCEL_UPLOAD, '{ "uploadId": "upload-abc123" }'),
    (
        T.UPLOAD_PROGRESS,
        '{"uploadId": "upload-abc123", "transferredBytes": 524288000, "totalBytes": 1234567890, '
        '"currentFile": "data/game.pak", "percentage": 42.5}',
    ),
    (
        T.OPERATION_EVENT,
        '{"type": "install", "status": "complete", "gameName": "Celeste", "progress": 100, "message": "Installation complete"}',
    ),
]


def _model_for(message_type: MessageType) -> type[WireModel]:
    model = REQUEST_MODELS.get(message_type) or REPLY_MODELS[message_type]
    assert issubclass(model, WireModel)
    return model


@pytest.mark.parametrize(("message_type", "text"), SEED_EXAMPLES, ids=[t.value for t, _ in SEED_EXAMPLES])
def test_seed_example_round_trips(message_type: MessageType, text: str) -> None:
    original = json.loads(text)
    parsed = _model_for(message_type).model_validate(original)
    assert parsed.to_wire() == original


def test_binary_chunk_header_example_round_trips() -> None:
    original = {
        "id": "msg-id",
        "uploadId": "upload-abc123",
        "filePath": "data/game.pak",
        "offset": 0,
        "checksum": "a" * 64,  # the seed writes "sha256..."; D6 requires the hex digest.
    }
    assert ChunkHeader.model_validate(original).to_wire() == original


def test_every_request_and_reply_type_has_an_example_or_is_empty() -> None:
    covered = {message_type for message_type, _ in SEED_EXAMPLES}
    empty_payloads = {T.PING, T.PONG, T.GET_INFO, T.GET_CONFIG, T.GET_STEAM_USERS, T.RESTART_STEAM}
    extensions = {T.DELETE_GAME}  # D8, tested in test_messages.py
    missing = (set(REQUEST_MODELS) | set(REPLY_MODELS)) - covered - empty_payloads - extensions
    assert missing == set()
