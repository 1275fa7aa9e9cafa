"""The Agent never sends a frame over the 10 MiB message limit (D4): a reply's per-file map is cut
to what fits, keeping the entries that save the Hub the most."""

from __future__ import annotations

import json

import pytest

from capydeploy.agent.connection import _encode_within_limit
from capydeploy.protocol import MessageType, constants
from capydeploy.protocol import messages as m

LIMIT = 4096


def test_resume_from_keeps_the_largest_held_files(monkeypatch: pytest.MonkeyPatch) -> None:
    resume_from = {f"data/file-{n:04}.bin": (n * 7919) % 5000 for n in range(500)}
    reply = m.UploadInitResponse(upload_id="upload-1", chunk_size=1 << 20, resume_from=resume_from)
    monkeypatch.setattr(constants, "MAX_MESSAGE", LIMIT)
    text = "".join(_encode_within_limit(MessageType.UPLOAD_INIT_RESPONSE, reply, "r1"))
    assert len(text.encode()) <= LIMIT
    sent = json.loads(text)["payload"]["resumeFrom"]
    assert 0 < len(sent) < len(resume_from)
    assert all(resume_from[path] == held for path, held in sent.items())  # true, only fewer
    left_out = set(resume_from) - set(sent)
    assert min(sent.values()) >= max(resume_from[path] for path in left_out)


def test_result_hashes_are_cut_to_fit_and_a_small_reply_is_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    digests = {f"data/file-{n:04}.bin": f"{n:064x}" for n in range(200)}
    result = m.OperationResult(success=True, path="/games/G", sha256=digests)
    monkeypatch.setattr(constants, "MAX_MESSAGE", LIMIT)
    text = "".join(_encode_within_limit(MessageType.OPERATION_RESULT, result, "r2"))
    payload = json.loads(text)["payload"]
    assert len(text.encode()) <= LIMIT and payload["success"] is True and payload["path"] == "/games/G"
    assert 0 < len(payload["sha256"]) < len(digests)
    assert all(digests[path] == digest for path, digest in payload["sha256"].items())
    monkeypatch.setattr(constants, "MAX_MESSAGE", 10 * 1024 * 1024)
    assert json.loads("".join(_encode_within_limit(MessageType.OPERATION_RESULT, result, "r2")))["payload"]["sha256"] == digests
