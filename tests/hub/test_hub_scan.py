"""Scanning a game folder on the Hub: relative paths, symlinks, refused names, executable guesses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capydeploy.hub.scan import (
    LocalFile,
    ScanError,
    SkippedEntry,
    executable_candidates,
    guess_executable,
    scan_folder,
)

posix_only = pytest.mark.skipif(os.name == "nt", reason="symlinks and exec bits need POSIX here")


def write(root: Path, rel: str, data: bytes = b"x", mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


def test_scan_lists_files_sorted_with_forward_slashes(tmp_path: Path) -> None:
    game = tmp_path / "game"
    write(game, "b.txt", b"bb")
    write(game, "a/z/deep.bin", b"deep")
    write(game, "a/ünï 🎮.txt", b"")
    (game / "empty-folder").mkdir()
    files = scan_folder(game)
    assert [f.relative_path for f in files] == ["a/z/deep.bin", "a/ünï 🎮.txt", "b.txt"]
    deep = files[0]
    assert deep.path == str((game / "a" / "z" / "deep.bin").absolute())
    assert deep.size == 4
    assert deep.mtime_ns == os.stat(game / "a/z/deep.bin").st_mtime_ns
    assert scan_folder(game / "empty-folder") == []


def test_scanned_paths_are_absolute_and_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash cache keys files by these paths: the same file must get the same path however
    the folder was named."""
    write(tmp_path / "game", "sub/file.bin", b"x")
    monkeypatch.chdir(tmp_path)
    expected = os.path.join(str(tmp_path), "game", "sub", "file.bin")
    for spelling in ("game", "./game", "game/../game/", str(tmp_path / "game")):
        assert [f.path for f in scan_folder(Path(spelling))] == [expected]


def test_scan_refuses_what_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ScanError):
        scan_folder(tmp_path / "missing")
    write(tmp_path, "file")
    with pytest.raises(ScanError):
        scan_folder(tmp_path / "file")


@posix_only
@pytest.mark.parametrize("name", ["back\\slash.txt", "ctrl\x01.txt"])
def test_names_the_protocol_cannot_carry_are_an_error(tmp_path: Path, name: str) -> None:
    game = tmp_path / "game"
    write(game, "fine.txt")
    write(game, name)
    with pytest.raises(ScanError, match="cannot be sent"):
        scan_folder(game)


@posix_only
def test_symlinks(tmp_path: Path) -> None:
    game = tmp_path / "game"
    write(game, "real/data.bin", b"data")
    outside = write(tmp_path, "outside.txt", b"secret")
    (game / "inside-link.bin").symlink_to(game / "real" / "data.bin")
    (game / "outside-link.txt").symlink_to(outside)
    (game / "folder-link").symlink_to(game / "real")
    (game / "broken").symlink_to(game / "nowhere")
    skipped: list[SkippedEntry] = []
    files = scan_folder(game, on_skip=skipped.append)
    by_path = {f.relative_path: f for f in files}
    assert sorted(by_path) == ["inside-link.bin", "real/data.bin"]
    assert by_path["inside-link.bin"].size == 4  # followed: sent as a regular file
    reasons = {entry.relative_path: entry.reason for entry in skipped}
    assert sorted(reasons) == ["broken", "folder-link", "outside-link.txt"]
    assert "outside the folder" in reasons["outside-link.txt"]
    assert "folder" in reasons["folder-link"]


def local(rel: str, exec_bit: bool = False) -> LocalFile:
    return LocalFile(rel, f"/x/{rel}", 1, 0, exec_bit)


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["Celeste.exe", "Content/a.xnb", "FNA.dll"], ["Celeste.exe"]),
        (["Game.exe", "Game/Binaries/Win64/Game-Win64-Shipping.exe"], ["Game.exe"]),  # top level wins
        (["bin/game.x86_64", "bin/lib.so"], ["bin/game.x86_64"]),  # nothing at the top: go deeper
        (["Game.exe", "UnityCrashHandler64.exe", "unins000.exe", "UnityPlayer.dll"], ["Game.exe"]),
        (["_CommonRedist/vcredist/vc_redist.x64.exe", "run.sh"], ["run.sh"]),
        (["Game.AppImage"], ["Game.AppImage"]),
        (["game.exe", "start.sh"], ["game.exe", "start.sh"]),  # several: the user must choose
        (["data.pak", "readme.txt"], []),
    ],
)
def test_executable_candidates(paths: list[str], expected: list[str]) -> None:
    candidates = executable_candidates([local(p) for p in paths])
    assert sorted(candidates) == sorted(expected)
    assert guess_executable([local(p) for p in paths]) == (expected[0] if len(expected) == 1 else None)


def test_exec_bit_makes_a_candidate_unless_every_file_has_it() -> None:
    files = [
        local("game", exec_bit=True),
        local("data.pak"),
        local("libfoo.so.1", exec_bit=True),
        local("x.txt"),
    ]
    assert executable_candidates(files) == ["game"]
    copied_from_fat = [local(p, exec_bit=True) for p in ("game", "data.pak", "x.txt")]
    assert executable_candidates(copied_from_fat) == []


@posix_only
def test_scan_records_the_exec_bit(tmp_path: Path) -> None:
    game = tmp_path / "game"
    write(game, "run", b"#!/bin/sh\n", mode=0o755)
    write(game, "data", b"d", mode=0o644)
    files = scan_folder(game)
    assert {f.relative_path: f.exec_bit for f in files} == {"data": False, "run": True}
    assert guess_executable(files) == "run"


def test_chunk_headers_built_without_validation_are_valid_on_the_wire(tmp_path: Path) -> None:
    """The Hub skips pydantic's checks when it builds chunk headers; the Agent must still read them
    back exactly (paths as the scan produced them, Unicode and deep ones included)."""
    import hashlib

    from capydeploy.hub.deploy import _chunk_header
    from capydeploy.protocol.frames import decode_chunk, encode_chunk

    for relative in ["a.bin", "données/ünïcødé 文件.txt", "/".join(f"d{i}" for i in range(30)) + "/x"]:
        target = tmp_path / "game" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    for file in scan_folder(tmp_path / "game"):
        data = Path(file.path).read_bytes()
        header = _chunk_header("upload-" + "a" * 32, file.relative_path, 1024 * 1024, hashlib.sha256(data).hexdigest())
        frame = decode_chunk(encode_chunk(header, data))
        assert frame.header == header.model_validate(header.to_wire())
        assert (frame.header.file_path, frame.header.offset) == (file.relative_path, 1024 * 1024)
        assert frame.checksum_ok()
