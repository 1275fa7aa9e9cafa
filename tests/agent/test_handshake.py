"""Handshake, pairing, tokens and the replies of D2/D3, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from capydeploy.agent.server import Agent
from capydeploy.hub.client import HubClient
from capydeploy.hub.errors import AgentError, RevokedError
from capydeploy.protocol import messages as m
from capydeploy.protocol.frames import encode_chunk
from tests.conftest import AgentFactory, RawPeer, code_from_state, url_of

OpenPeer = Callable[[], Awaitable[RawPeer]]


async def _closed_code(peer: RawPeer) -> int | None:
    try:
        while True:
            await asyncio.wait_for(peer.ws.recv(), 30)
    except ConnectionClosed:
        pass
    return peer.ws.close_code


async def test_pairing_with_code_from_device_state(agent: Agent, raw_peer: OpenPeer) -> None:
    peer = await raw_peer()
    reply = await peer.hello()
    assert reply["type"] == "pairing_required"
    assert reply["id"] == "hello"
    assert reply["payload"] == {"code": "", "expiresIn": 60}
    code = agent.snapshot().pairing
    assert code is not None and len(code.code) == 6 and code.code.isdigit()
    await peer.send("pair_confirm", {"code": code.code}, "c1")
    success = await peer.recv()
    assert success["type"] == "pair_success" and success["id"] == "c1"
    token = success["payload"]["token"]
    assert len(token) >= 43
    status = await peer.recv()
    assert status["type"] == "agent_status" and status["id"] not in ("c1", "hello")
    assert status["payload"]["acceptConnections"] is True
    assert "file_upload" in status["payload"]["capabilities"]
    await peer.send("get_info", None, "i1")
    info = await peer.recv()
    assert info["type"] == "info_response" and info["payload"]["agent"]["name"] == "Test Deck"
    assert agent.snapshot().pairing is None
    assert [hub.id for hub in agent.snapshot().authorized_hubs] == ["raw-hub"]


async def test_hub_client_pairs_and_reuses_token(agent: Agent, hub_config: Path) -> None:
    first = HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent))
    await first.connect()
    info = await first.get_info()
    await first.close()

    async def must_not_ask(_: m.PairingRequired) -> str:
        raise AssertionError("a paired hub was asked for a code again")

    second = HubClient(url_of(agent), config_dir=hub_config, pair=must_not_ask)
    status = await second.connect()
    assert status.name == "Test Deck"
    assert second.agent_id == info.agent.id
    config = await second.get_config()
    assert config.install_path == str(agent.install_dir)
    await second.close()


async def test_three_wrong_codes_lock_pairing(agent: Agent, raw_peer: OpenPeer) -> None:
    peer = await raw_peer()
    await peer.hello()
    real = agent.snapshot().pairing
    assert real is not None
    wrong = f"{(int(real.code) + 1) % 1_000_000:06d}"
    reasons = []
    for attempt in range(3):
        await peer.send("pair_confirm", {"code": wrong}, f"w{attempt}")
        reply = await peer.recv()
        assert reply["type"] == "pair_failed"
        reasons.append(reply["payload"]["reason"])
    assert "2 attempts left" in reasons[0]
    assert "locked" in reasons[2]
    assert agent.snapshot().lockout_remaining > 290
    # Even the right code is refused now, and a new hub cannot start pairing.
    await peer.send("pair_confirm", {"code": real.code}, "right")
    assert (await peer.recv())["type"] == "pair_failed"
    await peer.close()
    other = await raw_peer()
    refused = await other.hello(hub_id="other-hub")
    assert refused["type"] == "error" and refused["error"]["code"] == 401
    assert "locked" in refused["error"]["message"]
    # The device's user lifts the lock.
    agent.reset_pairing_lockout()
    third = await raw_peer()
    assert (await third.hello(hub_id="third-hub"))["type"] == "pairing_required"


async def test_blocked_connections_get_406(agent: Agent, raw_peer: OpenPeer) -> None:
    await agent.set_accept_connections(False)
    peer = await raw_peer()
    reply = await peer.hello()
    assert reply["type"] == "error" and reply["error"]["code"] == 406
    assert await _closed_code(peer) == 1000


async def test_second_hub_gets_409(agent: Agent, paired_hub: HubClient, raw_peer: OpenPeer) -> None:
    peer = await raw_peer()
    reply = await peer.hello(hub_id="intruder")
    assert reply["type"] == "error" and reply["error"]["code"] == 409
    # Generic: an unauthenticated peer does not learn the connected hub's name.
    assert reply["error"]["message"] == "another hub is connected"
    assert paired_hub.identity.name not in json.dumps(reply)
    assert await _closed_code(peer) == 1000
    await paired_hub.ping()  # the first hub is not disturbed


async def test_same_hub_replaces_its_stale_session(agent: Agent, hub_config: Path) -> None:
    first = HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent), reconnect=False)
    await first.connect()
    second = HubClient(url_of(agent), config_dir=hub_config, reconnect=False)
    await second.connect()  # same hub id and token: replaces the first session
    await second.ping()
    session = agent.session
    assert session is not None and session.hub_id == second.identity.hub_id
    await first.close()
    await second.get_info()
    await second.close()


async def test_requests_before_authentication_get_401(agent: Agent, raw_peer: OpenPeer) -> None:
    peer = await raw_peer()
    await peer.send("get_info", None, "early")
    reply = await peer.recv()
    assert reply == {"id": "early", "type": "error", "error": {"code": 401, "message": reply["error"]["message"]}}
    await peer.send("ping", None, "p")
    assert (await peer.recv())["type"] == "pong"
    await peer.hello()
    await peer.send("init_upload", {"config": {"gameName": "x"}, "totalSize": 0, "files": []}, "u")
    reply = await peer.recv()
    assert reply["error"]["code"] == 401 and reply["id"] == "u"


async def test_binary_before_authentication_closes_1008(agent: Agent, raw_peer: OpenPeer) -> None:
    peer = await raw_peer()
    await peer.ws.send(b"\x00\x00\x00\x02{}")
    assert await _closed_code(peer) == 1008


async def test_unknown_type_is_501_and_bad_json_400(agent: Agent, paired_hub: HubClient, raw_peer: OpenPeer) -> None:
    peer = await raw_peer()
    await peer.send("format_disk", None, "x1")
    reply = await peer.recv()
    assert reply["id"] == "x1" and reply["error"]["code"] == 501
    await peer.send_text("{this is not json")
    reply = await peer.recv()
    assert reply["type"] == "error" and reply["error"]["code"] == 400 and reply["id"] == ""
    await peer.send_text('{"id": "k", "type": 7}')
    reply = await peer.recv()
    assert reply["id"] == "k" and "message.type" in reply["error"]["message"]


@pytest.mark.parametrize(
    ("message_type", "payload", "field"),
    [
        ("list_shortcuts", {"userId": "x"}, "payload.userId"),
        ("delete_shortcut", {"userId": 1, "appId": -5}, "payload.appId"),
        ("init_upload", {"config": {"gameName": "../x"}, "totalSize": 0, "files": []}, "payload.config.gameName"),
        ("init_upload", {"config": {"gameName": "G"}, "totalSize": 1, "files": [{"relativePath": "/a", "size": 1}]}, "payload.files[0].relativePath"),
        ("complete_upload", {}, "payload.uploadId"),
        ("cancel_upload", {"uploadId": 5}, "payload.uploadId"),
        ("apply_artwork", {"userId": 1, "appId": 1, "artwork": {"grid": 5}}, "payload.artwork.grid"),
    ],
)
async def test_bad_payload_fields_get_400_naming_them(
    agent: Agent, paired_hub: HubClient, message_type: str, payload: dict[str, object], field: str
) -> None:
    from capydeploy.protocol import MessageType

    with pytest.raises(AgentError) as caught:
        await paired_hub._exchange(MessageType(message_type), _Raw(payload))
    assert caught.value.code == 400
    assert field in caught.value.message


class _Raw(m.WireModel):
    """Sends an arbitrary payload through the hub's own request path."""

    def __init__(self, payload: dict[str, object]) -> None:
        super().__init__()
        object.__setattr__(self, "_raw", payload)

    def to_wire(self) -> dict[str, object]:
        return self._raw  # type: ignore[no-any-return]


