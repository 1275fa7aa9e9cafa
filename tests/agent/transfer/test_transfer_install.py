"""Completion and what it must never break: missing bytes, failing disks, cancels, incremental redeploys."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from capydeploy.agent.transfer import TransferService, incremental
from capydeploy.agent.transfer.manifest import manifest_path
from capydeploy.agent.transfer.staging import trash_dir
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import (
    CHUNK,
    HUB,
    OTHER_HUB,
    FailingWriter,
    all_frames,
    files_of,
    frames_for,
    make_request,
    send,
    snapshot,
    staging_root,
    swap_failing,
    upload,
)
from tests.agent.transfer.transfer_helpers import (
    game_version as version,
)


async def installed_v1(service: TransferService, games: Path) -> dict[str, bytes]:
    await upload(service, "Game", version(1), exe="game.exe")
    return snapshot(games / "Game")


async def test_cancel_deletes_only_staging(service: TransferService, games: Path) -> None:
    before = await installed_v1(service, games)
    files = version(2)
    reply = await service.init_upload(HUB, make_request("Game", files))
    await send(service, all_frames(reply.upload_id, files)[:5])
    await service.cancel_upload(HUB, reply.upload_id)
    assert snapshot(games / "Game") == before
    assert list(staging_root(games).iterdir()) == []
    assert service.progress() is None
    with pytest.raises(ProtocolError) as caught:
        await service.cancel_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_complete_with_missing_bytes_lists_them(service: TransferService, games: Path) -> None:
    before = await installed_v1(service, games)
    files = version(2)
    reply = await service.init_upload(HUB, make_request("Game", files))
    frames = all_frames(reply.upload_id, files)
    held = [f for f in frames if not (f.header.file_path == "data/level1.pak" and f.header.offset == CHUNK)]
    held = [f for f in held if f.header.file_path != "notes.txt"]
    await send(service, held)
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    message = caught.value.message
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert message.startswith("upload incomplete: 1026 bytes missing in 2 files: ")
    assert "data/level1.pak is missing bytes 1024-2047 (1024 of 4096)" in message
    assert "notes.txt is missing bytes 0-1 (2 of 2)" in message
    assert snapshot(games / "Game") == before
    # Still resumable: send the rest and complete.
    await send(service, [f for f in frames if f not in held])
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert files_of(installed.path) == files


async def test_a_full_disk_fails_with_500_and_keeps_the_installed_version(
    make_service: ServiceFactory, games: Path
) -> None:
    writer = FailingWriter(budget=10**12)
    service = make_service(filesystem=writer)
    before = await installed_v1(service, games)
    files = version(2)
    reply = await service.init_upload(HUB, make_request("Game", files))
    writer.budget = writer.written + 2 * CHUNK + 100  # the disk fills up mid-chunk
    frames = all_frames(reply.upload_id, files)
    await send(service, frames[:2])
    with pytest.raises(ProtocolError) as caught:
        await service.write_chunk(HUB, frames[2])
    assert caught.value.code == ErrorCode.INTERNAL
    assert "no space left" in caught.value.message
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert snapshot(games / "Game") == before
    # Space is freed: the same upload carries on where it stopped.
    writer.budget = 10**12
    again = await service.init_upload(HUB, make_request("Game", files))
    assert again.upload_id == reply.upload_id
    assert again.resume_from is not None and again.resume_from["game.exe"] == 2 * CHUNK
    await send(service, all_frames(again.upload_id, files, again.resume_from))
    installed = await service.complete_upload(HUB, again.upload_id)
    assert files_of(installed.path) == files


async def test_an_fsync_error_at_completion_keeps_the_installed_version(
    make_service: ServiceFactory, games: Path
) -> None:
    writer = FailingWriter(budget=10**12)
    service = make_service(filesystem=writer)
    before = await installed_v1(service, games)
    files = version(2)
    reply = await service.init_upload(HUB, make_request("Game", files))
    await send(service, all_frames(reply.upload_id, files))
    writer.fail_fsync = True
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.INTERNAL
    assert snapshot(games / "Game") == before
    writer.fail_fsync = False
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "notes.txt").read_bytes() == b"v2"


async def test_a_failed_swap_puts_the_old_version_back(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await installed_v1(service, games)
    files = version(2)
    reply = await service.init_upload(HUB, make_request("Game", files))
    await send(service, all_frames(reply.upload_id, files))
    with swap_failing(monkeypatch), pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.INTERNAL
    assert snapshot(games / "Game") == before
    assert manifest_path(games, "Game").exists()  # the old manifest still vouches for the old files
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "notes.txt").read_bytes() == b"v2"


async def test_an_interrupted_swap_is_repaired_on_the_next_start(
    make_service: ServiceFactory, games: Path
) -> None:
    first = make_service()
    before = await installed_v1(first, games)
    files = version(2)
    reply = await first.init_upload(HUB, make_request("Game", files))
    await send(first, all_frames(reply.upload_id, files))
    await first.close()
    # The Agent died between the two renames: the old version is aside, nothing in its place.
    staging = staging_root(games) / reply.upload_id
    os.rename(games / "Game", staging / "previous")
    assert not (games / "Game").exists()

    second = make_service()
    assert await second.discard_expired() == 0
    assert snapshot(games / "Game") == before
    # The staged upload survived the repair and can be finished.
    again = await second.init_upload(HUB, make_request("Game", files))
    assert again.upload_id == reply.upload_id
    installed = await second.complete_upload(HUB, again.upload_id)
    assert (installed.path / "notes.txt").read_bytes() == b"v2"


async def test_incremental_redeploy_carries_unchanged_files(service: TransferService, games: Path) -> None:
    await installed_v1(service, games)
    old_inode = os.stat(games / "Game" / "data/level1.pak").st_ino
    v1 = version(1)
    v2 = dict(v1)
    v2["notes.txt"] = b"changed"
    v2["data/new.pak"] = b"brand new"
    reply = await service.init_upload(HUB, make_request("Game", v2, exe="game.exe"))
    assert reply.resume_from == {
        "game.exe": len(v1["game.exe"]),
        "data/level1.pak": len(v1["data/level1.pak"]),
        "data/level2.pak": len(v1["data/level2.pak"]),
    }
    # The Hub sends only what changed.
    needed = all_frames(reply.upload_id, v2, reply.resume_from)
    assert {f.header.file_path for f in needed} == {"notes.txt", "data/new.pak"}
    await send(service, needed)
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert files_of(installed.path) == v2
    assert os.stat(installed.path / "data/level1.pak").st_ino == old_inode  # hard-linked, not copied
    assert os.stat(installed.path / "game.exe").st_mode & 0o777 == 0o755
    # A chunk re-sent for a carried file is acknowledged and changes nothing (one file more, so
    # the rest is carried: an unchanged game is completed in place, test_transfer_in_place).
    third = await service.init_upload(HUB, make_request("Game", dict(v2, **{"more.txt": b"3"})))
    ack = await service.write_chunk(HUB, frames_for(third.upload_id, "notes.txt", v2["notes.txt"])[0])
    assert ack.total_written == sum(len(d) for d in v2.values())
    assert (installed.path / "notes.txt").read_bytes() == b"changed"


async def test_incremental_copies_where_hard_links_fail(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await installed_v1(service, games)

    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(incremental.os, "link", no_links)
    # One file changed, so the rest is carried (an unchanged game would be completed in place).
    v2 = dict(version(1), **{"notes.txt": b"changed"})
    reply = await service.init_upload(HUB, make_request("Game", v2))
    assert reply.resume_from == {path: len(data) for path, data in v2.items() if path != "notes.txt"}
    await send(service, frames_for(reply.upload_id, "notes.txt", v2["notes.txt"]))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert files_of(installed.path) == v2


async def test_incremental_skips_files_edited_since_install(service: TransferService, games: Path) -> None:
    await installed_v1(service, games)
    v1 = version(1)
    edited = games / "Game" / "notes.txt"
    edited.write_bytes(b"v9")  # same size, different content
    os.utime(edited, ns=(1, 1))
    reply = await service.init_upload(HUB, make_request("Game", v1))
    assert reply.resume_from is not None and "notes.txt" not in reply.resume_from
    assert "game.exe" in reply.resume_from


async def test_incremental_needs_a_sha256(service: TransferService, games: Path) -> None:
    await installed_v1(service, games)
    reply = await service.init_upload(HUB, make_request("Game", version(1), with_sha=False))
    assert reply.resume_from is None


async def test_a_carried_file_edited_before_completion_must_be_sent_again(
    service: TransferService, games: Path
) -> None:
    await installed_v1(service, games)
    # A file added, so the rest is carried by hard links (an unchanged game would be completed
    # in place: test_transfer_in_place).
    v2 = dict(version(1), **{"data/new.pak": b"new"})
    reply = await service.init_upload(HUB, make_request("Game", v2))
    assert reply.resume_from is not None and reply.resume_from["notes.txt"] == 2
    assert "data/new.pak" not in reply.resume_from
    await send(service, frames_for(reply.upload_id, "data/new.pak", v2["data/new.pak"]))
    # The installed file (which shares its data with the staged one) changes underneath.
    os.utime(games / "Game" / "notes.txt", ns=(5, 5))
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert "notes.txt" in caught.value.message
    await send(service, frames_for(reply.upload_id, "notes.txt", v2["notes.txt"]))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "notes.txt").read_bytes() == b"v1"
    assert (installed.path / "data/new.pak").read_bytes() == b"new"


async def test_space_check_counts_only_what_must_still_be_sent(
    make_service: ServiceFactory, games: Path
) -> None:
    free = {"bytes": 10**12}
    service = make_service(free_space=lambda _root: free["bytes"])
    await installed_v1(service, games)
    v2 = dict(version(1), **{"notes.txt": b"changed"})
    free["bytes"] = len(b"changed")
    reply = await service.init_upload(HUB, make_request("Game", v2))
    assert reply.resume_from is not None and "notes.txt" not in reply.resume_from
    free["bytes"] = 0
    with pytest.raises(ProtocolError, match=r"^insufficient space: need 7 bytes, 0 free"):
        await service.init_upload(OTHER_HUB, make_request("Game", v2))


async def test_the_manifest_lives_outside_the_game_folder(service: TransferService, games: Path) -> None:
    path = await upload(service, "Game", version(1))
    assert sorted(p.name for p in path.rglob("*") if p.is_file()) == sorted(
        ["game.exe", "level1.pak", "level2.pak", "notes.txt"]
    )
    assert manifest_path(games, "Game").is_file()


async def test_delete_game_folder(service: TransferService, games: Path, tmp_path: Path) -> None:
    await installed_v1(service, games)
    removed = await service.delete_game_folder("Game")
    assert removed == games / "Game"
    assert not removed.exists()
    assert not manifest_path(games, "Game").exists()
    with pytest.raises(ProtocolError) as caught:
        await service.delete_game_folder("Game")
    assert caught.value.code == ErrorCode.NOT_FOUND
    for bad in ("..", "a/b", ".capydeploy", ""):
        with pytest.raises(ProtocolError) as caught:
            await service.delete_game_folder(bad)
        assert caught.value.code == ErrorCode.BAD_REQUEST
    with pytest.raises(ProtocolError) as caught:
        await service.delete_game_folder("Game", install_path=str(tmp_path))
    assert caught.value.code == ErrorCode.BAD_REQUEST


async def test_deleting_a_symlinked_game_removes_only_the_link(
    service: TransferService, games: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    (games / "Linked").symlink_to(outside)
    await service.delete_game_folder("Linked")
    assert not (games / "Linked").exists()
    assert (outside / "keep").read_bytes() == b"keep"


async def test_after_close_calls_fail_cleanly(make_service: ServiceFactory) -> None:
    service = make_service()
    await service.close()
    with pytest.raises(ProtocolError) as caught:
        await service.init_upload(HUB, make_request("Late", {"f": b"x"}))
    assert caught.value.code == ErrorCode.INTERNAL


async def test_the_replaced_version_is_deleted_after_the_reply(make_service: ServiceFactory, games: Path) -> None:
    service = make_service()
    await upload(service, "Game", version(1), exe="game.exe")
    await upload(service, "Game", version(2), exe="game.exe")
    installed = snapshot(games / "Game")
    assert installed["notes.txt"] == b"v2"
    assert list(staging_root(games).iterdir()) == []  # the staging folder left at once (to the trash)
    await service.close()  # lets the deletion that runs after the reply finish
    assert not trash_dir(games).exists() or list(trash_dir(games).iterdir()) == []
    assert snapshot(games / "Game") == installed
