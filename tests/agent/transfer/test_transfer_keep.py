"""What the game wrote into its own folder survives a redeploy; what an earlier install put there
and the new version no longer lists does not; the new version wins any path both claim; a failed
install keeps the old folder whole and never brings back what the game deleted since."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from capydeploy.agent.transfer import TransferService, keep
from capydeploy.agent.transfer import service as service_module
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from capydeploy.protocol.messages import UploadInitResponse
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import (
    HUB,
    RecordingWriter,
    all_frames,
    files_of,
    game_version,
    make_request,
    send,
    snapshot,
    staging_root,
    swap_failing,
    tree_of,
    upload,
)


def what_a_game_writes(game: Path) -> None:
    """Saves in a folder of their own, settings beside the shipped data, an empty folder for
    screenshots, and a symlink to the latest save (relative, as games make them)."""
    (game / "saves").mkdir()
    (game / "saves" / "slot1.sav").write_bytes(b"level 7, 300 gold")
    (game / "saves" / "deep").mkdir()
    (game / "saves" / "deep" / "auto.sav").write_bytes(b"")
    (game / "data" / "settings.ini").write_bytes(b"[video]\nvsync=1\n")
    (game / "screenshots").mkdir()
    (game / "latest.sav").symlink_to("saves/slot1.sav")


GAME_WROTE = {
    "saves/": b"<dir>",
    "saves/slot1.sav": b"level 7, 300 gold",
    "saves/deep/": b"<dir>",
    "saves/deep/auto.sav": b"",
    "data/settings.ini": b"[video]\nvsync=1\n",
    "screenshots/": b"<dir>",
    "latest.sav": b"level 7, 300 gold",  # through the symlink
}


def inode(path: Path) -> int:
    return os.lstat(path).st_ino


async def v2_staged_over_a_played_v1(service: TransferService) -> tuple[Path, UploadInitResponse]:
    """v1 installed, the game played (`what_a_game_writes`), v2's bytes all sent: the game folder
    and the upload, ready to complete."""
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    what_a_game_writes(game)
    v2 = game_version(2)
    reply = await service.init_upload(HUB, make_request("Game", v2, exe="game.exe"))
    await send(service, all_frames(reply.upload_id, v2, reply.resume_from))
    return game, reply


@pytest.mark.parametrize("redeploy", ["changed", "unchanged"])
async def test_a_redeploy_keeps_what_the_game_wrote(service: TransferService, games: Path, redeploy: str) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    what_a_game_writes(game)
    save_inode = inode(game / "saves" / "slot1.sav")
    new = game_version(2 if redeploy == "changed" else 1)
    installed = await upload(service, "Game", new, exe="game.exe")
    assert snapshot(installed) == {**tree_of(new), **GAME_WROTE}
    assert inode(installed / "saves" / "slot1.sav") == save_inode  # the same file, not a copy
    assert os.readlink(installed / "latest.sav") == "saves/slot1.sav"  # still a symlink
    assert list(staging_root(games).iterdir()) == []


async def test_files_an_earlier_install_put_there_go_with_the_old_version(
    service: TransferService, games: Path
) -> None:
    old = {**game_version(1), "data/old.pak": b"dropped", "intro/movie.bik": b"dropped too"}
    game = await upload(service, "Game", old, exe="game.exe")
    (game / "intro" / "watched.flag").write_bytes(b"1")  # the game's, in a folder that was ours
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == {**tree_of(game_version(2)), "intro/": b"<dir>", "intro/watched.flag": b"1"}


async def test_a_folder_of_only_dropped_files_goes_too(service: TransferService, games: Path) -> None:
    await upload(service, "Game", {**game_version(1), "intro/movie.bik": b"dropped"}, exe="game.exe")
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == tree_of(game_version(2))


async def test_the_new_version_wins_a_path_both_claim(
    service: TransferService, games: Path, caplog: pytest.LogCaptureFixture
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "patch.dat").write_bytes(b"the game's")  # a file the new version ships too
    (game / "mods").mkdir()  # a folder where the new version ships a file
    (game / "mods" / "mine.mod").write_bytes(b"m")
    (game / "levels").write_bytes(b"a file where the new version ships a folder")
    new = {**game_version(2), "patch.dat": b"shipped", "mods": b"shipped", "levels/one.pak": b"shipped"}
    with caplog.at_level(logging.WARNING, logger=keep.__name__):
        installed = await upload(service, "Game", new, exe="game.exe")
    assert snapshot(installed) == tree_of(new)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "mods/ in the installed folder is replaced" in warned
    assert "levels in the installed folder is replaced" in warned


async def test_a_folder_capydeploy_did_not_install_keeps_what_it_holds(service: TransferService, games: Path) -> None:
    """No manifest tells what is ours: the files the new version does not name stay, as a copy
    over a folder leaves them; those it names are replaced."""
    game = games / "Game"
    (game / "data").mkdir(parents=True)
    (game / "notes.txt").write_bytes(b"copied by hand")
    (game / "data" / "extra.pak").write_bytes(b"from the hand copy")
    (game / "saves").mkdir()
    (game / "saves" / "slot1.sav").write_bytes(b"progress")
    installed = await upload(service, "Game", game_version(1), exe="game.exe")
    assert snapshot(installed) == {
        **tree_of(game_version(1)),
        "data/extra.pak": b"from the hand copy",
        "saves/": b"<dir>",
        "saves/slot1.sav": b"progress",
    }


async def test_a_game_folder_that_is_a_symlink_is_not_walked(service: TransferService, games: Path) -> None:
    real = await upload(service, "Real", game_version(1), exe="game.exe")
    (real / "saves.dat").write_bytes(b"progress")
    (games / "Game").symlink_to(real, target_is_directory=True)
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == tree_of(game_version(2))  # the link was replaced...
    assert (real / "saves.dat").read_bytes() == b"progress"  # ...and what it pointed at stays


async def test_a_failed_swap_loses_nothing_and_a_retry_keeps_what_is_there_by_then(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game, reply = await v2_staged_over_a_played_v1(service)
    before, v2 = snapshot(game), game_version(2)
    with swap_failing(monkeypatch), pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.INTERNAL
    assert snapshot(game) == before  # the old version and the game's files, untouched
    staged = staging_root(games) / reply.upload_id
    assert (staged / "tree" / "saves" / "slot1.sav").exists()  # kept in the staged tree, and noted
    (staged / "kept.json").write_bytes(b"\x00 damaged")  # what it says does not matter, only that it is there
    # Meanwhile the player deletes a save and makes another.
    (game / "saves" / "slot1.sav").unlink()
    (game / "saves" / "slot2.sav").write_bytes(b"new game")
    (game / "latest.sav").unlink()
    (game / "latest.sav").symlink_to("saves/slot2.sav")
    installed = (await service.complete_upload(HUB, reply.upload_id)).path
    assert snapshot(installed) == {
        **tree_of(v2),
        **{path: data for path, data in GAME_WROTE.items() if path != "saves/slot1.sav"},
        "saves/slot2.sav": b"new game",
        "latest.sav": b"new game",
    }  # deleted stays deleted
    assert os.readlink(installed / "latest.sav") == "saves/slot2.sav"


async def test_a_failure_while_keeping_takes_back_what_it_kept(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game, reply = await v2_staged_over_a_played_v1(service)
    before, v2 = snapshot(game), game_version(2)
    real_link = os.link

    def link_fails_on_the_symlink(src: str, dst: str, *, follow_symlinks: bool = True) -> None:
        if src.endswith("latest.sav"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_link(src, dst, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(keep.os, "link", link_fails_on_the_symlink)
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.INTERNAL
    assert "could not keep the files the game wrote" in caught.value.message
    assert snapshot(game) == before
    staged_tree = staging_root(games) / reply.upload_id / "tree"
    assert files_of(staged_tree) == v2  # nothing of the game's is left in staging
    assert not (staged_tree / "saves").exists()
    monkeypatch.setattr(keep.os, "link", real_link)
    installed = (await service.complete_upload(HUB, reply.upload_id)).path
    assert snapshot(installed) == {**tree_of(v2), **GAME_WROTE}


async def test_kept_files_are_copied_where_hard_links_fail(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    what_a_game_writes(game)

    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(keep.os, "link", no_links)
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == {**tree_of(game_version(2)), **GAME_WROTE}
    assert os.readlink(installed / "latest.sav") == "saves/slot1.sav"


async def test_what_the_game_wrote_survives_an_agent_restart_mid_upload(
    make_service: ServiceFactory, games: Path
) -> None:
    first = make_service()
    game = await upload(first, "Game", game_version(1), exe="game.exe")
    v2 = game_version(2)
    reply = await first.init_upload(HUB, make_request("Game", v2, exe="game.exe"))
    await send(first, all_frames(reply.upload_id, v2, reply.resume_from))
    await first.close()
    what_a_game_writes(game)
    second = make_service()
    again = await second.init_upload(HUB, make_request("Game", v2, exe="game.exe"))
    assert again.upload_id == reply.upload_id
    installed = (await second.complete_upload(HUB, again.upload_id)).path
    assert snapshot(installed) == {**tree_of(v2), **GAME_WROTE}


# --- what the review of the first form found ----------------------------------------------------


async def test_what_the_running_game_does_during_the_install_is_carried_over(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the first look at its folder and the swap the game saves over a file (write, then
    rename over it), makes a new save and deletes another: the new version has all of that."""
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "save.dat").write_bytes(b"old save")
    (game / "deleted.sav").write_bytes(b"the player deletes this one")
    real_aside = service_module.set_manifest_aside

    def the_game_plays_meanwhile(*args: object) -> None:
        (game / "save.tmp").write_bytes(b"newer save")
        os.rename(game / "save.tmp", game / "save.dat")
        (game / "slots").mkdir()
        (game / "slots" / "brand_new.sav").write_bytes(b"new slot")
        (game / "deleted.sav").unlink()
        real_aside(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "set_manifest_aside", the_game_plays_meanwhile)
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == {
        **tree_of(game_version(2)),
        "save.dat": b"newer save",
        "slots/": b"<dir>",
        "slots/brand_new.sav": b"new slot",
    }


