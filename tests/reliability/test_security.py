"""Security checks over real sockets: pairing brute force, secrets at rest, in logs and on the wire, revocation."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from capydeploy.agent.server import Agent
from capydeploy.hub.client import HubClient
from capydeploy.hub.deploy import DeployOptions
from capydeploy.redaction import SECRETS, RedactingFilter
from scripts.reliability.fuzzing import TappedHubClient
from scripts.reliability.peer import Peer
from scripts.reliability.sandbox import NO_STEAM_COMMAND, STEAM_ID64
from tests.conftest import AgentFactory, url_of


async def _code(agent: Agent) -> str:
    pending = agent.snapshot().pairing
    assert pending is not None, "the device shows no pairing code"
    return pending.code


def _wrong(code: str, offset: int = 1) -> str:
    return f"{(int(code) + offset) % 1_000_000:06d}"


def _code_pattern(code: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\d){code}(?!\d)")


@pytest.fixture
async def device(agent_factory: AgentFactory) -> Agent:
    return await agent_factory(steam_command=NO_STEAM_COMMAND)


# --- pairing brute force ------------------------------------------------------------------------


async def test_three_wrong_codes_lock_pairing_even_across_connections(device: Agent) -> None:
    """Two guesses, reconnect for a fresh code, one more guess: that third wrong code locks pairing."""
    guesses = 0
    first = await Peer.open(url_of(device))
    assert (await first.hello("guesser-1"))["type"] == "pairing_required"
    for attempt in range(2):
        reply = await first.request("pair_confirm", {"code": _wrong(await _code(device), attempt + 1)})
        guesses += 1
        assert reply["type"] == "pair_failed", reply
    await first.close()
    second = await Peer.open(url_of(device))
    assert (await second.hello("guesser-2"))["type"] == "pairing_required"
    real = await _code(device)
    reply = await second.request("pair_confirm", {"code": _wrong(real)})
    guesses += 1
    assert reply["type"] == "pair_failed" and "locked" in reply["payload"]["reason"], reply
    assert device.snapshot().lockout_remaining > 290
    # The lock holds for the code that was live, on this connection ...
    assert (await second.request("pair_confirm", {"code": real}))["type"] == "pair_failed"
    await second.close()
    # ... and for every new connection, whatever hub id it claims, for many attempts.
    for number in range(20):
        peer = await Peer.open(url_of(device))
        refused = await peer.hello("guesser-1" if number % 2 else f"fresh-hub-{number}")
        assert refused["type"] == "error" and refused["error"]["code"] == 401, refused
        assert "locked" in refused["error"]["message"]
        assert await peer.closed_code() == 1008
    peer = await Peer.open(url_of(device))
    assert (await peer.request("pair_confirm", {"code": real}))["type"] == "pair_failed"  # no hub_connected yet
    await peer.close()
    assert device.snapshot().pairing is None
    assert device.snapshot().authorized_hubs == []
    print(f"\nbrute force: locked after {guesses} wrong codes over 2 connections; 21 further connections refused")


async def test_a_brute_forcer_reconnecting_for_fresh_codes_gets_three_guesses_in_all(device: Agent) -> None:
    guesses = 0
    for number in range(10):
        peer = await Peer.open(url_of(device))
        reply = await peer.hello(f"spray-{number}")
        if reply["type"] == "error":
            assert reply["error"]["code"] == 401 and "locked" in reply["error"]["message"]
            await peer.close()
            continue
        for _ in range(2):  # two guesses per code, then a new connection and a new code
            answer = await peer.request("pair_confirm", {"code": _wrong(await _code(device))})
            assert answer["type"] == "pair_failed"
            if "locked" in answer["payload"]["reason"]:
                guesses += 1
                break
            guesses += 1
        await peer.close()
    assert guesses == 3
    assert device.snapshot().lockout_remaining > 0


async def test_wrong_codes_are_forgotten_after_the_lockout_period(agent_factory: AgentFactory) -> None:
    """An old typo never adds up with today's: wrong codes older than the lockout period are forgotten."""
    clock = [1000.0]
    agent = await agent_factory(steam_command=NO_STEAM_COMMAND, pairing_lockout=300.0)
    agent.pairing._clock = lambda: clock[0]  # the gate's injected clock
    peer = await Peer.open(url_of(agent))
    await peer.hello("typo-hub")
    for _ in range(2):
        assert (await peer.request("pair_confirm", {"code": _wrong(await _code(agent))}))["type"] == "pair_failed"
    clock[0] += 301
    await peer.close()
    peer = await Peer.open(url_of(agent))
    await peer.hello("typo-hub")
    reply = await peer.request("pair_confirm", {"code": _wrong(await _code(agent))})
    assert "2 attempts left" in reply["payload"]["reason"], reply
    assert (await peer.request("pair_confirm", {"code": await _code(agent)}))["type"] == "pair_success"
    await peer.close()


