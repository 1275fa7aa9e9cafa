"""Deploys end to end: a real Hub and a real Agent on loopback, real files on both sides."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from capydeploy.agent import connection as connection_module
from capydeploy.agent.server import Agent
from capydeploy.hub import client as client_module
from capydeploy.hub import deploy as deploy_module
from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import DeployOptions, DeployProgress
from capydeploy.hub.errors import AgentError
from capydeploy.hub.hashcache import FileChangedError
from capydeploy.protocol import map_message, new_message_id
from capydeploy.protocol import messages as m
from tests.conftest import AgentFactory, code_from_state, url_of

MiB = 1024 * 1024


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }


def make_game(folder: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def options(name: str, **extra: object) -> DeployOptions:
    return DeployOptions(game_name=name, create_shortcut=False, **extra)  # type: ignore[arg-type]


class CutOnce:
    """A progress callback that drops the Agent's side of the connection once, as a network
    failure would, when the deploy first reports progress in `phase`."""

    def __init__(self, agent: Agent, phase: str = "uploading") -> None:
        self.agent = agent
        self.phase = phase
        self.done = False

    def __call__(self, progress: DeployProgress) -> None:
        if not self.done and progress.phase == self.phase and progress.done_bytes > 0:
            self.done = True
            assert self.agent.session is not None
            self.agent.session.websocket.transport.abort()


async def test_tree_arrives_byte_identical(agent: Agent, paired_hub: HubClient, tmp_path: Path) -> None:
    deep = "/".join(f"level{i}" for i in range(20)) + "/bottom.bin"
    files = {
        "game.x86_64": b"#!/bin/sh\necho hi\n",
        "empty.txt": b"",
        "data/big.pak": os.urandom(3 * MiB + 17),
        "data/exactly-one-chunk.bin": os.urandom(MiB),
        "données/ünïcødé 文件.txt": "héllo".encode(),
        deep: os.urandom(1000),
    }
    game = make_game(tmp_path / "src" / "My Game", files)
    result = await paired_hub.deploy(game, options("My Game", executable="game.x86_64"))
    installed = agent.install_dir / "My Game"
    assert result.path == str(installed)
    assert tree(installed) == files
    assert os.stat(installed / "game.x86_64").st_mode & 0o777 == 0o755
    assert result.bytes_sent == sum(len(data) for data in files.values())


async def test_zero_byte_game(agent: Agent, paired_hub: HubClient, tmp_path: Path) -> None:
    game = make_game(tmp_path / "Nothing", {"a/empty": b"", "b": b""})
    result = await paired_hub.deploy(game, options("Nothing"))
    assert tree(agent.install_dir / "Nothing") == {"a/empty": b"", "b": b""}
    assert result.bytes_sent == 0


def inodes(folder: Path) -> dict[Path, int]:
    return {path: os.lstat(path).st_ino for path in [folder, *folder.rglob("*")]}


async def test_incremental_redeploy_sends_only_changed_files(
    agent: Agent, paired_hub: HubClient, tmp_path: Path
) -> None:
    files = {f"data/f{i}.bin": os.urandom(256 * 1024) for i in range(8)}
    game = make_game(tmp_path / "Inc", files)
    first = await paired_hub.deploy(game, options("Inc"))
    assert first.bytes_sent == 8 * 256 * 1024
    changed = os.urandom(300 * 1024)
    (game / "data/f3.bin").write_bytes(changed)
    (game / "new.txt").write_bytes(b"new file")
    second = await paired_hub.deploy(game, options("Inc"))
    assert second.bytes_sent == len(changed) + len(b"new file")
    assert second.bytes_skipped == 7 * 256 * 1024
    assert tree(agent.install_dir / "Inc") == tree(game)
    # Nothing changed: completed in place, the installed folder and its files stay as they are.
    installed = inodes(agent.install_dir / "Inc")
    third = await paired_hub.deploy(game, options("Inc"))
    assert third.bytes_sent == 0
    assert inodes(agent.install_dir / "Inc") == installed
    assert tree(agent.install_dir / "Inc") == tree(game)


async def test_a_redeploy_keeps_the_saves_the_game_wrote_and_drops_files_the_game_no_longer_ships(
    agent: Agent, paired_hub: HubClient, tmp_path: Path
) -> None:
    game = make_game(tmp_path / "Saver", {"game.x86_64": b"#!/bin/sh\n", "data/old.pak": b"v1 only", "data/a.pak": b"a"})
    await paired_hub.deploy(game, options("Saver"))
    installed = agent.install_dir / "Saver"
    make_game(installed, {"saves/slot1.sav": b"level 7", "data/settings.ini": b"vsync=1"})  # the game plays
    (game / "data/old.pak").unlink()  # the next build drops a file and changes another
    (game / "data/a.pak").write_bytes(b"a, patched")
    result = await paired_hub.deploy(game, options("Saver"))
    assert result.bytes_sent == len(b"a, patched")
    assert tree(installed) == {**tree(game), "saves/slot1.sav": b"level 7", "data/settings.ini": b"vsync=1"}
    # Nothing changed since: completed in place, the saves with it.
    before = inodes(installed)
    third = await paired_hub.deploy(game, options("Saver"))
    assert third.bytes_sent == 0
    assert inodes(installed) == before


@pytest.mark.parametrize("changed", ["nothing", "one file"])
async def test_an_installed_file_changed_before_completion_is_sent_again(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, changed: str
) -> None:
    # The Agent was to keep or carry the installed copies; one is touched (a game rewriting its own
    # config) after init_upload. Completion reports it missing; the Hub sends it in one more pass.
    files = {f"data/f{i}.bin": os.urandom(64 * 1024) for i in range(6)}
    game = make_game(tmp_path / "Touched", files)
    await paired_hub.deploy(game, options("Touched"))
    if changed == "one file":
        (game / "data/f5.bin").write_bytes(b"new")
        files["data/f5.bin"] = b"new"
    installed = agent.install_dir / "Touched"
    touched: list[str] = []

    def touch_before_completion(progress: DeployProgress) -> None:
        if progress.phase == "installing" and not touched:
            os.utime(installed / "data/f1.bin", ns=(7, 7))
            touched.append("data/f1.bin")

    result = await paired_hub.deploy(game, options("Touched"), progress=touch_before_completion)
    assert touched
    assert tree(installed) == files
    sent = len(files["data/f1.bin"]) + (len(b"new") if changed == "one file" else 0)
    assert result.bytes_sent == sent


@pytest.mark.parametrize("phase", ["uploading", "installing"])
async def test_connection_cut_midway_resumes(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, phase: str
) -> None:
    files = {"big.bin": os.urandom(24 * MiB), "small.bin": os.urandom(1000)}
    game = make_game(tmp_path / "Cut", files)
    cut = CutOnce(agent, phase)
    result = await paired_hub.deploy(game, options("Cut"), progress=cut)
    assert cut.done and result.resumes >= 1
    assert tree(agent.install_dir / "Cut") == files
    resent = result.bytes_sent - sum(len(data) for data in files.values())
    assert resent <= 16 * MiB, f"{resent} bytes sent again"


async def test_agent_restart_midway_resumes(
    agent_factory: AgentFactory, tmp_path: Path, hub_config: Path
) -> None:
    agent = await agent_factory()
    files = {"big.bin": os.urandom(20 * MiB)}
    game = make_game(tmp_path / "Restart", files)
    client = HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent), reconnect=False)
    await client.connect()
    gone = asyncio.Event()
    real_send_chunk = client.send_chunk
    sent = 0

    async def send_chunk(header: m.ChunkHeader, data: bytes) -> asyncio.Future[m.UploadChunkResponse]:
        # The Hub stops sending after 10 MiB until the Agent is gone, so the upload is surely cut
        # midway (a fast loopback would otherwise finish it before the stop lands).
        nonlocal sent
        if sent >= 10 * MiB:
            await gone.wait()
        sent += len(data)
        return await real_send_chunk(header, data)

    client.send_chunk = send_chunk  # type: ignore[method-assign]

    task = asyncio.create_task(client.deploy(game, options("Restart")))
    while (held := agent.transfer.progress()) is None or held.transferred_bytes < 8 * MiB:
        await asyncio.sleep(0.01)  # until the Agent holds 8 MiB (the Hub cannot send past 10)
    await agent.stop()  # the process goes away mid-upload
    gone.set()
    with pytest.raises(Exception):  # noqa: B017 - any connection error ends this attempt
        await task
    await client.close()
    # A new Agent over the same folders, on the same port: the hub's next deploy resumes.
    again = await agent_factory(data_dir=agent.data_dir, port=agent.port)
    client = HubClient(url_of(again), config_dir=hub_config)
    await client.connect()
    init = await client.init_upload(
        (await _deployment(client, game)).init_request()
    )
    assert init.resume_from and init.resume_from["big.bin"] >= 4 * MiB
    result = await client.deploy(game, options("Restart"))
    assert result.bytes_skipped >= 4 * MiB
    assert result.bytes_sent <= 20 * MiB - 4 * MiB
    assert tree(again.install_dir / "Restart") == files
    await client.close()


async def _deployment(client: HubClient, game: Path):  # type: ignore[no-untyped-def]
    from capydeploy.hub.deploy import Deployment, prepare

    files, hashes = await prepare(game, hash_uncached=False)  # as HubClient.deploy does
    return Deployment(client, files, hashes, options(game.name))


async def test_cancel_keeps_previous_version(agent: Agent, paired_hub: HubClient, tmp_path: Path) -> None:
    v1 = {"game.bin": os.urandom(MiB), "keep.txt": b"version 1"}
    game = make_game(tmp_path / "Keep", v1)
    await paired_hub.deploy(game, options("Keep"))
    (game / "game.bin").write_bytes(os.urandom(16 * MiB))
    (game / "keep.txt").write_bytes(b"version 2")
    def on_progress(progress: DeployProgress) -> None:
        if progress.phase == "uploading" and 0 < progress.done_bytes < progress.total_bytes:
            task.cancel()  # what Ctrl-C does in the CLI: the deployment sends cancel_upload

    task = asyncio.create_task(paired_hub.deploy(game, options("Keep"), progress=on_progress))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tree(agent.install_dir / "Keep") == v1
    staging = agent.install_dir / ".capydeploy" / "staging"
    for _ in range(100):
        if not staging.exists() or not any(staging.iterdir()):
            break
        await asyncio.sleep(0.05)
    assert not staging.exists() or not any(staging.iterdir())
    assert agent.snapshot().upload is None


async def test_checksum_mismatch_is_400_and_healed_by_resend(
    agent: Agent, paired_hub: HubClient, tmp_path: Path
) -> None:
    data = os.urandom(2000)
    request = m.InitUpload(
        config=m.UploadConfig(game_name="Heal"),
        total_size=len(data),
        files=[m.UploadFile(relative_path="a.bin", size=len(data), sha256=hashlib.sha256(data).hexdigest())],
    )
    init = await paired_hub.init_upload(request)
    bad = m.ChunkHeader(
        id=new_message_id(), upload_id=init.upload_id, file_path="a.bin", offset=0,
        checksum=hashlib.sha256(b"something else").hexdigest(),
    )
    with pytest.raises(AgentError) as caught:
        await (await paired_hub.send_chunk(bad, data))
    assert caught.value.code == 400 and "checksum" in caught.value.message
    with pytest.raises(AgentError) as missing:
        await paired_hub.complete_upload(m.CompleteUpload(upload_id=init.upload_id))
    assert missing.value.code == 400 and "a.bin" in missing.value.message
    good = bad.model_copy(update={"id": new_message_id(), "checksum": hashlib.sha256(data).hexdigest()})
    ack = await (await paired_hub.send_chunk(good, data))
    assert ack.total_written == len(data)
    done = await paired_hub.complete_upload(m.CompleteUpload(upload_id=init.upload_id))
    assert done.success and (agent.install_dir / "Heal" / "a.bin").read_bytes() == data


async def test_unknown_upload_is_404(agent: Agent, paired_hub: HubClient) -> None:
    header = m.ChunkHeader(id=new_message_id(), upload_id="nope", file_path="a", offset=0)
    with pytest.raises(AgentError) as caught:
        await (await paired_hub.send_chunk(header, b"x"))
    assert caught.value.code == 404
    with pytest.raises(AgentError) as cancel:
        await paired_hub.cancel_upload("nope")
    assert cancel.value.code == 404


async def test_progress_events_and_state_during_upload(agent: Agent, paired_hub: HubClient, tmp_path: Path) -> None:
    pushes: list[m.UploadProgress | m.OperationEvent] = []
    paired_hub.subscribe(lambda _type, payload: pushes.append(payload) if isinstance(payload, (m.UploadProgress, m.OperationEvent)) else None)  # type: ignore[func-returns-value]
    snapshots = []
    agent.add_state_listener(lambda snapshot: snapshots.append(snapshot.upload) if snapshot.upload else None)  # type: ignore[func-returns-value]
    game = make_game(tmp_path / "Prog", {"a.bin": os.urandom(6 * MiB)})
    await paired_hub.deploy(game, options("Prog"))
    progress = [p for p in pushes if isinstance(p, m.UploadProgress)]
    events = [p for p in pushes if isinstance(p, m.OperationEvent)]
    assert progress and progress[-1].percentage == 100.0
    assert events[0].status == m.OperationStatus.START
    assert events[-1].status == m.OperationStatus.COMPLETE and events[-1].game_name == "Prog"
    assert snapshots and snapshots[-1].game_name == "Prog" and snapshots[-1].total_bytes == 6 * MiB
    assert agent.snapshot().recent_installs[0].game_name == "Prog"


async def test_game_of_many_files(agent: Agent, paired_hub: HubClient, tmp_path: Path) -> None:
    # 1 500 files: the init_upload frame (over 64 KiB) is parsed off the loop, and the redeploy's
    # resumeFrom (over 1 000 entries) is encoded off it; both must still round-trip exactly.
    files = {f"assets/{i // 100:02}/item-{i:04}.dat": os.urandom(i % 700) for i in range(1500)}
    game = make_game(tmp_path / "Many", files)
    first = await paired_hub.deploy(game, options("Many"))
    assert tree(agent.install_dir / "Many") == files
    assert first.bytes_sent == sum(len(data) for data in files.values())
    again = await paired_hub.deploy(game, options("Many"))
    assert again.bytes_sent == 0 and again.files == 1500
    assert tree(agent.install_dir / "Many") == files


async def test_a_long_map_reply_is_written_off_the_event_loop(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A redeploy's resumeFrom of 1 500 entries goes out in pieces; each is made in a worker thread
    # as it is sent (made on the loop, the map of 100 000 files held it for 60 ms at a time).
    made_on: list[int] = []
    entries_text = map_message._entries_text

    def noting_the_thread(entries: Sequence[tuple[str, Any]]) -> str:
        made_on.append(threading.get_ident())
        return entries_text(entries)

    monkeypatch.setattr(map_message, "_entries_text", noting_the_thread)
    files = {f"assets/{i // 100:02}/item-{i:04}.dat": bytes([i % 251]) * (1 + i % 50) for i in range(1500)}
    game = make_game(tmp_path / "Map", files)
    await paired_hub.deploy(game, options("Map"))
    made_on.clear()
    again = await paired_hub.deploy(game, options("Map"))
    assert again.bytes_sent == 0 and made_on
    assert threading.get_ident() not in made_on  # this test runs on the Agent's event loop


async def test_a_long_file_list_goes_in_fragments_and_arrives_whole(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fragments of 300 characters, so this list of multi-byte names is cut inside names (and
    # between the bytes of a character, had the cut been in bytes).
    monkeypatch.setattr(client_module, "FRAGMENT_CHARS", 300)
    sent: list[list[str]] = []
    real = client_module.in_fragments

    def recorded(text: str) -> str | Iterator[str]:
        pieces = real(text)
        if isinstance(pieces, str):
            return pieces
        sent.append(list(pieces))
        return iter(sent[-1])

    monkeypatch.setattr(client_module, "in_fragments", recorded)
    files = {f"données/ünïcødé {i:03} 文件.dat": os.urandom(i) for i in range(60)}
    game = make_game(tmp_path / "Fragmented", files)
    await paired_hub.deploy(game, options("Fragmented"))
    assert tree(agent.install_dir / "Fragmented") == files
    init = [pieces for pieces in sent if '"init_upload"' in pieces[0]]
    assert len(init) == 1 and len(init[0]) > 10  # one message, in many frames
    assert all(len(piece) <= 300 for piece in init[0])


async def test_a_file_changed_while_it_is_sent_stops_the_deploy(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"file-{i:03}.dat": os.urandom(1000) for i in range(100)}  # two read batches
    game = make_game(tmp_path / "Moving", files)
    real_read = deploy_module._read_chunk

    def read_then_edit(handle, offset, length, *rest):  # type: ignore[no-untyped-def]
        result = real_read(handle, offset, length, *rest)
        if Path(handle.name).name == "file-070.dat":
            with open(handle.name, "ab") as edited:  # the user saves a new build meanwhile
                edited.write(b"more")
        return result

    monkeypatch.setattr(deploy_module, "_read_chunk", read_then_edit)
    with pytest.raises(FileChangedError, match=r"file-070\.dat"):
        await paired_hub.deploy(game, options("Moving"))
    assert not (agent.install_dir / "Moving").exists()


async def test_a_long_file_list_is_parsed_with_no_idle_buffers_and_the_free_heap_handed_back(
    agent: Agent, paired_hub: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The threshold lowered so that 1 500 files make a "long" list (a real one is over 1 MiB).
    monkeypatch.setattr(connection_module, "RETURN_HEAP_FROM", 64 * 1024)
    events: list[str] = []
    real_release = agent.transfer.release_buffers

    def release_buffers() -> int:
        caller = sys._getframe(1).f_code.co_name  # the idle collector frees them too, now and then
        events.append(f"release from {caller}")
        return real_release()

    monkeypatch.setattr(agent.transfer, "release_buffers", release_buffers)
    monkeypatch.setattr(connection_module, "return_free_heap", lambda: events.append("heap"))
    real_init = agent.transfer.init_upload

    async def init_upload(hub_id: str, request: m.InitUpload, *, consume: bool = False) -> m.UploadInitResponse:
        events.append("init_upload")
        return await real_init(hub_id, request, consume=consume)

    monkeypatch.setattr(agent.transfer, "init_upload", init_upload)
    files = {f"assets/{i // 100:02}/item-{i:04}.dat": os.urandom(i % 300) for i in range(1500)}
    result = await paired_hub.deploy(make_game(tmp_path / "LongList", files), options("LongList"))
    assert tree(Path(result.path)) == files
    ours = [event for event in events if event in {"release from _on_text", "heap", "init_upload"}]
    assert ours == ["release from _on_text", "heap", "init_upload"]