async def test_a_shipped_file_the_game_rewrote_is_kept_when_the_new_version_drops_it(
    service: TransferService, games: Path
) -> None:
    game = await upload(service, "Game", {**game_version(1), "config.ini": b"defaults"}, exe="game.exe")
    (game / "config.ini").write_bytes(b"the player's settings")
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == {**tree_of(game_version(2)), "config.ini": b"the player's settings"}


async def test_read_only_folders_of_the_game_are_linked_into_while_writable_and_keep_their_mode(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Root may write into a read-only folder anyway: the link is checked to find its folder
    writable, as an unprivileged Agent needs it.)"""
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "saves" / "deep").mkdir(parents=True)
    (game / "saves" / "deep" / "slot1.sav").write_bytes(b"progress")
    (game / "saves" / "deep").chmod(0o555)
    (game / "saves").chmod(0o555)
    real_link = os.link
    folder_modes: list[int] = []

    def link(src: str, dst: str, *, follow_symlinks: bool = True) -> None:
        folder_modes.append(stat.S_IMODE(os.lstat(os.path.dirname(dst)).st_mode))
        real_link(src, dst, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(keep.os, "link", link)
    try:
        installed = await upload(service, "Game", game_version(2), exe="game.exe")
        assert folder_modes and all(mode & stat.S_IWUSR for mode in folder_modes)
        assert files_of(installed)["saves/deep/slot1.sav"] == b"progress"
        assert stat.S_IMODE(os.lstat(installed / "saves").st_mode) == 0o555
        assert stat.S_IMODE(os.lstat(installed / "saves" / "deep").st_mode) == 0o555
    finally:
        for folder in (games / "Game" / "saves", games / "Game" / "saves" / "deep"):
            with contextlib.suppress(OSError):
                folder.chmod(0o755)


async def test_a_retry_removes_read_only_folders_an_earlier_attempt_kept(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "saves").mkdir()
    (game / "saves" / "slot1.sav").write_bytes(b"progress")
    (game / "saves").chmod(0o555)
    v2 = game_version(2)
    reply = await service.init_upload(HUB, make_request("Game", v2, exe="game.exe"))
    await send(service, all_frames(reply.upload_id, v2, reply.resume_from))
    with swap_failing(monkeypatch), pytest.raises(ProtocolError):
        await service.complete_upload(HUB, reply.upload_id)
    (game / "saves").chmod(0o755)
    (game / "saves" / "slot1.sav").unlink()  # the player deletes the save, then the Hub retries
    real_remove = keep.remove_path
    modes_when_removed: list[int] = []

    def remove_path(path: Path) -> None:  # (root may empty a read-only folder anyway)
        modes_when_removed.append(stat.S_IMODE(os.lstat(path).st_mode))
        real_remove(path)

    monkeypatch.setattr(keep, "remove_path", remove_path)
    installed = (await service.complete_upload(HUB, reply.upload_id)).path
    assert modes_when_removed and all(mode & stat.S_IWUSR for mode in modes_when_removed)
    assert snapshot(installed) == {**tree_of(v2), "saves/": b"<dir>"}


async def test_an_unreadable_folder_fails_the_install_naming_it_and_loses_nothing(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    what_a_game_writes(game)
    before = snapshot(game)
    real_scandir = os.scandir
    locked = os.fspath(game / "saves")

    def scandir(path: Any) -> Any:
        if path == locked:
            raise PermissionError(errno.EACCES, "Permission denied", locked)
        return real_scandir(path)

    with monkeypatch.context() as patch:  # (os.scandir is every module's: undone before looking)
        patch.setattr(keep.os, "scandir", scandir)
        with pytest.raises(ProtocolError) as caught:
            await upload(service, "Game", game_version(2), exe="game.exe")
    assert caught.value.code == ErrorCode.INTERNAL
    assert locked in caught.value.message and "Permission denied" in caught.value.message
    assert snapshot(game) == before


async def test_a_folder_the_game_removes_during_the_look_is_no_error(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "autosave.tmp").mkdir()
    (game / "autosave.tmp" / "part").write_bytes(b"x")
    real_scandir = os.scandir
    vanishing = os.fspath(game / "autosave.tmp")

    def scandir(path: Any) -> Any:
        if path == vanishing:
            shutil.rmtree(vanishing, ignore_errors=True)  # the game finished its autosave
        return real_scandir(path)

    with monkeypatch.context() as patch:  # (os.scandir is every module's: undone before looking)
        patch.setattr(keep.os, "scandir", scandir)
        installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == tree_of(game_version(2))


async def test_a_kept_copy_is_made_durable_before_the_swap(
    make_service: ServiceFactory, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = RecordingWriter()
    service = make_service(filesystem=writer)
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "saves").mkdir()
    (game / "saves" / "slot1.sav").write_bytes(b"progress")

    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(keep.os, "link", no_links)
    writer.fsynced.clear()
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert files_of(installed)["saves/slot1.sav"] == b"progress"
    assert writer.synced_filesystems or any(path.endswith("saves/slot1.sav") for path in writer.fsynced)


def test_a_copy_never_replaces_a_name_the_new_version_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a case-insensitive filesystem the game's "Save.dat" is the new version's "save.dat"."""
    source, destination = tmp_path / "Save.dat", tmp_path / "tree" / "save.dat"
    destination.parent.mkdir()
    source.write_bytes(b"the game's")
    destination.write_bytes(b"the new version's")

    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(keep.os, "link", no_links)
    assert keep._link_one(os.fspath(source), os.fspath(destination)) == "clash"
    assert destination.read_bytes() == b"the new version's"


