"""complete_upload under cancellation, repetition and an Agent killed at any step of the install.

A kill is played by freezing the install's worker thread at one step and starting a second service
on the same folder: the disk is then exactly as a SIGKILL at that instant would leave it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from capydeploy.agent.transfer import TransferService, install
from capydeploy.agent.transfer import service as service_module
from capydeploy.agent.transfer.manifest import installed_copy, manifest_path, read_manifest
from capydeploy.agent.transfer.staging import trash_dir
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import (
    HUB,
    OTHER_HUB,
    BlockingFsync,
    all_frames,
    files_of,
    make_request,
    send,
    sha,
    staging_root,
    upload,
)

V1 = {"same.bin": b"s" * 5000, "data/a.bin": b"1" * 3000, "notes.txt": b"v1"}
V2 = {"same.bin": b"s" * 5000, "data/a.bin": b"2" * 3000, "notes.txt": b"v2"}
EVERYTHING = {path: len(data) for path, data in V2.items()}


class _Killed(BaseException):
    """Unwinds a frozen worker at the end of a test: nothing after the freeze point ever runs."""


class Freeze:
    """Stops the first call of a function in its worker thread, until the test ends."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.thaw = threading.Event()
        self._armed = True

    def before(self, fn: Callable[..., Any], when: Callable[..., bool] = lambda *_a: True) -> Callable[..., Any]:
        def frozen(*args: Any) -> Any:
            if self._armed and when(*args):
                self._armed = False
                self.reached.set()
                self.thaw.wait(60)  # a hang guard
                raise _Killed
            return fn(*args)

        return frozen


def vouched(games: Path) -> dict[str, str]:
    """What the manifest vouches for (path -> sha256), each claim checked against the bytes."""
    manifest = read_manifest(games, "Game")
    if manifest is None:
        return {}
    real = Path(os.path.realpath(games / "Game"))
    claims: dict[str, str] = {}
    for entry in manifest.entries.values():
        if entry.sha256 is None:
            continue
        source = installed_copy(real, entry.path, entry.size, entry.mtime_ns)
        if source is not None:
            assert sha(Path(source).read_bytes()) == entry.sha256, f"the manifest lies about {entry.path}"
            claims[entry.path] = entry.sha256
    return claims


def _tree_rename(src: object, _dst: object) -> bool:
    return Path(str(src)).name == "tree"


# (where the Agent dies, which version it leaves installed)
KILL_POINTS = [
    pytest.param("stage_manifest", V1, id="before-the-new-manifest-is-staged"),
    pytest.param("set_manifest_aside", V1, id="before-the-old-manifest-is-set-aside"),
    pytest.param("swap_into_place", V1, id="old-manifest-aside-before-the-swap"),
    pytest.param("rename-tree", V1, id="between-the-two-renames"),
    pytest.param("publish_manifest", V2, id="after-the-swap-before-the-manifest"),
    pytest.param("trash_staging", V2, id="after-the-manifest-before-cleanup"),
    pytest.param("_empty_trash_entry", V2, id="staging-in-the-trash-not-yet-deleted"),
]


@pytest.mark.parametrize(("point", "left"), KILL_POINTS)
async def test_an_agent_killed_anywhere_in_complete_upload_keeps_redeploys_incremental(
    make_service: ServiceFactory,
    games: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    left: dict[str, bytes],
) -> None:
    first = make_service()
    await upload(first, "Game", V1)
    reply = await first.init_upload(HUB, make_request("Game", V2))
    assert reply.resume_from == {"same.bin": 5000}
    await send(first, all_frames(reply.upload_id, V2, reply.resume_from))
    freeze = Freeze()
    if point == "rename-tree":
        monkeypatch.setattr(install.os, "rename", freeze.before(os.rename, _tree_rename))
    else:
        monkeypatch.setattr(service_module, point, freeze.before(getattr(service_module, point)))
    dying = asyncio.create_task(first.complete_upload(HUB, reply.upload_id))
    try:
        assert await asyncio.to_thread(freeze.reached.wait, 60)
        monkeypatch.undo()
        # The Agent is dead from here on; a new one starts on the same folder.
        second = make_service()
        await second.discard_expired()
        assert files_of(games / "Game") == left  # one whole version, never a mix
        assert vouched(games) == {path: sha(data) for path, data in left.items()}
        again = await second.init_upload(HUB, make_request("Game", V2))  # the Hub deploys v2 again
        assert again.resume_from == EVERYTHING
        assert all_frames(again.upload_id, V2, again.resume_from) == []
        installed = await second.complete_upload(HUB, again.upload_id)
        assert files_of(installed.path) == V2
        assert vouched(games) == {path: sha(data) for path, data in V2.items()}
        assert list(staging_root(games).iterdir()) == []
        await second.discard_expired()  # the periodic clean-up empties the trash
        assert not trash_dir(games).exists() or list(trash_dir(games).iterdir()) == []
    finally:
        freeze.thaw.set()
        await asyncio.gather(dying, return_exceptions=True)


