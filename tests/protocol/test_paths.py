"""D6 path rules: each invalid case is rejected naming the field; nothing accepted can escape."""

from __future__ import annotations

import os.path
import posixpath

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from capydeploy.protocol import ProtocolError, parse_envelope, parse_request
from capydeploy.protocol.paths import PathRuleError, validate_game_name, validate_relative_path

BAD_GAME_NAMES = {
    "empty": "",
    "dot": ".",
    "dotdot": "..",
    "slash": "a/b",
    "leading slash": "/etc",
    "backslash": "a\\b",
    "backslash dotdot": "..\\..",
    "nul": "game\x00",
    "newline": "game\n",
    "escape": "\x1b[31m",
    "del": "a\x7f",
    "c1 control": "a\x85b",
    "too long": "é" * 128,  # 256 bytes
    "lone surrogate": "a\udcff",
    "reserved": ".capydeploy",
}

BAD_RELATIVE_PATHS = {
    "empty": "",
    "absolute": "/etc/passwd",
    "dotdot": "../x",
    "inner dotdot": "a/../../x",
    "trailing dotdot": "a/..",
    "dot": "./a",
    "inner dot": "a/./b",
    "empty component": "a//b",
    "trailing slash": "a/",
    "backslash": "a\\b",
    "windows traversal": "..\\..\\x",
    "nul": "a\x00b",
    "drive letter": "C:/Windows",
    "bare drive": "c:x",
    "control": "a/\tb",
    "component too long": "a/" + "x" * 256,
    "path too long": "/".join(["abcdefgh"] * 500),
    "lone surrogate": "a/\ud800",
}


@pytest.mark.parametrize("name", BAD_GAME_NAMES.values(), ids=BAD_GAME_NAMES.keys())
def test_bad_game_name_rejected(name: str) -> None:
    with pytest.raises(PathRuleError, match="gameName"):
        validate_game_name(name)


@pytest.mark.parametrize("path", BAD_RELATIVE_PATHS.values(), ids=BAD_RELATIVE_PATHS.keys())
def test_bad_relative_path_rejected(path: str) -> None:
    with pytest.raises(PathRuleError, match="relativePath"):
        validate_relative_path(path)


@pytest.mark.parametrize("name", ["Celeste", "Ōkami HD", "game (2024)", "a b", ".hidden", "..a", "a.."])
def test_good_game_names_accepted(name: str) -> None:
    assert validate_game_name(name) == name


@pytest.mark.parametrize("path", ["a", "data/game.pak", "..a/b..", "ü/ñ/文件.bin", "ab:c", ".config/x"])
def test_good_relative_paths_accepted(path: str) -> None:
    assert validate_relative_path(path) == path


def _init_upload_text(game_name: str, relative_path: str) -> str:
    import json

    return json.dumps(
        {
            "id": "r1",
            "type": "init_upload",
            "payload": {
                "config": {"gameName": game_name},
                "totalSize": 1,
                "files": [{"relativePath": relative_path, "size": 1}],
            },
        }
    )


@pytest.mark.parametrize("name", BAD_GAME_NAMES.values(), ids=BAD_GAME_NAMES.keys())
def test_init_upload_error_names_game_name_field(name: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request(parse_envelope(_init_upload_text(name, "a")))
    assert caught.value.code == 400
    assert "payload.config.gameName" in caught.value.message
    assert caught.value.request_id == "r1"


@pytest.mark.parametrize("path", BAD_RELATIVE_PATHS.values(), ids=BAD_RELATIVE_PATHS.keys())
def test_init_upload_error_names_relative_path_field(path: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request(parse_envelope(_init_upload_text("Game", path)))
    assert caught.value.code == 400
    assert "payload.files[0].relativePath" in caught.value.message


# Characters that matter for traversal, mixed with arbitrary Unicode.
_tricky = st.sampled_from(["/", ".", "..", "\\", "\x00", ":", "C:", "~", " ", "\u2215", "\uff0e", "%2e"])
_path_text = st.lists(st.one_of(_tricky, st.text(max_size=6)), max_size=12).map("".join)

BASE = "/srv/install/root"


def _inside(base: str, candidate: str) -> bool:
    return candidate.startswith(base + "/")


@settings(max_examples=3000)
@given(_path_text)
def test_accepted_relative_path_stays_inside(path: str) -> None:
    try:
        validate_relative_path(path)
    except PathRuleError:
        return
    assert _inside(BASE, posixpath.normpath(posixpath.join(BASE, path)))
    assert _inside(BASE, os.path.normpath(os.path.join(BASE, path)))


@settings(max_examples=3000)
@given(_path_text)
def test_accepted_game_name_is_one_component_inside(name: str) -> None:
    try:
        validate_game_name(name)
    except PathRuleError:
        return
    joined = posixpath.normpath(posixpath.join(BASE, name))
    assert posixpath.dirname(joined) == BASE


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6))
def test_game_name_followed_by_relative_path_stays_inside_game(parts: list[str]) -> None:
    path = "/".join(parts)
    assume(all(part not in (".", "..") for part in parts))
    try:
        validate_relative_path(path)
    except PathRuleError:
        return
    game = BASE + "/Game"
    assert _inside(game, posixpath.normpath(posixpath.join(game, path)))
