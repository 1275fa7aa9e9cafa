"""Extension `complete_sha256`: whole-file hashes given with complete_upload instead of init_upload.

The Agent hashes every staged file while it arrives, checks the hashes complete_upload brings
exactly like init_upload's, and records every file's hash in the manifest, so the next deploy is
incremental even though the first init_upload carried no hash at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capydeploy.agent.transfer.manifest import read_manifest
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import (
    HUB,
    all_frames,
    make_request,
    send,
    sha,
    snapshot,
)

FILES = {"game.bin": b"g" * 5000 + b"end", "data/level.pak": bytes(range(256)) * 20, "empty": b""}


async def _staged_without_hashes(service, files: dict[str, bytes] = FILES) -> str:  # type: ignore[no-untyped-def]
    reply = await service.init_upload(HUB, make_request("Game", files, with_sha=False))
    # Out of order on purpose: the Agent's in-order hash must cope (it reads back what it must).
    await send(service, reversed(all_frames(reply.upload_id, files)))
    return reply.upload_id


async def test_hashes_given_at_completion_are_checked_and_recorded(make_service: ServiceFactory, games: Path) -> None:
    service = make_service()
    upload_id = await _staged_without_hashes(service)
    installed = await service.complete_upload(HUB, upload_id, {path: sha(data) for path, data in FILES.items()})
    assert snapshot(installed.path) == {**FILES, "data/": b"<dir>"}
    manifest = read_manifest(games, "Game")
    assert manifest is not None
    assert {entry.path: entry.sha256 for entry in manifest.entries.values()} == {p: sha(d) for p, d in FILES.items()}


async def test_without_any_hash_the_manifest_still_gets_the_agents_own(make_service: ServiceFactory, games: Path) -> None:
    service = make_service()
    upload_id = await _staged_without_hashes(service)
    await service.complete_upload(HUB, upload_id)
    manifest = read_manifest(games, "Game")
    assert manifest is not None
    assert {entry.path: entry.sha256 for entry in manifest.entries.values()} == {p: sha(d) for p, d in FILES.items()}
    # ... which makes the next deploy (now with hashes, as a Hub that learnt them sends) incremental.
    again = await service.init_upload(HUB, make_request("Game", FILES))
    assert again.resume_from == {path: len(data) for path, data in FILES.items()}


async def test_a_wrong_hash_at_completion_discards_that_file_only(make_service: ServiceFactory, games: Path) -> None:
    service = make_service()
    upload_id = await _staged_without_hashes(service)
    claimed = {path: sha(data) for path, data in FILES.items()}
    claimed["game.bin"] = sha(b"something else")
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, upload_id, claimed)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert caught.value.message.startswith("sha256 mismatch: game.bin")
    assert not (games / "Game").exists()
    # The same init_upload resumes; only the discarded file is asked for again.
    reply = await service.init_upload(HUB, make_request("Game", FILES, with_sha=False))
    assert reply.upload_id == upload_id
    assert reply.resume_from is not None
    assert "game.bin" not in reply.resume_from
    assert reply.resume_from["data/level.pak"] == len(FILES["data/level.pak"])
    await send(service, all_frames(upload_id, {"game.bin": FILES["game.bin"]}))
    installed = await service.complete_upload(HUB, upload_id, {path: sha(data) for path, data in FILES.items()})
    assert (installed.path / "game.bin").read_bytes() == FILES["game.bin"]


@pytest.mark.parametrize(
    ("claimed", "message"),
    [
        ({"nope.bin": "0" * 64}, "sha256: 'nope.bin' is not a file of this upload"),
        ({"game.bin": "0" * 64}, "sha256: the hash of 'game.bin' differs from the one in init_upload"),
    ],
)
async def test_hashes_that_cannot_apply_are_refused_and_nothing_is_installed(
    make_service: ServiceFactory, games: Path, claimed: dict[str, str], message: str
) -> None:
    service = make_service()
    reply = await service.init_upload(HUB, make_request("Game", FILES))  # init_upload gives the hashes
    await send(service, all_frames(reply.upload_id, FILES))
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id, claimed)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert caught.value.message == message
    assert not (games / "Game").exists()
    # Still active: a correct completion goes through.
    installed = await service.complete_upload(HUB, reply.upload_id, {"game.bin": sha(FILES["game.bin"])})
    assert snapshot(installed.path)["game.bin"] == FILES["game.bin"]


async def _half_staged_without_hashes(service) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """game.bin staged whole, data/level.pak half: what a cut-off first deploy leaves."""
    reply = await service.init_upload(HUB, make_request("Game", FILES, with_sha=False))
    frames = all_frames(reply.upload_id, FILES)
    pak = [f for f in frames if f.header.file_path == "data/level.pak"]
    kept = [f for f in frames if f.header.file_path != "data/level.pak"] + pak[: len(pak) // 2]
    await send(service, kept)
    return reply.upload_id, sum(len(f.data) for f in kept)


@pytest.mark.parametrize("restart", [False, True], ids=["same agent", "agent restarted"])
async def test_a_list_that_now_gives_hashes_resumes_a_staging_without_them(
    make_service: ServiceFactory, games: Path, restart: bool
) -> None:
    service = make_service()
    upload_id, held = await _half_staged_without_hashes(service)
    if restart:
        await service.close()
        service = make_service()
    reply = await service.init_upload(HUB, make_request("Game", FILES))  # the Hub learnt the hashes since
    assert reply.upload_id == upload_id
    assert reply.resume_from is not None and sum(reply.resume_from.values()) == held
    await send(service, all_frames(upload_id, FILES, reply.resume_from))
    installed = await service.complete_upload(HUB, upload_id)
    assert snapshot(installed.path) == {**FILES, "data/": b"<dir>"}


async def test_adopted_hashes_survive_a_restart_and_still_catch_stale_data(
    make_service: ServiceFactory, games: Path
) -> None:
    service = make_service()
    upload_id, _ = await _half_staged_without_hashes(service)
    changed = {**FILES, "game.bin": b"G" * len(FILES["game.bin"])}  # edited since, same size
    reply = await service.init_upload(HUB, make_request("Game", changed))
    assert reply.upload_id == upload_id and reply.resume_from is not None
    assert reply.resume_from["game.bin"] == len(FILES["game.bin"])  # held, but from the old version
    await service.close()
    service = make_service()
    # The restarted Agent resumes with the recorded (adopted) hashes...
    again = await service.init_upload(HUB, make_request("Game", changed))
    assert again.upload_id == upload_id
    await send(service, all_frames(upload_id, changed, again.resume_from))
    # ... and checks the staged bytes against them: the old game.bin is caught and dropped.
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, upload_id)
    assert caught.value.message.startswith("sha256 mismatch: game.bin")
    retry = await service.init_upload(HUB, make_request("Game", changed))
    assert retry.upload_id == upload_id and retry.resume_from is not None and "game.bin" not in retry.resume_from
    await send(service, all_frames(upload_id, changed, retry.resume_from))
    installed = await service.complete_upload(HUB, upload_id)
    assert snapshot(installed.path) == {**changed, "data/": b"<dir>"}


@pytest.mark.parametrize("restart", [False, True], ids=["same agent", "agent restarted"])
async def test_a_list_that_drops_a_given_hash_does_not_resume(make_service: ServiceFactory, restart: bool) -> None:
    service = make_service()
    first = await service.init_upload(HUB, make_request("Game", FILES))
    await send(service, all_frames(first.upload_id, FILES)[:2])
    if restart:
        await service.close()
        service = make_service()
    other = await service.init_upload(HUB, make_request("Game", FILES, with_sha=False))
    assert other.upload_id != first.upload_id
    assert other.resume_from is not None and sum(other.resume_from.values()) == 0


async def test_a_list_that_changes_a_given_hash_does_not_resume(make_service: ServiceFactory) -> None:
    service = make_service()
    first = await service.init_upload(HUB, make_request("Game", FILES))
    await send(service, all_frames(first.upload_id, FILES)[:2])
    changed = {**FILES, "game.bin": b"G" * len(FILES["game.bin"])}
    other = await service.init_upload(HUB, make_request("Game", changed))
    assert other.upload_id != first.upload_id
    assert other.resume_from is not None and sum(other.resume_from.values()) == 0


async def test_an_installed_file_reached_through_a_symlinked_folder_is_never_carried(
    make_service: ServiceFactory, games: Path, tmp_path: Path
) -> None:
    import os
    import shutil

    service = make_service()
    reply = await service.init_upload(HUB, make_request("Game", FILES))
    await send(service, all_frames(reply.upload_id, FILES))
    installed = (await service.complete_upload(HUB, reply.upload_id)).path
    # Someone swaps the installed `data` folder for a link to an identical copy outside the root
    # (same bytes, same size, same mtime): only the folder check stands between it and a carry.
    outside = tmp_path / "outside-data"
    shutil.copytree(installed / "data", outside)
    stamp = os.lstat(installed / "data" / "level.pak")
    os.utime(outside / "level.pak", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    shutil.rmtree(installed / "data")
    (installed / "data").symlink_to(outside, target_is_directory=True)

    again = await service.init_upload(HUB, make_request("Game", FILES))
    assert again.resume_from is not None
    assert again.resume_from.get("data/level.pak", 0) == 0  # sent again, not linked from outside
    assert again.resume_from["game.bin"] == len(FILES["game.bin"])  # the rest is still carried
    assert (outside / "level.pak").read_bytes() == FILES["data/level.pak"]


async def test_the_hashes_the_hub_never_gave_are_reported(make_service: ServiceFactory) -> None:
    # Extension `result_sha256`: init_upload gives one hash, complete_upload another; the Agent
    # reports exactly the file nobody gave a hash for, as the manifest records it.
    service = make_service()
    request = make_request("Game", FILES, with_sha=False)
    request.files[0].sha256 = sha(FILES["game.bin"])
    reply = await service.init_upload(HUB, request)
    await send(service, all_frames(reply.upload_id, FILES))
    installed = await service.complete_upload(HUB, reply.upload_id, {"empty": sha(b"")})
    assert installed.found_sha256 == {"data/level.pak": sha(FILES["data/level.pak"])}
