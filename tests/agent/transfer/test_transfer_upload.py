"""Uploads driven through TransferService: byte-identical installs, chunk rules, errors, modes, progress."""

from __future__ import annotations

import asyncio
import os
import random
import stat
from pathlib import Path

import pytest

from capydeploy.agent.transfer import TransferService, install
from capydeploy.agent.transfer import service as service_module
from capydeploy.protocol.errors import ErrorCode, ProtocolError
from tests.agent.transfer.conftest import ServiceFactory
from tests.agent.transfer.transfer_helpers import (
    CHUNK,
    HUB,
    OTHER_HUB,
    all_frames,
    files_of,
    frame,
    frames_for,
    make_request,
    send,
    sha,
    snapshot,
    staging_root,
    upload,
)


def sample_game() -> dict[str, bytes]:
    rng = random.Random(7)
    deep = "/".join(f"level{i}" for i in range(40)) + "/bottom.dat"
    return {
        "game.x86_64": b"\x7fELF" + rng.randbytes(5 * CHUNK + 17),
        "data/ünïcødé/日本語のファイル.pak": rng.randbytes(3 * CHUNK),
        "data/emoji 🎮 & spaces.bin": rng.randbytes(CHUNK - 1),
        "empty.txt": b"",
        "data/empty-too": b"",
        deep: rng.randbytes(100),
        "README.md": b"hello\n",
    }


async def test_upload_installs_a_byte_identical_tree(service: TransferService, games: Path) -> None:
    files = sample_game()
    reply = await service.init_upload(HUB, make_request("Celeste", files, exe="game.x86_64"))
    assert reply.chunk_size == CHUNK
    assert reply.upload_id.startswith("upload-") and len(reply.upload_id) > 30
    # Only the empty files are "held" before anything is sent.
    assert reply.resume_from == {"empty.txt": 0, "data/empty-too": 0}

    total = await send(service, all_frames(reply.upload_id, files))
    assert total == sum(len(d) for d in files.values())
    installed = await service.complete_upload(HUB, reply.upload_id)

    assert installed.path == games / "Celeste"
    assert installed.executable == games / "Celeste" / "game.x86_64"
    assert installed.file_count == len(files)
    assert installed.total_bytes == total
    got = files_of(installed.path)
    assert got == files
    # Staging is gone; the game folder holds only the game.
    assert list(staging_root(games).iterdir()) == []
    assert sorted(p.name for p in games.iterdir()) == [".capydeploy", "Celeste"]
    assert service.progress() is None


@pytest.mark.parametrize("files", [{}, {"a": b"", "sub/b": b""}], ids=["no-files", "only-empty-files"])
async def test_a_zero_byte_game_installs(
    service: TransferService, games: Path, files: dict[str, bytes]
) -> None:
    reply = await service.init_upload(HUB, make_request("Nothing", files))
    assert all(reply.resume_from is None or reply.resume_from[p] == 0 for p in files)
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert installed.path.is_dir()
    assert files_of(installed.path) == files


async def test_chunks_in_any_order_and_resent_count_once(service: TransferService) -> None:
    files = sample_game()
    reply = await service.init_upload(HUB, make_request("Shuffled", files))
    frames = all_frames(reply.upload_id, files)
    rng = random.Random(3)
    resent = rng.sample(frames, 6)
    order = frames + resent
    rng.shuffle(order)
    grand_total = sum(len(d) for d in files.values())
    totals = [(await service.write_chunk(HUB, item)).total_written for item in order]
    assert max(totals) == grand_total == totals[-1]
    assert totals == sorted(totals)  # never counts a byte twice, never goes back
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert files_of(installed.path) == files


async def test_concurrent_chunks_like_the_connection_layer(service: TransferService) -> None:
    """The connection spawns one task per frame; the service must cope with many in flight."""
    rng = random.Random(11)
    files = {"big.pak": rng.randbytes(64 * CHUNK + 5), "other.bin": rng.randbytes(9 * CHUNK)}
    reply = await service.init_upload(HUB, make_request("Concurrent", files))
    await asyncio.gather(*(service.write_chunk(HUB, f) for f in all_frames(reply.upload_id, files)))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "big.pak").read_bytes() == files["big.pak"]
    assert (installed.path / "other.bin").read_bytes() == files["other.bin"]


