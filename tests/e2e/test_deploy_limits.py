"""A game whose per-file maps would pass the 10 MiB message limit (D4) still deploys: the optional
hashes are cut to what fits, on both sides, end to end on real sockets.

A game of 100 000 files makes maps of about 12 MB. Here the limit is lowered to 8 KiB once the
sockets are open (they keep accepting 10 MiB), so 120 small files are enough.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from capydeploy.agent.server import Agent
from capydeploy.hub.client import HubClient
from capydeploy.protocol import MessageType, constants, encode_message, new_message_id
from tests.e2e.test_deploy import make_game, options, tree
from tests.e2e.test_deploy_hashing import Recorder, reconnected_without

LIMIT = 8 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def frame_bytes(message_type: MessageType, payload: object) -> int:
    return len(encode_message(message_type, payload, new_message_id()).encode())  # type: ignore[arg-type]


def crowded_game(folder: Path) -> tuple[dict[str, bytes], Path]:
    """120 small files of distinct sizes: their 120 hashes take about 11 KB, over LIMIT."""
    files = {f"data/file-{n:03}.bin": os.urandom(100 + n) for n in range(120)}
    return files, make_game(folder, files)


def assert_cut_to_fit(
    digests: dict[str, str], files: dict[str, bytes], message_type: MessageType, payload: object
) -> None:
    """Some of the hashes went, not all, each one right, in a frame within the limit."""
    assert 0 < len(digests) < len(files)
    assert digests == {path: sha(files[path]) for path in digests}
    assert frame_bytes(message_type, payload) <= LIMIT


async def test_per_file_hashes_too_large_for_one_message_are_cut_to_fit(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, game = crowded_game(tmp_path / "Crowded")
    recorder = Recorder(paired_hub, monkeypatch)
    monkeypatch.setattr(constants, "MAX_MESSAGE", LIMIT)

    await paired_hub.deploy(game, options("Crowded"))
    assert tree(agent.install_dir / "Crowded") == files
    # The Agent's result_sha256 for all 120 files would be about 11 KB: it sends the hashes that fit.
    reported = recorder.results[-1].sha256 or {}
    assert_cut_to_fit(reported, files, MessageType.OPERATION_RESULT, recorder.results[-1])

    again = await paired_hub.deploy(game, options("Crowded"))
    assert tree(agent.install_dir / "Crowded") == files
    # The Hub knows the reported hashes; with all of them init_upload would not fit either.
    request = recorder.inits[-1]
    hashed = {entry.relative_path: entry.sha256 for entry in request.files if entry.sha256 is not None}
    assert_cut_to_fit(hashed, files, MessageType.INIT_UPLOAD, request)
    assert len(hashed) < len(reported)
    # The hashes left out are those of the smallest files: those are the ones sent again.
    dropped = set(reported) - set(hashed)
    assert dropped and min(len(files[path]) for path in hashed) > max(len(files[path]) for path in dropped)
    # A file listed with its hash is carried over; one listed without is sent again.
    assert again.bytes_sent == sum(len(data) for path, data in files.items() if path not in hashed)
    assert again.bytes_skipped == sum(len(files[path]) for path in hashed)


async def test_a_file_list_too_long_even_without_hashes_is_refused_before_sending(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"data/{'long-folder-name/' * 8}file-{n:03}.bin": b"x" for n in range(120)}
    game = make_game(tmp_path / "Overlong", files)
    recorder = Recorder(paired_hub, monkeypatch)
    monkeypatch.setattr(constants, "MAX_MESSAGE", LIMIT)
    with pytest.raises(Exception, match="too long for one message"):
        await paired_hub.deploy(game, options("Overlong"))
    assert recorder.inits == []
    assert not (agent.install_dir / "Overlong").exists()


async def test_hashes_sent_with_complete_upload_are_cut_to_fit(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, hub_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An Agent without result_sha256: the Hub hashes what it sends and gives the hashes with
    # complete_upload, which the Agent checks; 120 of them would not fit in 8 KiB.
    client = await reconnected_without({"result_sha256"}, agent, paired_hub, hub_config, monkeypatch)
    try:
        files, game = crowded_game(tmp_path / "Checked")
        recorder = Recorder(client, monkeypatch)
        monkeypatch.setattr(constants, "MAX_MESSAGE", LIMIT)
        await client.deploy(game, options("Checked"))
        assert tree(agent.install_dir / "Checked") == files
        given = recorder.completes[-1].sha256 or {}
        assert_cut_to_fit(given, files, MessageType.COMPLETE_UPLOAD, recorder.completes[-1])
    finally:
        await client.close()
