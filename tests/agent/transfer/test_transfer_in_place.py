"""A redeploy that changes nothing is completed in place: the installed folder stays, nothing is
linked, swapped or deleted; any change to that folder before completion falls back to the usual
carry, and nothing is ever lost."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from capydeploy.agent.transfer import InstalledGame, TransferService
from capydeploy.agent.transfer.manifest import manifest_path
from capydeploy.protocol.constants import SHA256_MISMATCH
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from capydeploy.protocol.messages import InitUpload, UploadFile
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import (
    CHUNK,
    HUB,
    OTHER_HUB,
    RecordingWriter,
    all_frames,
    files_of,
    frame,
    frames_for,
    game_version,
    make_request,
    send,
    sha,
    snapshot,
    staging_root,
    tree_of,
    upload,
)


def version(seed: int) -> dict[str, bytes]:
    """The usual small game, with a folder two deep, a launcher script and an empty file."""
    return {
        **game_version(seed),
        "data/deep/level3.pak": random.Random(seed).randbytes(CHUNK + 3),
        "run.sh": b"#!/bin/sh\nexec ./game.exe\n",
        "empty.cfg": b"",
    }


def inodes(folder: Path) -> dict[str, int]:
    """Every entry under `folder` (and the folder itself, as ".") with its inode number."""
    found = {".": os.lstat(folder).st_ino}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(dirpath, name)
            found[path.relative_to(folder).as_posix()] = os.lstat(path).st_ino
    return found


def modes(folder: Path) -> dict[str, int]:
    return {
        Path(dirpath, name).relative_to(folder).as_posix(): stat.S_IMODE(os.lstat(Path(dirpath, name)).st_mode)
        for dirpath, _, files in os.walk(folder)
        for name in files
    }


def everything(files: dict[str, bytes]) -> dict[str, int]:
    return {path: len(data) for path, data in files.items()}


async def install_v1(service: TransferService, games: Path) -> Path:
    return await upload(service, "Game", version(1), exe="game.exe")


async def resume_sending_only_notes(service: TransferService, upload_id: str) -> InstalledGame:
    """The Hub comes back with version 1's list: the same upload resumes, every file held but
    notes.txt, which it sends; the upload completes with version 1 installed."""
    again = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    assert again.upload_id == upload_id
    assert again.resume_from == {path: size for path, size in everything(version(1)).items() if path != "notes.txt"}
    await send(service, frames_for(upload_id, "notes.txt", version(1)["notes.txt"]))
    installed = await service.complete_upload(HUB, upload_id)
    assert files_of(installed.path) == version(1)
    return installed


async def test_an_unchanged_redeploy_keeps_the_installed_folder(service: TransferService, games: Path) -> None:
    game = await install_v1(service, games)
    before, manifest_before = inodes(game), manifest_path(games, "Game").read_bytes()
    for _ in range(2):  # and again: the manifest still vouches for every file
        reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
        assert reply.resume_from == everything(version(1))
        # Nothing was linked into staging: its tree holds no file.
        staged_tree = staging_root(games) / reply.upload_id / "tree"
        assert [name for _, _, names in os.walk(staged_tree) for name in names if name != "empty.cfg"] == []
        installed = await service.complete_upload(HUB, reply.upload_id)
        assert installed.path == game and installed.file_count == len(version(1))
        assert installed.found_sha256 == {}
        # The same folder and the same files: nothing swapped, linked or rewritten.
        assert inodes(game) == before
        assert files_of(game) == version(1)
        assert manifest_path(games, "Game").read_bytes() == manifest_before
        assert list(staging_root(games).iterdir()) == []
        assert service.progress() is None


async def test_a_changed_executable_is_set_in_place(make_service: ServiceFactory, games: Path) -> None:
    writer = RecordingWriter()
    service = make_service(filesystem=writer)
    game = await install_v1(service, games)
    assert modes(game) == {
        "game.exe": 0o755, "run.sh": 0o755, "data/level1.pak": 0o644,
        "data/level2.pak": 0o644, "data/deep/level3.pak": 0o644, "empty.cfg": 0o644, "notes.txt": 0o644,
    }  # fmt: skip
    before = inodes(game)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="data/level1.pak"))
    writer.fsynced.clear()
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert installed.executable == game / "data/level1.pak"
    assert inodes(game) == before
    # The two files whose mode changed are made durable, and only they.
    assert sorted(writer.fsynced) == [str(game / "data/level1.pak"), str(game / "game.exe")]
    # The new executable is 0755; the old one is no program by its bytes: 0644; a script stays 0755.
    assert modes(game) == {
        "game.exe": 0o644, "run.sh": 0o755, "data/level1.pak": 0o755,
        "data/level2.pak": 0o644, "data/deep/level3.pak": 0o644, "empty.cfg": 0o644, "notes.txt": 0o644,
    }  # fmt: skip
    # A folder an install would make 0755 is made so again.
    os.chmod(game / "data", 0o700)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="data/level1.pak"))
    await service.complete_upload(HUB, reply.upload_id)
    assert stat.S_IMODE(os.lstat(game / "data").st_mode) == 0o755
    assert inodes(game) == before


@pytest.mark.parametrize("written", ["a file", "an empty folder", "a symlink", "a file in a folder of its own"])
async def test_what_the_game_wrote_in_its_folder_leaves_it_the_new_version(
    service: TransferService, games: Path, tmp_path: Path, written: str
) -> None:
    game = await install_v1(service, games)
    if written == "a file":
        (game / "data" / "save.dat").write_bytes(b"progress")
    elif written == "an empty folder":
        (game / "data" / "mods").mkdir()
    elif written == "a symlink":
        (game / "link").symlink_to(tmp_path)
    else:
        (game / "saves").mkdir()
        (game / "saves" / "slot1.sav").write_bytes(b"progress")
    before = inodes(game)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    assert reply.resume_from == everything(version(1))
    installed = await service.complete_upload(HUB, reply.upload_id)
    # Completed in place: the same folder and entries, the game's own among them.
    assert inodes(installed.path) == before
    assert {path: data for path, data in files_of(game).items() if path in version(1)} == version(1)


@pytest.mark.parametrize(
    "change", ["a listed file replaced by a symlink", "a folder as the game", "a file an earlier install put there"]
)
async def test_a_folder_holding_what_the_new_version_does_not_is_installed_the_usual_way(
    service: TransferService, games: Path, tmp_path: Path, change: str
) -> None:
    game = await install_v1(service, games)
    if change == "a listed file replaced by a symlink":
        outside = tmp_path / "notes.txt"
        outside.write_bytes(b"v1")
        stamp = os.lstat(game / "notes.txt")
        os.utime(outside, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        (game / "notes.txt").unlink()
        (game / "notes.txt").symlink_to(outside)
    elif change == "a folder as the game":
        moved = games / "Elsewhere"
        game.rename(moved)
        game.symlink_to(moved, target_is_directory=True)
    else:
        await upload(service, "Game", {**version(1), "data/old.pak": b"dropped by the next version"}, exe="game.exe")
    folder_inode = os.lstat(game).st_ino
    await upload(service, "Game", version(1), exe="game.exe")
    # Swapped as any install is: the folder is new and holds the listed files and nothing else.
    assert os.lstat(game).st_ino != folder_inode
    assert stat.S_ISDIR(os.lstat(game).st_mode)
    assert snapshot(game) == tree_of(version(1))
    if change == "a folder as the game":
        assert files_of(games / "Elsewhere") == version(1)  # only the link was replaced


async def test_a_file_edited_before_completion_must_be_sent_again(service: TransferService, games: Path) -> None:
    game = await install_v1(service, games)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    assert reply.resume_from == everything(version(1))
    os.utime(game / "notes.txt", ns=(5, 5))  # edited (same size) while the Hub was about to complete
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert caught.value.message.startswith("upload incomplete") and "notes.txt" in caught.value.message
    assert files_of(game) == version(1)  # nothing lost meanwhile
    # The rest is now carried the usual way; the file sent again completes the upload.
    installed = await resume_sending_only_notes(service, reply.upload_id)
    assert os.lstat(installed.path / "notes.txt").st_mtime_ns != 5


async def test_a_file_the_game_writes_before_completion_is_kept(service: TransferService, games: Path) -> None:
    game = await install_v1(service, games)
    before = inodes(game)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    (game / "stray.tmp").write_bytes(b"x")
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert snapshot(installed.path) == {**tree_of(version(1)), "stray.tmp": b"x"}
    assert inodes(installed.path) == {**before, "stray.tmp": os.lstat(game / "stray.tmp").st_ino}  # in place
    assert list(staging_root(games).iterdir()) == []


async def test_a_file_removed_before_completion_is_reported_missing(service: TransferService, games: Path) -> None:
    game = await install_v1(service, games)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    (game / "data/deep/level3.pak").unlink()
    with pytest.raises(ProtocolError, match=r"data/deep/level3\.pak"):
        await service.complete_upload(HUB, reply.upload_id)
    await send(service, frames_for(reply.upload_id, "data/deep/level3.pak", version(1)["data/deep/level3.pak"]))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert files_of(installed.path) == version(1)


async def test_a_chunk_sent_anyway_is_checked_and_never_written(service: TransferService, games: Path) -> None:
    game = await install_v1(service, games)
    before = inodes(game)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    data = version(1)["game.exe"][:CHUNK]
    ack = await service.write_chunk(HUB, frame(reply.upload_id, "game.exe", 0, data))
    assert ack.total_written == sum(everything(version(1)).values())
    with pytest.raises(ProtocolError) as caught:
        await service.write_chunk(HUB, frame(reply.upload_id, "game.exe", 0, data, checksum="0" * 64))
    assert caught.value.code == ErrorCode.BAD_REQUEST
    await service.complete_upload(HUB, reply.upload_id)
    assert inodes(game) == before and files_of(game) == version(1)


async def test_a_dropped_connection_resumes_the_same_upload(service: TransferService, games: Path) -> None:
    game = await install_v1(service, games)
    before = inodes(game)
    first = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    again = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    assert again.upload_id == first.upload_id and again.resume_from == everything(version(1))
    await service.complete_upload(HUB, again.upload_id)
    assert inodes(game) == before


async def test_cancel_leaves_the_installed_folder_alone(service: TransferService, games: Path) -> None:
    game = await install_v1(service, games)
    before = inodes(game)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    await service.cancel_upload(HUB, reply.upload_id)
    assert inodes(game) == before and files_of(game) == version(1)
    assert list(staging_root(games).iterdir()) == []


async def test_after_an_agent_restart_the_upload_is_carried_the_usual_way(
    make_service: ServiceFactory, games: Path
) -> None:
    before_restart = make_service()
    game = await install_v1(before_restart, games)
    level_inode = os.lstat(game / "data/level1.pak").st_ino
    first = await before_restart.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    # No close(): the Agent is killed. The new one finds the staged upload on disk.
    after_restart = make_service()
    again = await after_restart.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    assert again.upload_id == first.upload_id and again.resume_from == everything(version(1))
    folder_inode = os.lstat(game).st_ino
    installed = await after_restart.complete_upload(HUB, again.upload_id)
    assert files_of(installed.path) == version(1)
    assert os.lstat(installed.path / "data/level1.pak").st_ino == level_inode  # carried, not sent
    assert os.lstat(installed.path).st_ino != folder_inode  # a staged tree swapped in


def request_with_empty_files_listed_as(files: dict[str, bytes], sha256: str | None) -> InitUpload:
    """Every file listed with its hash but the empty ones, listed with `sha256` (None: without a
    hash, as a Hub may list them)."""
    request = make_request("Game", files, exe="game.exe")
    request.files = [
        UploadFile(relative_path=entry.relative_path, size=entry.size, sha256=entry.sha256 if entry.size else sha256)
        for entry in request.files
    ]
    return request


async def test_hashes_given_at_completion_are_checked_as_for_any_upload(
    service: TransferService, games: Path
) -> None:
    game = await install_v1(service, games)
    before = inodes(game)
    reply = await service.init_upload(HUB, request_with_empty_files_listed_as(version(1), None))
    with pytest.raises(ProtocolError, match=r"is not a file of this upload"):
        await service.complete_upload(HUB, reply.upload_id, {"other.bin": sha(b"")})
    with pytest.raises(ProtocolError, match=r"differs from the one in init_upload"):
        await service.complete_upload(HUB, reply.upload_id, {"notes.txt": sha(b"v2")})
    # The Agent reports the hash of the file listed without one (result_sha256), as any install does.
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert dict(installed.found_sha256) == {"empty.cfg": sha(b"")}
    assert inodes(game) == before
    # The right hash for it is taken (a wrong one: the next test).
    reply = await service.init_upload(HUB, request_with_empty_files_listed_as(version(1), None))
    installed = await service.complete_upload(HUB, reply.upload_id, {"empty.cfg": sha(b"")})
    assert dict(installed.found_sha256) == {} and inodes(game) == before


@pytest.mark.parametrize("given", ["listed", "at completion"])
async def test_a_wrong_hash_for_an_empty_file_is_answered_as_for_any_upload(
    service: TransferService, games: Path, given: str
) -> None:
    game = await install_v1(service, games)
    wrong = sha(b"x")
    listed = wrong if given == "listed" else None
    reply = await service.init_upload(HUB, request_with_empty_files_listed_as(version(1), listed))
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id, {"empty.cfg": wrong} if listed is None else None)
    assert caught.value.message.startswith(SHA256_MISMATCH) and "empty.cfg" in caught.value.message
    assert files_of(game) == version(1)


async def test_a_file_replaced_before_completion_is_sent_again_even_with_its_size_and_mtime(
    service: TransferService, games: Path
) -> None:
    game = await install_v1(service, games)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    # Other bytes put in its place, with the size and mtime the manifest recorded (cp -p, rsync -a).
    target = game / "data/level1.pak"
    stamp = os.lstat(target)
    twin = games / "twin"
    twin.write_bytes(b"?" * stamp.st_size)
    os.utime(twin, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    os.replace(twin, target)
    with pytest.raises(ProtocolError, match=r"^upload incomplete: .*data/level1\.pak"):
        await service.complete_upload(HUB, reply.upload_id)
    await send(service, frames_for(reply.upload_id, "data/level1.pak", version(1)["data/level1.pak"]))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert files_of(installed.path) == version(1)  # the listed bytes, not the replacement's


async def test_a_resuming_hub_is_told_what_changed_since_the_upload_began(
    service: TransferService, games: Path
) -> None:
    game = await install_v1(service, games)
    first = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    (game / "notes.txt").unlink()
    # The connection dropped; the Hub comes back with the same list.
    await resume_sending_only_notes(service, first.upload_id)


async def test_a_game_removed_before_completion_must_be_sent_again(service: TransferService, games: Path) -> None:
    await install_v1(service, games)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    await service.delete_game_folder("Game")
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.message.startswith("upload incomplete")
    again = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    assert again.upload_id == reply.upload_id and again.resume_from == {"empty.cfg": 0}
    await send(service, all_frames(again.upload_id, version(1), again.resume_from))
    installed = await service.complete_upload(HUB, again.upload_id)
    assert files_of(installed.path) == version(1)


async def test_another_version_installed_before_completion_is_not_mistaken_for_this_one(
    service: TransferService, games: Path
) -> None:
    await install_v1(service, games)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    await upload(service, "Game", version(2), exe="game.exe", hub=OTHER_HUB)  # only notes.txt differs
    with pytest.raises(ProtocolError, match=r"^upload incomplete: .*notes\.txt"):
        await service.complete_upload(HUB, reply.upload_id)
    again = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    await send(service, all_frames(again.upload_id, version(1), again.resume_from))
    installed = await service.complete_upload(HUB, again.upload_id)
    assert files_of(installed.path) == version(1)


async def test_a_file_whose_other_links_go_away_is_still_the_same_file(service: TransferService, games: Path) -> None:
    # Deleting the version an install replaced unlinks the old names of every file that install
    # carried: their link count (and ctime) changes, their data does not. That may happen between
    # a redeploy's init_upload and its completion; the redeploy stays in place.
    game = await install_v1(service, games)
    elsewhere = games / "old-name"
    os.link(game / "data/level1.pak", elsewhere)
    before = inodes(game)
    reply = await service.init_upload(HUB, make_request("Game", version(1), exe="game.exe"))
    elsewhere.unlink()
    await service.complete_upload(HUB, reply.upload_id)
    assert inodes(game) == before