async def test_oversized_frame_closes_1009_while_others_are_served(
    agent: Agent, paired_hub: HubClient, raw_peer: OpenPeer
) -> None:
    peer = await raw_peer()
    await peer.ws.send("x" * (10 * 1024 * 1024 + 1))
    assert await _closed_code(peer) == 1009
    info = await paired_hub.get_info()
    assert info.agent.name == "Test Deck"


async def test_silent_connection_closed_after_handshake_timeout(agent_factory: AgentFactory) -> None:
    agent = await agent_factory(handshake_timeout=0.3)
    peer = await RawPeer.open(agent)
    assert await _closed_code(peer) == 1008
    assert peer.ws.close_reason == "no hub_connected in time"


async def test_other_paths_get_404(agent: Agent) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await websockets.connect(f"ws://127.0.0.1:{agent.port}/other")
    assert caught.value.response.status_code == 404


async def test_revocation_closes_4001_and_hub_does_not_reconnect(agent: Agent, hub_config: Path) -> None:
    client = HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent))
    await client.connect()
    hub_id = client.identity.hub_id
    assert await agent.revoke_hub(hub_id)
    with pytest.raises(RevokedError):
        await client.wait_connected(timeout=10)
    assert client.reconnects == 0
    assert agent.session is None or agent.session.hub_id != hub_id
    assert hub_id not in {hub.id for hub in agent.snapshot().authorized_hubs}
    await client.close()
    # Its old token no longer works: it must pair again.
    again = HubClient(url_of(agent), config_dir=hub_config, reconnect=False)
    with pytest.raises(AgentError, match="pairing required"):
        await again.connect()
    await again.close()