async def test_checksum_mismatch_is_rejected_and_healed_by_a_resend(service: TransferService) -> None:
    data = random.Random(1).randbytes(3 * CHUNK)
    reply = await service.init_upload(HUB, make_request("Healed", {"f.bin": data}))
    good = frames_for(reply.upload_id, "f.bin", data)
    bad = frame(reply.upload_id, "f.bin", CHUNK, b"X" * CHUNK, checksum=sha(data[CHUNK : 2 * CHUNK]))
    assert (await service.write_chunk(HUB, good[0])).total_written == CHUNK
    with pytest.raises(ProtocolError) as caught:
        await service.write_chunk(HUB, bad)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert "checksum mismatch" in caught.value.message
    info = service.progress()
    assert info is not None and info.transferred_bytes == CHUNK
    await send(service, good[1:])
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "f.bin").read_bytes() == data


async def test_a_bad_resend_never_corrupts_bytes_already_held(service: TransferService) -> None:
    data = random.Random(2).randbytes(2 * CHUNK)
    reply = await service.init_upload(HUB, make_request("Kept", {"f.bin": data}))
    await send(service, frames_for(reply.upload_id, "f.bin", data))
    with pytest.raises(ProtocolError):
        await service.write_chunk(
            HUB, frame(reply.upload_id, "f.bin", 0, b"Z" * CHUNK, checksum=sha(data[:CHUNK]))
        )
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "f.bin").read_bytes() == data


async def test_chunks_without_checksum_are_accepted(service: TransferService) -> None:
    data = b"plain data without checksum" * 100
    reply = await service.init_upload(HUB, make_request("NoSum", {"f": data}))
    for offset in range(0, len(data), CHUNK):
        await service.write_chunk(
            HUB, frame(reply.upload_id, "f", offset, data[offset : offset + CHUNK], None)
        )
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "f").read_bytes() == data


@pytest.mark.parametrize(
    ("path", "offset", "size", "expected"),
    [
        ("f.bin", 2 * CHUNK - 10, 20, "outside"),  # runs past the end
        ("f.bin", 5 * CHUNK, 0, "outside"),  # starts past the end
        ("nope.bin", 0, 10, "not part of this upload"),
        ("f.bin", 0, CHUNK + 1, "larger than the chunk size"),
    ],
)
async def test_chunks_outside_the_upload_are_rejected(
    service: TransferService, path: str, offset: int, size: int, expected: str
) -> None:
    reply = await service.init_upload(HUB, make_request("Bounds", {"f.bin": bytes(2 * CHUNK)}))
    with pytest.raises(ProtocolError) as caught:
        await service.write_chunk(HUB, frame(reply.upload_id, path, offset, b"x" * size))
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert expected in caught.value.message


async def test_unknown_upload_and_another_hubs_upload_are_404(service: TransferService) -> None:
    reply = await service.init_upload(HUB, make_request("Mine", {"f": b"data"}))
    chunk = frame(reply.upload_id, "f", 0, b"data")
    for hub, upload_id in [(HUB, "upload-" + "0" * 32), (OTHER_HUB, reply.upload_id)]:
        bogus = frame(upload_id, "f", 0, b"data")
        with pytest.raises(ProtocolError) as caught:
            await service.write_chunk(hub, bogus)
        assert caught.value.code == ErrorCode.NOT_FOUND
        with pytest.raises(ProtocolError) as caught:
            await service.complete_upload(hub, upload_id)
        assert caught.value.code == ErrorCode.NOT_FOUND
        with pytest.raises(ProtocolError) as caught:
            await service.cancel_upload(hub, upload_id)
        assert caught.value.code == ErrorCode.NOT_FOUND
    # The owner's upload is untouched by the other hub's attempts.
    await service.write_chunk(HUB, chunk)
    await service.complete_upload(HUB, reply.upload_id)
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.NOT_FOUND


MODE_FILES = {
    "bin/game": b"not elf but chosen",
    "data.pak": b"\x00\x01data",
    "launch.sh": b"#!/bin/sh\nexec ./bin/game\n",
    "lib/helper": b"\x7fELF\x02\x01\x01",
    "tiny": b"#!",
    "big.bin": b"\x7fEL" + bytes(3 * CHUNK),  # not quite ELF, over several chunks
}


