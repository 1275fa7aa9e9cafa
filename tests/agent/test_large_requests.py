"""A long request is parsed off the loop, and the heap its fragments left free is handed back first."""

from __future__ import annotations

import json

import pytest

from capydeploy.agent import connection
from capydeploy.protocol import parse_request_text
from capydeploy.protocol.catalog import MessageType


def _init_upload_text(count: int) -> str:
    files = [{"relativePath": f"data/file-{n:05}.bin", "size": 1, "sha256": f"{n:064x}"} for n in range(count)]
    payload = {"config": {"gameName": "G"}, "totalSize": count, "files": files}
    return json.dumps({"id": "r", "type": "init_upload", "payload": payload})


@pytest.mark.parametrize(("count", "returns_heap"), [(100, False), (20_000, True)])
def test_the_heap_is_handed_back_before_a_long_request_is_parsed(
    monkeypatch: pytest.MonkeyPatch, count: int, returns_heap: bool
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(connection, "return_free_heap", lambda: calls.append(1))
    text = _init_upload_text(count)
    assert (len(text) > connection.RETURN_HEAP_FROM) is returns_heap  # the cases are what they say
    long_list = len(text) > connection.RETURN_HEAP_FROM
    envelope, message_type, request = connection._parse_large_text(text, long_list)
    assert calls == ([1] if returns_heap else [])
    expected = parse_request_text(text)
    assert message_type is MessageType.INIT_UPLOAD and envelope.id == expected[0].id and request == expected[2]