async def test_a_staged_manifest_is_not_published_over_files_changed_since(
    make_service: ServiceFactory, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the swap; before the restart a file of the new version changes: the manifest
    staged for it no longer describes the game and is dropped rather than published."""
    first = make_service()
    await upload(first, "Game", V1)
    reply = await first.init_upload(HUB, make_request("Game", V2))
    await send(first, all_frames(reply.upload_id, V2, reply.resume_from))
    freeze = Freeze()
    monkeypatch.setattr(service_module, "publish_manifest", freeze.before(service_module.publish_manifest))
    dying = asyncio.create_task(first.complete_upload(HUB, reply.upload_id))
    try:
        assert await asyncio.to_thread(freeze.reached.wait, 60)
        monkeypatch.undo()
        edited = games / "Game" / "notes.txt"
        edited.write_bytes(b"v9")  # same size, other bytes
        os.utime(edited, ns=(1, 1))
        second = make_service()
        await second.discard_expired()
        assert not manifest_path(games, "Game").exists()
        again = await second.init_upload(HUB, make_request("Game", V2))
        assert again.resume_from is None  # sent whole: nothing is vouched for
    finally:
        freeze.thaw.set()
        await asyncio.gather(dying, return_exceptions=True)


async def test_a_cancelled_complete_upload_installs_and_a_repeat_waits_for_it(
    make_service: ServiceFactory, games: Path
) -> None:
    writer = BlockingFsync()
    service = make_service(filesystem=writer)
    await upload(service, "Game", V1)
    reply = await service.init_upload(HUB, make_request("Game", V2))
    await send(service, all_frames(reply.upload_id, V2, reply.resume_from))
    writer.armed = True
    caller = asyncio.create_task(service.complete_upload(HUB, reply.upload_id))
    try:
        assert await asyncio.to_thread(writer.entered.wait, 60)
        caller.cancel()  # the connection dropped: the caller goes, the install does not
        with pytest.raises(asyncio.CancelledError):
            await caller
        # The Hub reconnects and asks again while the install still runs: it waits for the same one.
        repeat = asyncio.create_task(service.complete_upload(HUB, reply.upload_id))
        await asyncio.sleep(0.05)
        assert not repeat.done()
        writer.release.set()
        installed = await repeat
    finally:
        writer.release.set()
    assert installed.path == games / "Game"
    assert files_of(installed.path) == V2
    assert vouched(games) == {path: sha(data) for path, data in V2.items()}
    assert list(staging_root(games).iterdir()) == []
    # Once installed, the upload is over: asked again, it is unknown (the Hub re-inits instead,
    # and every file is then carried from the installed version).
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.NOT_FOUND
    again = await service.init_upload(HUB, make_request("Game", V2))
    assert again.resume_from == EVERYTHING


async def test_two_complete_uploads_at_once_install_once(make_service: ServiceFactory, games: Path) -> None:
    writer = BlockingFsync()
    service = make_service(filesystem=writer)
    files = {"a.bin": b"a" * 3000}
    reply = await service.init_upload(HUB, make_request("Game", files))
    await send(service, all_frames(reply.upload_id, files))
    writer.armed = True
    first = asyncio.create_task(service.complete_upload(HUB, reply.upload_id))
    try:
        assert await asyncio.to_thread(writer.entered.wait, 60)
        second = asyncio.create_task(service.complete_upload(HUB, reply.upload_id))
        # Another hub gets no share of it: the upload is not its own.
        with pytest.raises(ProtocolError) as caught:
            await service.complete_upload(OTHER_HUB, reply.upload_id)
        assert caught.value.code == ErrorCode.NOT_FOUND
        assert not second.done()
        writer.release.set()
        results = await asyncio.gather(first, second)
    finally:
        writer.release.set()
    assert results[0] == results[1]
    assert files_of(games / "Game") == files


async def test_a_failed_complete_upload_can_be_retried(service: TransferService, games: Path) -> None:
    """A failed job is not remembered: the retry runs again (and here succeeds)."""
    files = {"a.bin": b"a" * 3000}
    reply = await service.init_upload(HUB, make_request("Game", files))
    frames = all_frames(reply.upload_id, files)
    await send(service, frames[:-1])
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.message.startswith("upload incomplete")
    await send(service, frames[-1:])
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert files_of(installed.path) == files