async def test_tokens_hashed_on_disk_and_private(agent: Agent, paired_hub: HubClient, hub_config: Path) -> None:
    agent_file = agent.data_dir / "hubs.json"
    token = paired_hub.tokens.token_for(paired_hub.agent_id)
    assert token
    stored = agent_file.read_text()
    assert token not in stored
    import hashlib

    assert hashlib.sha256(token.encode()).hexdigest() in stored
    for path in (agent_file, agent.data_dir / "settings.json", hub_config / "tokens.json", hub_config / "hub.json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


async def test_no_code_or_token_in_logs(
    agent: Agent, hub_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from capydeploy.redaction import RedactingFilter

    caplog.handler.addFilter(RedactingFilter())
    caplog.set_level(logging.DEBUG)
    codes: list[str] = []

    async def read(pairing: m.PairingRequired) -> str:
        code = await code_from_state(agent)(pairing)
        codes.append(code)
        return code

    client = HubClient(url_of(agent), config_dir=hub_config, pair=read)
    await client.connect()
    await client.get_info()
    token = client.tokens.token_for(client.agent_id)
    await client.close()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "pair_success" in text or "paired" in text  # the logs did capture the exchange
    assert codes and codes[0] not in text
    assert token not in text


async def test_state_snapshot_tracks_the_session(agent: Agent, hub_config: Path) -> None:
    seen: list[str] = []
    agent.add_state_listener(lambda snapshot: seen.append(snapshot.connected_hub.name if snapshot.connected_hub else ""))
    client = HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent))
    await client.connect()
    snapshot = agent.snapshot()
    assert snapshot.connected_hub is not None and snapshot.connected_hub.authenticated
    assert snapshot.port == agent.port and snapshot.addresses == ["127.0.0.1"]
    await client.close()
    for _ in range(100):
        if agent.snapshot().connected_hub is None:
            break
        await asyncio.sleep(0.05)
    assert agent.snapshot().connected_hub is None
    assert client.identity.name in seen


def test_pairing_required_json_never_has_a_code() -> None:
    assert json.loads(m.PairingRequired(expires_in=60).model_dump_json(by_alias=True))["code"] == ""


async def test_hub_reconnects_with_its_token_after_a_drop(agent: Agent, paired_hub: HubClient) -> None:
    session = agent.session
    assert session is not None
    session.websocket.transport.abort()  # Wi-Fi gone: no close frame
    for _ in range(200):
        if paired_hub.reconnects:
            break
        await asyncio.sleep(0.05)
    assert paired_hub.reconnects == 1
    info = await paired_hub.get_info()  # served by the new, token-authenticated session
    assert info.agent.name == "Test Deck"
    assert agent.session is not None and agent.session is not session and agent.session.authenticated


async def test_device_disconnect_is_not_undone_by_the_hub(agent: Agent, paired_hub: HubClient) -> None:
    assert await agent.disconnect_hub()
    for _ in range(200):
        if not paired_hub.connected:
            break
        await asyncio.sleep(0.05)
    with pytest.raises(Exception, match="closed the connection"):
        await paired_hub.wait_connected(timeout=10)
    assert paired_hub.reconnects == 0


async def test_paired_hub_takes_the_slot_from_a_pending_pairing(
    agent: Agent, hub_config: Path, raw_peer: OpenPeer
) -> None:
    client = HubClient(url_of(agent), config_dir=hub_config, pair=code_from_state(agent), reconnect=False)
    await client.connect()
    await client.close()
    for _ in range(100):
        if agent.session is None:
            break
        await asyncio.sleep(0.05)
    squatter = await raw_peer()
    assert (await squatter.hello(hub_id="squatter"))["type"] == "pairing_required"
    again = HubClient(url_of(agent), config_dir=hub_config, reconnect=False)
    await again.connect()  # not 409: the paired hub wins over a pairing in progress
    assert agent.session is not None and agent.session.hub_id == again.identity.hub_id
    assert await _closed_code(squatter) == 1001
    assert agent.snapshot().pairing is None
    await again.close()


async def test_messages_in_fragments_are_joined_text_and_binary(agent: Agent, raw_peer: OpenPeer) -> None:
    peer = await raw_peer()
    await peer.hello()
    code = agent.snapshot().pairing
    assert code is not None
    await peer.send("pair_confirm", {"code": code.code}, "c1")
    assert (await peer.recv())["type"] == "pair_success"
    assert (await peer.recv())["type"] == "agent_status"
    # A text request in three fragments, cut inside a multi-byte character's neighbourhood.
    text = json.dumps({"id": "frag-é", "type": "get_info"}, ensure_ascii=False)
    await peer.ws.send(iter([text[:5], text[5:13], text[13:]]))
    info = await peer.recv()
    assert info["type"] == "info_response" and info["id"] == "frag-é"
    # A binary frame in fragments is one message too: a chunk for no upload is answered 404,
    # not taken apart as several broken frames.
    chunk = encode_chunk(m.ChunkHeader(id="chunk-1", upload_id="upload-" + "0" * 32, file_path="a", offset=0), b"x" * 100)
    await peer.ws.send(iter([chunk[:7], chunk[7:60], chunk[60:]]))
    reply = await peer.recv()
    assert reply["id"] == "chunk-1" and reply["type"] == "error" and reply["error"]["code"] == 404