# --- secrets at rest ------------------------------------------------------------------------------


async def test_tokens_are_hashed_on_disk_and_every_secret_file_is_private(device: Agent, tmp_path: Path) -> None:
    codes: list[str] = []

    async def read(_: Any) -> str:
        codes.append(await _code(device))
        return codes[-1]

    client = HubClient(url_of(device), config_dir=tmp_path / "hub-config", pair=read)
    await client.connect()
    token = client.tokens.token_for(client.agent_id)
    await client.close()
    assert token and codes
    hubs = device.data_dir / "hubs.json"
    assert hashlib.sha256(token.encode()).hexdigest() in hubs.read_text()
    for path in sorted(device.data_dir.rglob("*")):
        if path.is_file():
            content = path.read_bytes()
            assert token.encode() not in content, path
            assert not _code_pattern(codes[0]).search(content.decode("utf-8", "replace")), path
    for path in (hubs, device.data_dir / "settings.json", tmp_path / "hub-config" / "tokens.json",
                 tmp_path / "hub-config" / "hub.json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert token in (tmp_path / "hub-config" / "tokens.json").read_text()  # the Hub must keep it to send it


# --- secrets in logs --------------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self, redact: bool) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        if redact:
            self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def debug_logs() -> Iterator[tuple[_Lines, _Lines]]:
    """DEBUG for every logger; the root handler redacts as the CLI's and Decky's handlers do, and a
    handler on `capydeploy` sees the product's own messages before any redaction."""
    root = logging.getLogger()
    product = logging.getLogger("capydeploy")
    shown, raw = _Lines(redact=True), _Lines(redact=False)
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(shown)
    product.addHandler(raw)
    try:
        yield shown, raw
    finally:
        root.removeHandler(shown)
        product.removeHandler(raw)
        root.setLevel(level)


def _leaks(lines: list[str], codes: list[str], tokens: list[str]) -> list[str]:
    found = []
    for line in lines:
        for code in codes:
            if _code_pattern(code).search(line):
                found.append(f"code {code} in: {line[:200]}")
        for token in tokens:
            pieces = {token[i : i + 12] for i in range(len(token) - 11)}
            if any(piece in line for piece in pieces):
                found.append(f"token piece in: {line[:200]}")
    return found


async def test_debug_logs_of_a_whole_session_hold_no_code_or_token(
    device: Agent, tmp_path: Path, debug_logs: tuple[_Lines, _Lines]
) -> None:
    shown, raw = debug_logs
    codes: list[str] = []

    async def read(_: Any) -> str:
        codes.append(await _code(device))
        return codes[-1]

    # A guesser first (wrong codes are logged as outcomes), then the real Hub pairs, deploys, reconnects.
    guesser = await Peer.open(url_of(device))
    await guesser.hello("guesser")
    codes.append(await _code(device))
    await guesser.request("pair_confirm", {"code": _wrong(codes[-1])})
    await guesser.close()
    client = HubClient(url_of(device), config_dir=tmp_path / "hub-config", pair=read)
    await client.connect()
    token = client.tokens.token_for(client.agent_id)
    game = tmp_path / "game"
    game.mkdir()
    (game / "run.sh").write_bytes(b"#!/bin/sh\n")
    await client.deploy(game, DeployOptions(game_name="Logged", executable="run.sh", create_shortcut=False))
    await client.get_steam_users()
    await client.close()
    again = HubClient(url_of(device), config_dir=tmp_path / "hub-config")
    await again.connect()
    await again.close()
    # A traceback that carries a secret is redacted too (the handler renders it after the filter).
    try:
        raise RuntimeError(f"could not use token {token}")
    except RuntimeError:
        logging.getLogger("capydeploy.test").exception("failure while handling the token")
    product_lines = [line for line in raw.lines if "could not use token" not in line and "failure while" not in line]
    assert any("pair_success" in line for line in shown.lines), "websockets' frame log was not captured"
    assert len(codes) >= 2 and token
    leaks = _leaks(shown.lines, codes, [token])
    assert not leaks, "\n".join(leaks)
    own = _leaks(product_lines, codes, [token])
    assert not own, "the product put a secret in its own message:\n" + "\n".join(own)
    print(f"\nDEBUG log audit: {len(shown.lines)} lines, {len(codes)} codes and 1 token issued, 0 leaks")


def test_redaction_masks_a_token_cut_by_a_frame_log() -> None:
    """websockets shortens a logged frame by cutting out its middle: the token's key and start may be gone."""
    token = "Zq3" + hashlib.sha256(b"cut").hexdigest()[:40]
    SECRETS.add(token)
    frame = f'{{"id":"00cc8862c71c691c","type":"pair_success","payload":{{"token":"{token}"}}}}'
    shown = f"> TEXT '{frame[:48]}...{frame[-22:]}' [113 bytes]"
    assert token[-19:] in shown
    scrubbed = SECRETS.scrub(shown)
    assert not any(token[i : i + 12] in scrubbed for i in range(len(token) - 11)), scrubbed


# --- revocation ---------------------------------------------------------------------------------------


async def test_a_revoked_hub_is_closed_with_4001_and_its_token_no_longer_works(device: Agent) -> None:
    peer = await Peer.open(url_of(device))
    token = await peer.pair(lambda: _code(device), "doomed-hub")
    assert (await peer.request("get_info"))["type"] == "info_response"
    assert await device.revoke_hub("doomed-hub")
    assert await peer.closed_code() == 4001
    again = await Peer.open(url_of(device))
    reply = await again.hello("doomed-hub", token=token)
    assert reply["type"] == "pairing_required", reply
    assert (await again.request("get_info"))["error"]["code"] == 401
    await again.close()
    assert "doomed-hub" not in {hub.id for hub in device.snapshot().authorized_hubs}
    assert token not in (device.data_dir / "hubs.json").read_text()


# --- the code never travels ----------------------------------------------------------------------------


class _RecordingHub(TappedHubClient):
    """A HubClient that keeps every text frame the Agent sent it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[str] = []

    def _dispatch(self, text: str) -> None:
        self.frames.append(text)
        super()._dispatch(text)


@pytest.fixture
async def recording_hub(device: Agent, tmp_path: Path) -> AsyncIterator[tuple[_RecordingHub, list[str]]]:
    codes: list[str] = []

    async def read(_: Any) -> str:
        codes.append(await _code(device))
        return codes[-1]

    client = _RecordingHub(url_of(device), config_dir=tmp_path / "hub-config", pair=read)
    await client.connect()
    yield client, codes
    await client.close()


async def test_the_pairing_code_is_in_no_frame_the_agent_sends(
    device: Agent, tmp_path: Path, recording_hub: tuple[_RecordingHub, list[str]]
) -> None:
    client, codes = recording_hub
    # A whole session of the paired Hub: every kind of request, a deploy, a shortcut.
    await client.get_info()
    await client.get_config()
    await client.get_steam_users()
    game = tmp_path / "game"
    game.mkdir()
    (game / "run.sh").write_bytes(b"#!/bin/sh\n" + os.urandom(3000))
    await client.deploy(game, DeployOptions(game_name="Wire", executable="run.sh", user_id=str(STEAM_ID64)))
    await client.list_shortcuts(str(STEAM_ID64))
    await client.ping()
    await client.close()
    # Raw clients during pairing: before hub_connected, wrong codes, a 409, the lockout.
    frames = list(client.frames)
    other = await Peer.open(url_of(device))
    await other.hello("raw-pairer")
    codes.append(await _code(device))
    await other.request("pair_confirm", {"code": _wrong(codes[-1])})
    await other.request("get_info")
    await other.request("ping")
    success = await other.request("pair_confirm", {"code": codes[-1]})
    assert success["type"] == "pair_success"
    await other.recv_frame()  # agent_status
    intruder = await Peer.open(url_of(device))
    await intruder.request("pair_confirm", {"code": codes[-1]})
    assert (await intruder.hello("intruder"))["error"]["code"] == 409
    await intruder.closed_code()
    await other.close()
    for peer in (other, intruder):
        frames += [frame if isinstance(frame, str) else frame.decode("utf-8", "replace") for frame in peer.received]
    assert len(codes) >= 2 and len(frames) > 20
    for code in codes:
        hits = [frame for frame in frames if _code_pattern(code).search(frame)]
        assert not hits, f"code {code} sent in {hits[:3]}"
    pairing = [frame for frame in frames if '"pairing_required"' in frame]
    assert pairing and all('"code":""' in frame for frame in pairing)
    print(f"\nwire audit: {len(frames)} frames from the Agent, {len(codes)} codes issued, 0 frames with a code")


@pytest.mark.parametrize(
    "line",
    [
        # The Hub logs the pair_success it receives before it stores (and registers) the token.
        "< TEXT '{\"id\":\"ba45ddd2b75b46d3\",\"type\":\"pair_success\",...{tail}\"}}}}' [113 bytes]",
        # An Agent restarted since pairing never issued the token a Hub now presents.
        "< TEXT '{\"id\":\"ba45ddd2b75b46d3\",\"type\":\"hub_connected\",...ken\":\"{tail}\"}}}}' [200 bytes]",
    ],
)
def test_redaction_masks_secrets_this_process_never_issued_in_cut_frames(line: str) -> None:
    """Regression: found by the session-wide log audit (tests/log_audit.py) at DEBUG, in the plugin
    zip test where Hub and Agent are separate module copies: a token tail leaked from a frame log."""
    token = hashlib.sha256(b"never registered").hexdigest()[:43]
    shown = line.replace("{tail}", token[-20:]).replace("}}}}", "}}")
    assert token[-20:] in shown
    scrubbed = SECRETS.scrub(shown)
    assert not any(token[i : i + 12] in scrubbed for i in range(len(token) - 11)), scrubbed
    assert "[redacted]" in scrubbed


def test_the_session_log_audit_finds_codes_and_token_pieces() -> None:
    """tests/log_audit.py (the session-wide check) flags a code as a number of its own and any
    12-character piece of a token, and nothing else."""
    from tests.log_audit import find_leaks

    token = "mjnSf-5AMv7hyxhbraXGtjY9lO2MwOnFGPsiSj1wlyM"
    secrets = {"482913", token}
    lines = [
        ("t1", "pairing code 482913 shown"),
        ("t2", "> TEXT '{...6SzbT...' tail ...9lO2MwOnFGPsiSj1wlyM\"}}'"),
        ("t3", "wrote 1482913 bytes; port 48291; id 4829130"),
        ("t4", "token [redacted] and code [redacted]"),
    ]
    assert [leak.split(":")[0] for leak in find_leaks(lines, secrets)] == ["t1", "t2"]


def test_the_session_log_audit_looks_for_a_code_where_it_could_have_leaked() -> None:
    """A code is a 6-digit number: the audit looks for it in the test that issued it, and not in
    byte counts, or chance matches make the whole session fail now and then."""
    from tests.log_audit import find_leaks

    code = "460803"
    lines = [
        ("t1", "agent shows code 460803"),
        ("t1", '> TEXT \'{"id":"1","type":"pair_confirm","payload":{"code":"460803"}}\''),
        ("t1", '> TEXT \'{"id":"6","type":"upload_chunk_r..."totalWritten":460803}}\' [162 bytes]'),
        ("t1", '< TEXT \'{"type":"upload_chunk_response","payload":{"bytesWritten": 460803}}\''),
        ("t2", "an unrelated test wrote 460803 bytes"),
    ]
    leaks = find_leaks(lines, {code}, {code: "t1"})
    assert [leak.split(": ", 1)[1] for leak in leaks] == [
        "460803 in: agent shows code 460803",
        '460803 in: > TEXT \'{"id":"1","type":"pair_confirm","payload":{"code":"460803"}}\'',
    ]
    # Issued outside any test (a session fixture): looked for everywhere.
    assert len(find_leaks(lines, {code}, {})) == 3