# --- a game playing through the install: what a second review found -------------------------------


def in_the_window(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> None:
    """`action` between the keep step and the swap: the game changes its (old) folder."""
    real = service_module.set_manifest_aside

    def wrapped(*args: Any) -> None:
        action()
        real(*args)

    monkeypatch.setattr(service_module, "set_manifest_aside", wrapped)


def right_after_the_swap(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> None:
    """`action` right after the swap, before the catch-up: the game, writing by path, changes the
    new folder."""
    real = service_module.swap_into_place

    def wrapped(*args: Any) -> None:
        real(*args)
        action()

    monkeypatch.setattr(service_module, "swap_into_place", wrapped)


def save_over(path: Path, data: bytes) -> None:
    """Save as games do: a temporary file renamed over the old one."""
    path.with_suffix(".tmp").write_bytes(data)
    os.replace(path.with_suffix(".tmp"), path)


async def test_a_save_made_in_the_new_folder_right_after_the_swap_is_never_replaced_by_the_old_one(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "slot1.sav").write_bytes(b"old save")
    right_after_the_swap(monkeypatch, lambda: save_over(game / "slot1.sav", b"newest save"))
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert files_of(installed)["slot1.sav"] == b"newest save"


async def test_a_save_deleted_before_the_swap_and_written_again_after_it_stays(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "slot1.sav").write_bytes(b"old save")
    in_the_window(monkeypatch, (game / "slot1.sav").unlink)
    right_after_the_swap(monkeypatch, lambda: (game / "slot1.sav").write_bytes(b"new save"))
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert files_of(installed)["slot1.sav"] == b"new save"


async def test_a_save_deleted_right_after_the_swap_stays_deleted(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "slot1.sav").write_bytes(b"old save")
    right_after_the_swap(monkeypatch, (game / "slot1.sav").unlink)
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == tree_of(game_version(2))


async def test_a_dropped_shipped_file_the_game_rewrites_before_the_swap_is_kept(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", {**game_version(1), "config.ini": b"defaults"}, exe="game.exe")
    in_the_window(monkeypatch, lambda: (game / "config.ini").write_bytes(b"the player's settings"))
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert snapshot(installed) == {**tree_of(game_version(2)), "config.ini": b"the player's settings"}


@pytest.mark.parametrize("change", ["folder made a file", "folder removed", "empty folder made"])
async def test_folders_the_game_changes_before_the_swap_are_followed(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "profile").mkdir()
    (game / "profile" / "a.tmp").write_bytes(b"t")

    def the_game_plays() -> None:
        if change == "empty folder made":
            (game / "screenshots").mkdir()
            return
        shutil.rmtree(game / "profile")
        if change == "folder made a file":
            (game / "profile").write_bytes(b"the player's profile")

    in_the_window(monkeypatch, the_game_plays)
    installed = await upload(service, "Game", game_version(2), exe="game.exe")
    expected = {
        "folder made a file": {"profile": b"the player's profile"},
        "folder removed": {},
        "empty folder made": {"profile/": b"<dir>", "profile/a.tmp": b"t", "screenshots/": b"<dir>"},
    }[change]
    assert snapshot(installed) == {**tree_of(game_version(2)), **expected}


async def test_a_failure_while_catching_up_never_fails_an_install_that_happened(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = await upload(service, "Game", game_version(1), exe="game.exe")
    (game / "slot1.sav").write_bytes(b"old save")
    real_unlink = os.unlink
    in_the_window(monkeypatch, partial(real_unlink, game / "slot1.sav"))

    def refused(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.fspath(path).endswith("slot1.sav"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        real_unlink(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(keep.os, "unlink", refused)
        installed = await upload(service, "Game", game_version(2), exe="game.exe")
    assert files_of(installed) == {**game_version(2), "slot1.sav": b"old save"}  # its unlink was refused
    assert list(staging_root(games).iterdir()) == []
    # The manifest was published: the next redeploy of the same version sends nothing.
    again = await service.init_upload(HUB, make_request("Game", game_version(2), exe="game.exe"))
    assert again.resume_from == {path: len(data) for path, data in game_version(2).items()}
