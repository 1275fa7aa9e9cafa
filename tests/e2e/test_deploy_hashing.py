"""Whole-file hashes on a first deploy, end to end on real sockets: the Agent reports them
(extension `result_sha256`), or the Hub hashes files while it sends them (`complete_sha256`).

What must hold: the first deploy starts sending at once (init_upload carries only cached hashes);
with `result_sha256` the Hub hashes nothing the Agent can vouch for, and keeps the hashes the
Agent reports; with `complete_sha256` only, every file's hash reaches the Agent with
complete_upload; either way the Hub's cache has them afterwards and the next deploy of the same
folder sends nothing. An Agent without the extensions still gets every hash in init_upload, and
data staged from an older version of a file is caught and sent again.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from capydeploy.agent.server import Agent
from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import Deployment, prepare
from capydeploy.protocol import constants, new_message_id
from capydeploy.protocol import messages as m
from tests.conftest import url_of
from tests.e2e.test_deploy import CutOnce, MiB, make_game, options, tree


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder:
    """Keeps every init_upload and complete_upload the client sends."""

    def __init__(self, client: HubClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inits: list[m.InitUpload] = []
        self.completes: list[m.CompleteUpload] = []
        self.results: list[m.OperationResult] = []
        self.hub_hashed: list[str] = []  # files the Hub ran a whole-file hash over while sending
        real_init, real_complete = client.init_upload, client.complete_upload
        real_running_hash = Deployment._running_hash

        async def init_upload(request: m.InitUpload) -> m.UploadInitResponse:
            self.inits.append(request)
            return await real_init(request)

        async def complete_upload(request: m.CompleteUpload, timeout: float | None = None) -> m.OperationResult:
            self.completes.append(request)
            result = await real_complete(request, timeout=timeout)
            self.results.append(result)
            return result

        def running_hash(deployment: Deployment, file: Any) -> Any:
            hasher = real_running_hash(deployment, file)
            if hasher is not None:
                self.hub_hashed.append(file.relative_path)
            return hasher

        monkeypatch.setattr(client, "init_upload", init_upload)
        monkeypatch.setattr(client, "complete_upload", complete_upload)
        monkeypatch.setattr(Deployment, "_running_hash", running_hash)


async def reconnected_without(
    capabilities: set[str], agent: Agent, paired_hub: HubClient, hub_config: Path, monkeypatch: pytest.MonkeyPatch
) -> HubClient:
    """A Hub connected to the same Agent, now announcing fewer capabilities (an older Agent)."""
    monkeypatch.setattr(constants, "CAPABILITIES", tuple(c for c in constants.CAPABILITIES if c not in capabilities))
    await paired_hub.close()
    client = HubClient(url_of(agent), config_dir=hub_config)
    await client.connect()
    assert client.status is not None and not capabilities & set(client.status.capabilities or [])
    return client


def cached_hashes(hub_config: Path) -> dict[str, Any]:
    import json

    raw = json.loads((hub_config / "hash-cache.json").read_text())
    return {Path(path).name: entry[2] for path, entry in raw["entries"].items()}


async def test_the_agent_reports_the_hashes_so_the_hub_computes_none(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, hub_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"big.bin": os.urandom(3 * MiB + 5), "small.txt": b"hello", "empty": b""}
    hashes = {path: sha(data) for path, data in files.items()}
    game = make_game(tmp_path / "Reported", files)
    recorder = Recorder(paired_hub, monkeypatch)
    assert paired_hub.status is not None and "result_sha256" in (paired_hub.status.capabilities or [])

    first = await paired_hub.deploy(game, options("Reported"))
    assert tree(agent.install_dir / "Reported") == files
    assert [f.sha256 for f in recorder.inits[0].files] == [None, None, None]
    assert recorder.completes[-1].sha256 is None
    assert recorder.results[-1].sha256 == hashes
    assert recorder.hub_hashed == []
    assert first.bytes_sent == sum(len(data) for data in files.values())
    assert cached_hashes(hub_config) == hashes

    again = await paired_hub.deploy(game, options("Reported"))
    assert {f.relative_path: f.sha256 for f in recorder.inits[-1].files} == hashes
    assert recorder.results[-1].sha256 is None  # the Hub gave every hash: nothing to report
    assert again.bytes_sent == 0
    assert again.bytes_skipped == first.bytes_sent


async def test_after_a_cut_the_hub_still_relies_on_the_agents_hashes(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, hub_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bytes the Agent holds after the cut were all sent by this deployment, checksum by
    # checksum: the Agent's hash of them is still this file's.
    files = {"big.bin": os.urandom(24 * MiB), "small.bin": os.urandom(1000)}
    game = make_game(tmp_path / "CutReported", files)
    recorder = Recorder(paired_hub, monkeypatch)
    cut = CutOnce(agent)
    result = await paired_hub.deploy(game, options("CutReported"), progress=cut)
    assert cut.done and result.resumes >= 1
    assert len(recorder.inits) >= 2 and recorder.inits[0] == recorder.inits[-1]  # the same list, resumed
    assert recorder.hub_hashed == []
    assert tree(agent.install_dir / "CutReported") == files
    assert cached_hashes(hub_config) == {path: sha(data) for path, data in files.items()}


async def test_first_deploy_sends_hashes_with_complete_and_caches_them(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, hub_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await reconnected_without({"result_sha256"}, agent, paired_hub, hub_config, monkeypatch)
    try:
        files = {"big.bin": os.urandom(3 * MiB + 5), "small.txt": b"hello", "empty": b""}
        game = make_game(tmp_path / "Hashless", files)
        recorder = Recorder(client, monkeypatch)
        assert client.status is not None and "complete_sha256" in (client.status.capabilities or [])

        first = await client.deploy(game, options("Hashless"))
        assert tree(agent.install_dir / "Hashless") == files
        assert [f.sha256 for f in recorder.inits[0].files] == [None, None, None]
        assert recorder.completes[-1].sha256 == {path: sha(data) for path, data in files.items()}
        assert sorted(recorder.hub_hashed) == ["big.bin", "small.txt"]  # "empty" is held whole at once
        assert first.bytes_sent == sum(len(data) for data in files.values())
        assert cached_hashes(hub_config) == {path: sha(data) for path, data in files.items()}

        again = await client.deploy(game, options("Hashless"))
        assert {f.relative_path: f.sha256 for f in recorder.inits[-1].files} == {p: sha(d) for p, d in files.items()}
        assert recorder.completes[-1].sha256 is None
        assert again.bytes_sent == 0
        assert again.bytes_skipped == first.bytes_sent
    finally:
        await client.close()


async def test_an_agent_without_the_extensions_gets_every_hash_in_init_upload(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, hub_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await reconnected_without({"complete_sha256", "result_sha256"}, agent, paired_hub, hub_config, monkeypatch)
    try:
        files = {"a.bin": os.urandom(MiB + 1), "b.txt": b"b"}
        game = make_game(tmp_path / "OldAgent", files)
        recorder = Recorder(client, monkeypatch)
        await client.deploy(game, options("OldAgent"))
        assert {f.relative_path: f.sha256 for f in recorder.inits[0].files} == {p: sha(d) for p, d in files.items()}
        assert recorder.completes[0].sha256 is None
        assert tree(agent.install_dir / "OldAgent") == files
    finally:
        await client.close()


async def test_data_staged_from_an_older_version_of_a_file_is_sent_again(
    agent: Agent, paired_hub: HubClient, tmp_path: Path
) -> None:
    old = {"kept.bin": os.urandom(2 * MiB), "edited.bin": os.urandom(3 * MiB)}
    game = make_game(tmp_path / "Edited", old)
    # An earlier attempt (say, a Hub that crashed) staged kept.bin whole and the first 2 MiB of
    # edited.bin, without hashes, as this Hub's deploys do.
    listed, _ = await prepare(game, hash_uncached=False)
    request = Deployment(paired_hub, listed, {}, options("Edited")).init_request()
    reply = await paired_hub.init_upload(request)
    for path, length in (("kept.bin", 2 * MiB), ("edited.bin", 2 * MiB)):
        for offset in range(0, length, reply.chunk_size):
            data = old[path][offset : offset + reply.chunk_size]
            header = m.ChunkHeader(
                id=new_message_id(), upload_id=reply.upload_id, file_path=path, offset=offset, checksum=sha(data)
            )
            await (await paired_hub.send_chunk(header, data))
    # Then edited.bin changed without changing size: the staged prefix is no longer its data.
    new_edited = os.urandom(3 * MiB)
    (game / "edited.bin").write_bytes(new_edited)
    stat = os.stat(game / "edited.bin")
    os.utime(game / "edited.bin", ns=(stat.st_atime_ns, max(stat.st_mtime_ns, time.time_ns()) + 10**9))

    result = await paired_hub.deploy(game, options("Edited"))
    assert tree(agent.install_dir / "Edited") == {"kept.bin": old["kept.bin"], "edited.bin": new_edited}
    assert result.upload_id == reply.upload_id  # it resumed the staged upload...
    assert result.bytes_skipped >= 2 * MiB  # ... kept kept.bin ...
    assert result.bytes_sent == MiB + 3 * MiB  # ... and, after the mismatch, sent edited.bin whole


async def test_a_staging_without_hashes_is_resumed_once_the_hub_knows_them(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, hub_config: Path
) -> None:
    from capydeploy.hub.hashcache import HashCache, hash_files

    files = {"a.bin": os.urandom(3 * MiB), "b.bin": os.urandom(MiB)}
    game = make_game(tmp_path / "TwoDecks", files)
    # A first deploy to this device was cut after 2 MiB of a.bin (staged without hashes)...
    listed, _ = await prepare(game, hash_uncached=False)
    reply = await paired_hub.init_upload(Deployment(paired_hub, listed, {}, options("TwoDecks")).init_request())
    for offset in range(0, 2 * MiB, reply.chunk_size):
        data = files["a.bin"][offset : offset + reply.chunk_size]
        header = m.ChunkHeader(
            id=new_message_id(), upload_id=reply.upload_id, file_path="a.bin", offset=offset, checksum=sha(data)
        )
        await (await paired_hub.send_chunk(header, data))
    # ... then the same folder went to another device, which put every hash in the Hub's cache.
    await hash_files(listed, HashCache(hub_config / "hash-cache.json"))

    result = await paired_hub.deploy(game, options("TwoDecks"))
    assert result.upload_id == reply.upload_id
    assert result.bytes_skipped == 2 * MiB
    assert result.bytes_sent == 2 * MiB  # the rest of a.bin and b.bin, nothing twice
    assert tree(agent.install_dir / "TwoDecks") == files


async def test_time_left_is_only_guessed_after_the_first_mebibyte(
    agent: Agent, paired_hub: HubClient, tmp_path: Path
) -> None:
    game = make_game(tmp_path / "Eta", {"a.txt": b"", "b.bin": os.urandom(4 * MiB)})
    reports: list[tuple[str, int, float | None]] = []
    await paired_hub.deploy(
        game, options("Eta"), progress=lambda p: reports.append((p.phase, p.done_bytes, p.seconds_remaining))
    )
    uploading = [(done, left) for phase, done, left in reports if phase == "uploading"]
    assert uploading, "no progress while uploading"
    assert all(left is None for done, left in uploading if done < MiB)
    # Past the first MiB the estimate is given: at the end (reported always) nothing is left.
    assert [left for phase, _, left in reports if phase == "installing"] == [0.0]
