"""A fast, deterministic sample of `make fuzz` (scripts/fuzz.py), plus regressions of what it found.

The sample runs the same harness (scripts/reliability/fuzzing.py) against an in-process Agent with
300 Hypothesis-drawn frames (`derandomize=True`: the same frames every run), half before and half
after authentication, while the paired Hub keeps deploying. Timeouts are hang guards only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from capydeploy.agent.server import Agent
from scripts.reliability.fuzzing import InProcessTarget, run_fuzz
from scripts.reliability.peer import Peer, chunk_frame
from scripts.reliability.sandbox import NO_STEAM_COMMAND, refuse_every_address, seal_network
from tests.conftest import AgentFactory, url_of

SAMPLE_CASES = 300


async def _sandboxed(agent_factory: AgentFactory) -> Agent:
    agent = await agent_factory(steam_command=NO_STEAM_COMMAND, artwork_address_allowed=refuse_every_address)
    seal_network(agent)
    return agent


async def test_fuzz_sample(agent_factory: AgentFactory, tmp_path: Path) -> None:
    agent = await _sandboxed(agent_factory)
    target = InProcessTarget(agent)
    try:
        report = await run_fuzz(target, tmp_path / "fuzz", cases=SAMPLE_CASES, seed=None, hang_timeout=10.0)
    finally:
        target.close()
    print("\n" + report.summary())
    assert report.total_cases == SAMPLE_CASES
    assert report.cases["before auth"] and report.cases["after auth"]
    assert report.crashes == 0, report.crash_lines
    assert report.hangs == 0
    assert not report.anomalies, report.examples
    assert report.deploys > 0 and report.deploys == report.deploys_identical, report.deploy_failures
    assert report.ok, report.summary()


async def _read_code(agent: Agent) -> str:
    pending = agent.snapshot().pairing
    assert pending is not None
    return pending.code


async def test_a_lone_surrogate_in_an_id_is_echoed_not_fatal(agent_factory: AgentFactory) -> None:
    """Regression: JSON may escape a lone surrogate (\\ud800); echoing it raw made the reply
    unencodable, the session died without a reply (1006 before auth; the paired Hub's socket after)."""
    agent = await _sandboxed(agent_factory)
    peer = await Peer.open(url_of(agent))
    await peer.ws.send('{"id": "\\ud800", "type": "ping"}')
    reply = await peer.recv_frame()
    assert reply["id"] == "\ud800" and reply["type"] in ("pong", "error"), reply
    await peer.ws.send('{"id": "\\udfff\\ud800", "type": "\\ud800"}')
    reply = await peer.recv_frame()
    assert reply["id"] == "\udfff\ud800" and reply["type"] == "error", reply
    await peer.pair(lambda: _read_code(agent), "surrogate-hub")
    await peer.ws.send('{"id": "\\ud800", "type": 5112238}')
    reply = await peer.recv_frame()
    assert reply["id"] == "\ud800" and reply["error"]["code"] == 400, reply
    header = json.dumps({"id": "\udc80", "uploadId": "nope", "filePath": "a", "offset": 0}).encode()
    await peer.ws.send(chunk_frame(None, b"x", raw_header=header))
    reply = await peer.recv_frame()
    assert reply["id"] == "\udc80" and reply["error"]["code"] == 400, reply
    assert (await peer.request("get_info"))["type"] == "info_response"  # the session lives on
    await peer.close()


async def test_chunk_frames_answer_under_their_header_id(agent_factory: AgentFactory) -> None:
    """A chunk aimed at a real upload is acknowledged, a damaged one answered with 400, both by id."""
    agent = await _sandboxed(agent_factory)
    peer = await Peer.open(url_of(agent))
    await peer.pair(lambda: _read_code(agent), "chunk-hub")
    init = await peer.request(
        "init_upload", {"config": {"gameName": "Chunks"}, "totalSize": 8, "files": [{"relativePath": "a", "size": 8}]}
    )
    upload_id = init["payload"]["uploadId"]
    data = b"12345678"
    good = {"id": "c1", "uploadId": upload_id, "filePath": "a", "offset": 0,
            "checksum": hashlib.sha256(data).hexdigest()}
    assert (await peer.send_chunk(good, data))["type"] == "upload_chunk_response"
    bad = dict(good, id="c2", offset=1)
    reply = await peer.send_chunk(bad, data)
    assert reply["id"] == "c2" and reply["error"]["code"] == 400
    await peer.ws.send(b"\x00\x00\x00\x05{}")  # the header length promises more than there is
    reply = await peer.recv_frame()
    assert reply["id"] == "" and reply["error"]["code"] == 400
    await peer.close()
