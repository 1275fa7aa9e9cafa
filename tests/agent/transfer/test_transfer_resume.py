"""Resume after a dropped connection and after an Agent restart; the journal; expiry of staged uploads."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from capydeploy.agent.transfer import TransferService
from capydeploy.protocol.constants import STAGING_TTL
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import (
    CHUNK,
    HUB,
    OTHER_HUB,
    FakeClock,
    all_frames,
    files_of,
    frames_for,
    make_request,
    send,
    staged_file,
    staging_root,
)


def game() -> dict[str, bytes]:
    rng = random.Random(42)
    return {"a.bin": rng.randbytes(6 * CHUNK + 100), "b/c.bin": rng.randbytes(2 * CHUNK), "empty": b""}


async def test_a_consumed_request_gives_up_its_list_and_the_upload_resumes_and_installs(
    service: TransferService,
) -> None:
    files = game()
    request = make_request("Consumed", files)
    first = await service.init_upload(HUB, request, consume=True)
    assert request.files == []  # the session lists the files; the connection's copy is gone
    a_frames = frames_for(first.upload_id, "a.bin", files["a.bin"])
    await send(service, a_frames[:2])
    again = await service.init_upload(HUB, make_request("Consumed", files), consume=True)
    assert again.upload_id == first.upload_id and again.resume_from == {"a.bin": 2 * CHUNK, "empty": 0}
    await send(service, all_frames(again.upload_id, files, again.resume_from))
    installed = await service.complete_upload(HUB, again.upload_id)
    assert files_of(installed.path) == files


async def test_resume_after_a_dropped_connection(service: TransferService) -> None:
    files = game()
    request = make_request("Resumable", files)
    first = await service.init_upload(HUB, request)
    a_frames = frames_for(first.upload_id, "a.bin", files["a.bin"])
    # Chunks 0-2 in order, chunk 4 out of order, then the connection "drops".
    await send(service, [*a_frames[:3], a_frames[4]])

    again = await service.init_upload(HUB, request)
    assert again.upload_id == first.upload_id
    # Only the run from offset 0 counts as resumable; chunk 4 is held but beyond a gap.
    assert again.resume_from == {"a.bin": 3 * CHUNK, "empty": 0}
    await send(service, all_frames(again.upload_id, files, again.resume_from))
    installed = await service.complete_upload(HUB, again.upload_id)
    assert files_of(installed.path) == files


async def test_a_different_file_list_starts_over_and_drops_the_stale_staging(
    service: TransferService, games: Path
) -> None:
    files = game()
    first = await service.init_upload(HUB, make_request("Changed", files))
    await send(service, frames_for(first.upload_id, "a.bin", files["a.bin"])[:2])
    files["b/c.bin"] = b"changed"
    second = await service.init_upload(HUB, make_request("Changed", files))
    assert second.upload_id != first.upload_id
    assert second.resume_from == {"empty": 0}
    assert sorted(p.name for p in staging_root(games).iterdir()) == [second.upload_id]


async def test_another_hub_never_resumes_someone_elses_upload(service: TransferService) -> None:
    files = game()
    mine = await service.init_upload(HUB, make_request("Shared", files))
    await send(service, frames_for(mine.upload_id, "a.bin", files["a.bin"])[:2])
    theirs = await service.init_upload(OTHER_HUB, make_request("Shared", files))
    assert theirs.upload_id != mine.upload_id
    assert theirs.resume_from == {"empty": 0}
    # Both stay usable.
    again = await service.init_upload(HUB, make_request("Shared", files))
    assert again.upload_id == mine.upload_id


async def test_resume_after_an_agent_restart(make_service: ServiceFactory) -> None:
    files = game()
    request = make_request("Restarted", files)
    before = make_service()
    first = await before.init_upload(HUB, request)
    await send(before, frames_for(first.upload_id, "a.bin", files["a.bin"])[:4])
    await send(before, frames_for(first.upload_id, "b/c.bin", files["b/c.bin"]))
    # No close(): the Agent is killed. A new service over the same folders takes over.
    after = make_service()
    again = await after.init_upload(HUB, request)
    assert again.upload_id == first.upload_id
    assert again.resume_from == {"a.bin": 4 * CHUNK, "b/c.bin": 2 * CHUNK, "empty": 0}
    await send(after, all_frames(again.upload_id, files, again.resume_from), HUB)
    installed = await after.complete_upload(HUB, again.upload_id)
    assert files_of(installed.path) == files


async def test_a_journaled_chunk_corrupted_on_disk_is_not_counted(
    make_service: ServiceFactory, games: Path
) -> None:
    files = game()
    request = make_request("Torn", files)
    before = make_service()
    first = await before.init_upload(HUB, request)
    await send(before, frames_for(first.upload_id, "a.bin", files["a.bin"])[:5])
    await before.close()
    # A torn write: chunk 2's bytes on disk are not what the journal says was written.
    path = staged_file(games, first.upload_id, "a.bin")
    with path.open("r+b") as handle:
        handle.seek(2 * CHUNK + 10)
        handle.write(b"garbage")
    # And a torn journal line at the end (the Agent died mid-append).
    journal = staging_root(games) / first.upload_id / "chunks.log"
    with journal.open("ab") as handle:
        handle.write(b"C 0 5120 1024 abc")

    after = make_service()
    again = await after.init_upload(HUB, request)
    assert again.resume_from == {"a.bin": 2 * CHUNK, "empty": 0}
    info = after.progress()
    assert info is not None and info.transferred_bytes == 4 * CHUNK  # chunks 0, 1, 3, 4
    await send(after, all_frames(again.upload_id, files, again.resume_from))
    installed = await after.complete_upload(HUB, again.upload_id)
    assert files_of(installed.path) == files


async def test_journaled_bytes_missing_from_disk_are_not_counted(
    make_service: ServiceFactory, games: Path
) -> None:
    files = game()
    request = make_request("Lost", files)
    before = make_service()
    first = await before.init_upload(HUB, request)
    await send(before, frames_for(first.upload_id, "a.bin", files["a.bin"])[:4])
    await before.close()
    # Power loss: the journal reached the disk, the last pages of data did not.
    with staged_file(games, first.upload_id, "a.bin").open("r+b") as handle:
        handle.truncate(3 * CHUNK - 1)
    after = make_service()
    again = await after.init_upload(HUB, request)
    assert again.resume_from == {"a.bin": 2 * CHUNK, "empty": 0}


async def test_restart_then_a_different_request_does_not_resume(make_service: ServiceFactory) -> None:
    files = game()
    before = make_service()
    first = await before.init_upload(HUB, make_request("Other", files))
    after = make_service()
    changed = dict(files, extra=b"new file")
    again = await after.init_upload(HUB, make_request("Other", changed))
    assert again.upload_id != first.upload_id
    with pytest.raises(ProtocolError) as caught:
        await after.complete_upload(HUB, first.upload_id)
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_staged_uploads_expire_after_the_ttl(make_service: ServiceFactory, games: Path) -> None:
    clock = FakeClock()
    service = make_service(clock=clock)
    files = game()
    reply = await service.init_upload(HUB, make_request("Old", files))
    await send(service, frames_for(reply.upload_id, "a.bin", files["a.bin"])[:1])
    clock.now += STAGING_TTL - 1
    assert await service.discard_expired() == 0
    await send(
        service, frames_for(reply.upload_id, "a.bin", files["a.bin"])[1:2]
    )  # activity resets the clock
    clock.now += STAGING_TTL - 1
    assert await service.discard_expired() == 0
    clock.now += 2
    assert await service.discard_expired() == 1
    assert list(staging_root(games).iterdir()) == []
    assert service.progress() is None
    with pytest.raises(ProtocolError) as caught:
        await service.write_chunk(HUB, frames_for(reply.upload_id, "a.bin", files["a.bin"])[2])
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_staged_uploads_left_by_a_previous_run_expire_too(
    make_service: ServiceFactory, games: Path
) -> None:
    clock = FakeClock()
    before = make_service(clock=clock)
    await before.init_upload(HUB, make_request("Abandoned", game()))
    clock.now += 3600
    after = make_service(clock=clock)
    assert await after.discard_expired() == 0
    clock.now += STAGING_TTL
    assert await after.discard_expired() == 1
    assert list(staging_root(games).iterdir()) == []


async def test_garbage_in_the_staging_folder_is_cleaned_up(service: TransferService, games: Path) -> None:
    broken = staging_root(games) / ("upload-" + "ab" * 16)
    (broken / "tree").mkdir(parents=True)  # no session.json: a crash during creation
    (games / ".capydeploy" / "trash" / "old").mkdir(parents=True)
    assert await service.discard_expired() == 0
    assert not broken.exists()
    assert not (games / ".capydeploy" / "trash").exists()
