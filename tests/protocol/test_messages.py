"""Constraints of D2-D8 enforced by the payload models and the envelope parser."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capydeploy.protocol import ErrorCode, ProtocolError, account_id_of, parse_envelope, parse_request
from capydeploy.protocol.catalog import MessageType
from capydeploy.protocol.envelope import encode_error, encode_message
from capydeploy.protocol.messages import (
    CompleteUpload,
    DeleteGame,
    InitUpload,
    ListShortcuts,
    PairingRequired,
)


def _request(message_type: str, payload: Any) -> str:
    return json.dumps({"id": "req-1", "type": message_type, "payload": payload})


def _error(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_request(parse_envelope(text))
    return caught.value


@pytest.mark.parametrize(
    ("user_id", "account_id"),
    [
        (76561198012345678, 52079950),
        ("76561198012345678", 52079950),
        (52079950, 52079950),
        ("52079950", 52079950),
        (1, 1),
        (4294967295, 4294967295),
    ],
)
def test_user_id_forms(user_id: int | str, account_id: int) -> None:
    request = ListShortcuts.model_validate({"userId": user_id})
    assert request.account_id == account_id
    assert account_id_of(user_id) == account_id
    assert request.to_wire() == {"userId": user_id}


@pytest.mark.parametrize(
    "user_id",
    [0, -1, "0", "-5", "+7", " 7", "7\n", "\u0667", "abc", "", True, False, None, 7.0, 2**32 + 5, 76561197960265728,
     76561197960265728 + 2**32, "765611979602657280000", [1]],
)
def test_account_id_of_refuses_what_d5_does_not_accept(user_id: object) -> None:
    with pytest.raises(ValueError):
        account_id_of(user_id)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "user_id",
    [0, -1, "0", "", "abc", "7\n", "\u0667", "7.6e16", 7.6e16, True, None, 2**32 + 5, "765611979602657280000", [1]],
)
def test_bad_user_id_names_the_field(user_id: object) -> None:
    error = _error(_request("list_shortcuts", {"userId": user_id}))
    assert error.code == ErrorCode.BAD_REQUEST
    assert "payload.userId" in error.message


@pytest.mark.parametrize("app_id", [-1, 2**32, "123", 1.5, None])
def test_app_id_is_unsigned_32_bit(app_id: object) -> None:
    error = _error(_request("delete_shortcut", {"userId": 1, "appId": app_id}))
    assert "payload.appId" in error.message


def _init(files: list[dict[str, Any]], total: int, **config: Any) -> dict[str, Any]:
    return {"config": {"gameName": "Game", **config}, "totalSize": total, "files": files}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_init([{"relativePath": "a", "size": -1}], -1), "payload.files[0].size"),
        (_init([{"relativePath": "a", "size": 1}], 2), "totalSize"),
        (_init([{"relativePath": "a", "size": 1}, {"relativePath": "a", "size": 0}], 1), "listed twice"),
        (_init([{"relativePath": "a", "size": 1}, {"relativePath": "a/b", "size": 0}], 1), "both a file and a folder"),
        (_init([{"relativePath": "a", "size": 1}], 1, executable="b"), "config.executable"),
        (_init([{"relativePath": "a", "size": 1}], 1, executable="../a"), "payload.config.executable"),
        (_init([{"relativePath": "a", "size": 1}], 1, installPath="relative/dir"), "payload.config.installPath"),
        (_init([{"relativePath": "a", "size": 1, "sha256": "zz"}], 1), "payload.files[0].sha256"),
        (_init([{"relativePath": "a", "size": "1"}], 1), "payload.files[0].size"),
        ({"config": {"gameName": "G"}, "totalSize": 0}, "payload.files"),
        ({"totalSize": 0, "files": []}, "payload.config"),
    ],
)
def test_init_upload_rejections_name_the_problem(payload: dict[str, Any], field: str) -> None:
    error = _error(_request("init_upload", payload))
    assert error.code == ErrorCode.BAD_REQUEST
    assert field in error.message


def test_init_upload_file_count_limit() -> None:
    files = [{"relativePath": f"f{i}", "size": 0} for i in range(100_001)]
    error = _error(_request("init_upload", _init(files, 0)))
    assert "payload.files" in error.message


def test_init_upload_sha256_is_lowercased_and_extra_fields_ignored() -> None:
    payload = _init([{"relativePath": "a", "size": 1, "sha256": "AB" * 32, "mode": 7}], 1)
    payload["unknownTopLevel"] = {"x": 1}
    request = InitUpload.model_validate(payload)
    assert request.files[0].sha256 == "ab" * 32


def test_pairing_required_never_carries_a_code() -> None:
    with pytest.raises(ValueError):
        PairingRequired.model_validate({"code": "123456", "expiresIn": 60})
    assert PairingRequired(expires_in=60).to_wire() == {"code": "", "expiresIn": 60}


def test_delete_game_needs_name_or_app_id() -> None:
    assert DeleteGame.model_validate({"gameName": "G"}).game_name == "G"
    assert DeleteGame.model_validate({"appId": 5}).app_id == 5
    error = _error(_request("delete_game", {}))
    assert "gameName or appId is required" in error.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "invalid JSON"),
        ("[]", "must be a JSON object"),
        ('"x"', "must be a JSON object"),
        ('{"type": "ping"}', "message.id"),
        ('{"id": "1"}', "message.type"),
        ('{"id": 5, "type": "ping"}', "message.id"),
        ('{"id": "1", "type": "ping", "payload": [1]}', "message.payload"),
        ("[" * 100_000, "invalid JSON"),
    ],
)
def test_bad_envelopes_are_400(text: str, message: str) -> None:
    error = _error(text)
    assert error.code == ErrorCode.BAD_REQUEST
    assert message in error.message


def test_bad_envelope_echoes_readable_id() -> None:
    assert _error('{"id": "abc", "type": 5}').request_id == "abc"


def test_unknown_type_is_501_and_reply_type_is_not_a_request() -> None:
    unknown = _error('{"id": "1", "type": "format_disk"}')
    assert unknown.code == ErrorCode.NOT_IMPLEMENTED
    assert unknown.request_id == "1"
    reply = _error('{"id": "1", "type": "pong"}')
    assert reply.code == ErrorCode.NOT_IMPLEMENTED


def test_encode_message_and_error() -> None:
    frame = json.loads(encode_message(MessageType.PONG, None, "x"))
    assert frame == {"id": "x", "type": "pong"}
    error = json.loads(encode_error(ErrorCode.NOT_FOUND, "no such upload", None))
    assert error == {"id": "", "type": "error", "error": {"code": 404, "message": "no such upload"}}


@pytest.mark.parametrize(
    ("sha256", "field"),
    [
        ({"../escape": "ab" * 32}, "payload.sha256"),
        ({"a\\b": "ab" * 32}, "payload.sha256"),
        ({"a": "not hex"}, "payload.sha256.a"),
        ({"a": 7}, "payload.sha256.a"),
        (["ab" * 32], "payload.sha256"),
    ],
)
def test_complete_upload_sha256_extension_is_validated(sha256: Any, field: str) -> None:
    error = _error(_request("complete_upload", {"uploadId": "u1", "sha256": sha256}))
    assert error.code == ErrorCode.BAD_REQUEST
    assert field in error.message


def test_complete_upload_sha256_extension_round_trips() -> None:
    wire = {"uploadId": "u1", "sha256": {"data/a.bin": "AB" * 32, "b": "cd" * 32}}
    _, request = parse_request(parse_envelope(_request("complete_upload", wire)))
    assert isinstance(request, CompleteUpload)
    assert request.sha256 == {"data/a.bin": "ab" * 32, "b": "cd" * 32}
    assert request.to_wire()["sha256"] == {"data/a.bin": "ab" * 32, "b": "cd" * 32}
    # Optional: a plain seed complete_upload is still valid, and does not grow the field.
    _, plain = parse_request(parse_envelope(_request("complete_upload", {"uploadId": "u1"})))
    assert isinstance(plain, CompleteUpload) and plain.sha256 is None
    assert "sha256" not in plain.to_wire()


def _list_problem(paths: list[str], executable: str | None) -> str | None:
    """What a list of paths breaks, decided the plain way (a set, every prefix of every path)."""
    seen: set[str] = set()
    for index, path in enumerate(paths):
        if path in seen:
            return f"files[{index}].relativePath {path!r} is listed twice"
        seen.add(path)
    if any("/".join(path.split("/")[:depth]) in seen for path in paths for depth in range(1, path.count("/") + 1)):
        return "both a file and a folder"
    if executable is not None and executable not in seen:
        return "config.executable"
    return None


# A small alphabet so that repeats, prefixes and near-prefixes ("a-b", "a.b" sort between "a" and "a/b").
_names = st.text(alphabet="ab-.", min_size=1, max_size=3).filter(lambda name: name not in {".", ".."})
_paths = st.lists(_names, min_size=1, max_size=3).map("/".join)


@given(st.lists(_paths, max_size=12), st.one_of(st.none(), _paths))
def test_init_upload_list_rules_match_the_plain_set_check(paths: list[str], executable: str | None) -> None:
    files = [{"relativePath": path, "size": 1} for path in paths]
    payload = _init(files, len(files), **({} if executable is None else {"executable": executable}))
    problem = _list_problem(paths, executable)
    if problem is None:
        _, request = parse_request(parse_envelope(_request("init_upload", payload)))
        assert isinstance(request, InitUpload) and [f.relative_path for f in request.files] == paths
        return
    error = _error(_request("init_upload", payload))
    assert error.code == ErrorCode.BAD_REQUEST and problem in error.message
    if problem == "both a file and a folder":  # the one it names is both
        named = error.message.split("relativePath ", 1)[1].split(" is both", 1)[0].strip("'\"")
        assert named in paths and any(path.startswith(named + "/") for path in paths)