@pytest.mark.parametrize(
    "sync",
    ["fsync each file", "one syncfs", "one syncfs, first chunks sent before a restart"],
)
async def test_executable_is_0755_and_other_files_0644(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, sync: str
) -> None:
    """Modes come from the executable setting and each file's first bytes; with one syncfs for
    the whole game, completion takes those bytes from when they were stored (or reads them back
    when an Agent restart forgot them)."""
    if sync != "fsync each file":
        monkeypatch.setattr(install, "SYNCFS_FROM_FILES", 0)
    files = MODE_FILES
    service = make_service()
    if sync.endswith("restart"):
        reply = await service.init_upload(HUB, make_request("Modes", files, exe="bin/game"))
        await send(service, [item for item in all_frames(reply.upload_id, files) if item.header.offset == 0])
        await service.close()
        service = make_service()
    path = await upload(service, "Modes", files, exe="bin/game")

    def mode(rel: str) -> int:
        return stat.S_IMODE(os.stat(path / rel).st_mode)

    assert mode("bin/game") == 0o755
    assert mode("data.pak") == 0o644
    # Programs by content (shebang, ELF) stay runnable: launchers exec them.
    assert mode("launch.sh") == 0o755
    assert mode("lib/helper") == 0o755
    assert mode("tiny") == 0o755
    assert mode("big.bin") == 0o644
    assert stat.S_IMODE(os.stat(path / "bin").st_mode) == 0o755


async def test_progress_follows_the_latest_upload(service: TransferService) -> None:
    assert service.progress() is None
    files = {"a.bin": bytes(3 * CHUNK), "b.bin": bytes(CHUNK)}
    reply = await service.init_upload(HUB, make_request("Progress", files))
    assert service.upload_game_name(reply.upload_id) == "Progress"
    assert service.upload_game_name("upload-unknown") is None
    await send(service, frames_for(reply.upload_id, "a.bin", files["a.bin"])[:2])
    info = service.progress()
    assert info is not None
    assert (info.upload_id, info.hub_id, info.game_name) == (reply.upload_id, HUB, "Progress")
    assert (info.current_file, info.transferred_bytes, info.total_bytes) == ("a.bin", 2 * CHUNK, 4 * CHUNK)
    assert info.percentage == 50.0


async def test_whole_file_sha256_mismatch_discards_the_file(service: TransferService) -> None:
    declared = b"A" * (2 * CHUNK)
    actual = b"B" * (2 * CHUNK)
    request = make_request("Liar", {"f.bin": declared, "ok.bin": b"fine"})
    reply = await service.init_upload(HUB, request)
    await send(
        service, frames_for(reply.upload_id, "f.bin", actual) + frames_for(reply.upload_id, "ok.bin", b"fine")
    )
    with pytest.raises(ProtocolError) as caught:
        await service.complete_upload(HUB, reply.upload_id)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert "sha256 mismatch" in caught.value.message and "f.bin" in caught.value.message
    # The bad file starts over; the good one is still held.
    again = await service.init_upload(HUB, request)
    assert again.upload_id == reply.upload_id
    assert again.resume_from == {"ok.bin": 4}
    await send(service, frames_for(reply.upload_id, "f.bin", declared))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "f.bin").read_bytes() == declared


async def test_rewriting_hashed_bytes_with_other_data_is_caught(service: TransferService) -> None:
    """A re-send with different (self-consistent) data after the in-order hash passed it."""
    data = random.Random(5).randbytes(3 * CHUNK)
    reply = await service.init_upload(HUB, make_request("Rewrite", {"f.bin": data}))
    await send(service, frames_for(reply.upload_id, "f.bin", data))
    await service.write_chunk(HUB, frame(reply.upload_id, "f.bin", 0, b"Q" * CHUNK))
    with pytest.raises(ProtocolError, match="sha256 mismatch"):
        await service.complete_upload(HUB, reply.upload_id)


async def test_reverse_order_chunks_are_hashed_from_disk(service: TransferService) -> None:
    data = random.Random(6).randbytes(20 * CHUNK + 3)
    reply = await service.init_upload(HUB, make_request("Reverse", {"f.bin": data}))
    await send(service, reversed(frames_for(reply.upload_id, "f.bin", data)))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert (installed.path / "f.bin").read_bytes() == data


@pytest.mark.parametrize("seed", range(12))
async def test_random_concurrent_traffic_never_installs_wrong_bytes(
    service: TransferService, seed: int
) -> None:
    """Batches of chunks in flight at once, in random order, with duplicates, corrupt chunks and
    conflicting re-sends: complete either installs exactly the declared bytes or refuses."""
    rng = random.Random(seed)
    good = rng.randbytes(rng.randrange(1, 24) * CHUNK + rng.randrange(CHUNK))
    other = rng.randbytes(len(good))
    reply = await service.init_upload(HUB, make_request("Chaos", {"f.bin": good}))
    frames = frames_for(reply.upload_id, "f.bin", good)
    traffic = list(frames)
    for item in rng.sample(frames, min(4, len(frames))):
        traffic.append(item)  # duplicate
        traffic.append(
            frame(reply.upload_id, "f.bin", item.header.offset, b"!" * len(item.data), item.header.checksum)
        )
    conflicting = seed % 3 == 0
    if conflicting:
        offset = rng.randrange(len(frames)) * CHUNK
        traffic.append(frame(reply.upload_id, "f.bin", offset, other[offset : offset + CHUNK]))
    rng.shuffle(traffic)
    while traffic:
        batch = traffic[: rng.randrange(1, 9)]
        traffic = traffic[len(batch) :]
        await asyncio.gather(*(service.write_chunk(HUB, item) for item in batch), return_exceptions=True)
    try:
        installed = await service.complete_upload(HUB, reply.upload_id)
    except ProtocolError as error:
        assert conflicting and "sha256 mismatch" in error.message
        return
    assert (installed.path / "f.bin").read_bytes() == good


@pytest.mark.parametrize("seed", range(12))
async def test_the_hash_found_always_matches_the_bytes_installed(service: TransferService, seed: int) -> None:
    """Files of one chunk sent without hashes, some twice at once with different (self-consistent)
    data, as a Hub whose files change under it might: whichever bytes land, the hash complete_upload
    reports (and the manifest records) is theirs. A finished hash is kept as its bytes only when no
    other write of the file is in flight."""
    rng = random.Random(seed)
    files = {f"f{i}.bin": rng.randbytes(rng.randrange(1, CHUNK)) for i in range(20)}
    reply = await service.init_upload(HUB, make_request("Found", files, with_sha=False))
    traffic = [frame(reply.upload_id, path, 0, data) for path, data in files.items()]
    for path in rng.sample(sorted(files), 8):
        traffic.append(frame(reply.upload_id, path, 0, rng.randbytes(len(files[path]))))
    rng.shuffle(traffic)
    while traffic:
        batch = traffic[: rng.randrange(1, 9)]
        traffic = traffic[len(batch) :]
        await asyncio.gather(*(service.write_chunk(HUB, item) for item in batch))
    installed = await service.complete_upload(HUB, reply.upload_id)
    assert sorted(installed.found_sha256) == sorted(files)
    for path in files:
        assert installed.found_sha256[path] == sha((installed.path / path).read_bytes())


async def test_small_files_arriving_together_are_stored_in_batches(
    service: TransferService, games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A game of many small files: each file's one chunk is checked, written and hashed, a batch of
    them per worker job (not one job each), and a bad chunk among them is refused alone."""
    rng = random.Random(11)
    files = {f"assets/{n // 50}/file{n}.bin": rng.randbytes(rng.randrange(1, CHUNK + 1)) for n in range(300)}
    worker_jobs = 0
    submit = service._submit

    def counting_submit(*args: object, **kwargs: object) -> object:
        nonlocal worker_jobs
        worker_jobs += 1
        return submit(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "_submit", counting_submit)
    reply = await service.init_upload(HUB, make_request("Many", files))
    worker_jobs = 0
    frames = all_frames(reply.upload_id, files)
    bad = frame(reply.upload_id, "assets/0/file7.bin", 0, files["assets/0/file7.bin"], checksum=sha(b"other"))
    results = await asyncio.gather(
        *[service.write_chunk(HUB, item) for item in [bad, *frames]], return_exceptions=True
    )
    assert isinstance(results[0], ProtocolError) and results[0].code == ErrorCode.BAD_REQUEST
    assert all(not isinstance(result, BaseException) for result in results[1:])
    assert worker_jobs < len(files) / 10  # batched: a few worker jobs for 300 files
    installed = await service.complete_upload(HUB, reply.upload_id)  # every whole-file hash matches
    installed_files = {path: data for path, data in snapshot(installed.path).items() if data != b"<dir>"}
    assert installed_files == files


async def test_init_upload_hands_the_freed_heap_back_once_the_upload_is_listed(
    service: TransferService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading and planning a long list frees megabytes all over malloc's heap; they are handed
    # back once the reply is ready, not kept resident through the transfer.
    listed: list[bool] = []
    monkeypatch.setattr(service_module, "return_free_heap", lambda: listed.append(bool(service._sessions)))
    reply = await service.init_upload(HUB, make_request("Trimmed", sample_game()))
    assert listed == [True]  # once, with the upload already listed
    assert reply.upload_id in service._sessions
