"""Messages that grow with a game's file count are parsed and encoded without their per-file dicts,
with the same result as the plain path: the same request or the same error, the same JSON value."""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from capydeploy.protocol import (
    ErrorCode,
    ProtocolError,
    constants,
    parse_envelope,
    parse_request,
    parse_request_text,
)
from capydeploy.protocol.envelope import describe_validation_error
from capydeploy.protocol.fitting import keep_what_fits
from capydeploy.protocol.listing import FileListing
from capydeploy.protocol.messages import InitUpload, UploadFile

HEX = "0123456789abcdefABCDEF"
paths = st.one_of(
    st.sampled_from(["a", "b/c.bin", "dir/sub/x", "é/ü.txt", "a/../b", "/abs", "", "a\\b", "c:x", "ok.exe"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)
sizes = st.one_of(st.integers(-2, 2**40), st.sampled_from([True, 1.5, "7", None]))
hashes = st.one_of(st.text(HEX, min_size=64, max_size=64), st.sampled_from(["x" * 64, "ab", 7, None]))
entries = st.fixed_dictionaries(
    {"relativePath": paths, "size": sizes},
    optional={"sha256": hashes, "mode": st.just(493), "relative_path": paths},
)


def _old_path(text: str) -> InitUpload | str:
    """What parsing gave before file entries were decoded as they are read."""
    payload = json.loads(text)["payload"]
    try:
        return InitUpload.model_validate(payload)
    except ValidationError as exc:
        return describe_validation_error(exc)


def _new_path(text: str) -> InitUpload | str:
    try:
        _, _, request = parse_request_text(text)
    except ProtocolError as error:
        assert error.code == ErrorCode.BAD_REQUEST
        return error.message
    assert isinstance(request, InitUpload)
    return request


@given(st.lists(entries, max_size=6), st.booleans())
def test_init_upload_parses_as_the_plain_path_does(files: list[dict[str, Any]], right_total: bool) -> None:
    total = sum(f["size"] for f in files if type(f["size"]) is int) if right_total else 1
    text = json.dumps(
        {"id": "r", "type": "init_upload", "payload": {"config": {"gameName": "G"}, "totalSize": total, "files": files}}
    )
    old, new = _old_path(text), _new_path(text)
    if isinstance(old, str):
        assert new == old
    else:
        assert isinstance(new, InitUpload)
        assert new.files == old.files
        assert [(f.relative_path, f.size, f.sha256) for f in new.files] == [
            (f.relative_path, f.size, f.sha256) for f in old.files
        ]
        # Read into columns when every entry has only the wire's keys (an entry with any other
        # key is left to the plain path, which ignores it); an empty list stays a list.
        plain_keys = all(f.keys() <= {"relativePath", "size", "sha256"} for f in files)
        assert isinstance(new.files, FileListing) == (bool(files) and plain_keys)


def test_a_bad_entry_is_reported_with_its_place_in_the_list() -> None:
    files = [{"relativePath": "ok", "size": 1}, {"relativePath": "../out", "size": 1}]
    text = json.dumps(
        {"id": "r", "type": "init_upload", "payload": {"config": {"gameName": "G"}, "totalSize": 2, "files": files}}
    )
    message = _new_path(text)
    assert isinstance(message, str) and message.startswith("payload.files[1].relativePath")


@pytest.mark.parametrize(
    "message",
    [
        {"id": "r", "type": "ping", "payload": {"relativePath": "a", "size": 1}},
        {"id": "r", "type": "ping", "payload": {"extra": [{"relativePath": "a", "size": 1}]}},
        {"id": "r", "type": "init_upload", "payload": {"relativePath": "a", "size": 1}},
        {"id": "r", "type": "init_upload", "payload": {"config": {"relativePath": "a", "size": 1}, "totalSize": 0, "files": []}},
        {"id": "r", "type": "init_upload", "payload": {"config": {"gameName": "G", "relativePath": "a", "size": 1}, "totalSize": 0, "files": []}},
        {"id": "r", "type": "init_upload", "payload": {"config": {"gameName": "G"}, "totalSize": 0, "files": [], "x": {"relativePath": "a", "size": 1}}},
        {"id": {"relativePath": "a", "size": 1}, "type": "ping"},
        {"id": "r", "type": "complete_upload", "payload": {"uploadId": "u", "sha256": {"relativePath": "a", "size": 1}}},
        [{"relativePath": "a", "size": 1}],
    ],
)
def test_entry_like_objects_anywhere_give_the_plain_result(message: Any) -> None:
    text = json.dumps(message)
    try:
        envelope = parse_envelope(text)
        plain: Any = parse_request(envelope)
    except ProtocolError as error:
        plain = (error.code, error.message, error.request_id)
    try:
        _, *lean = parse_request_text(text)
        result: Any = tuple(lean)
    except ProtocolError as error:
        result = (error.code, error.message, error.request_id)
    assert result == plain


def _traced_peak(fn: Callable[[], object]) -> int:
    """Most bytes Python held at once while `fn` ran, its result still alive at the end."""
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
        return peak
    finally:
        tracemalloc.stop()


def test_an_init_upload_of_many_files_never_exists_as_dicts() -> None:
    files = [{"relativePath": f"data/file-{n:05}.bin", "size": n, "sha256": f"{n:064x}"} for n in range(5000)]
    payload = {"config": {"gameName": "G"}, "totalSize": sum(range(5000)), "files": files}
    text = json.dumps({"id": "r", "type": "init_upload", "payload": payload})
    del files, payload

    def plain() -> object:
        return parse_request(parse_envelope(text))

    def lean() -> object:
        return parse_request_text(text)

    # Both keep the same entries and strings; the plain path also holds a dict per entry.
    assert _traced_peak(lean) < 0.75 * _traced_peak(plain)


@given(
    st.integers(0, 300),
    st.integers(1, 9),
    st.integers(0, 200),
    st.integers(0, 3000),
    st.one_of(st.none(), st.integers(-5, 5), st.integers(-400, 400)),
)
def test_keep_what_fits_keeps_the_most_items_that_fit(
    count: int, width: int, base: int, limit: int, guess_error: int | None
) -> None:
    calls: list[int] = []

    def encode(kept: int) -> str:
        calls.append(kept)
        return "é" * base + "x" * (width * kept)  # é: the limit counts UTF-8 bytes

    def guess(excess: int) -> int:  # exact for this encoding, give or take guess_error
        assert guess_error is not None
        return count - -(-excess // width) + guess_error

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "MAX_MESSAGE", limit)
        kept, text = keep_what_fits(count, encode, None if guess_error is None else guess)
    encodings = len(calls)
    best = max((k for k in range(count + 1) if 2 * base + width * k <= limit), default=None)
    if best is None:
        assert (kept, text) == (0, None)
    else:
        assert (kept, text) == (best, encode(best))
    assert calls[0] == count and encodings <= 3 + count.bit_length()
    if guess_error == 0 and best is not None and best < count:
        assert encodings <= 3  # the full frame, the guess, and the one after it


class Listed(NamedTuple):
    relative_path: str
    size: int
    sha256: str | None = None


@given(
    st.lists(st.sampled_from(["a", "a/b", "a/b/c", "b", "b/a", "c/d", "ab", "a b"]), max_size=6),
    st.none() | st.sampled_from(["a", "a/b", "b", "zz"]),
)
def test_a_list_in_columns_follows_the_same_rules_as_a_list_of_entries(paths: list[str], exe: str | None) -> None:
    """No path twice, no file that is also a folder, the executable listed: the columns' checks
    (by lookup, in list order) accept exactly the lists the entries' checks (sorted) accept."""
    as_entries = [UploadFile.unchecked(path, 1, None) for path in paths]
    payload = {"config": {"gameName": "G", "executable": exe}, "totalSize": len(paths)}

    def outcome(files: Any) -> bool:
        try:
            InitUpload.model_validate({**payload, "files": files})
        except ValidationError:
            return False
        return True

    assert outcome(FileListing.of(Listed(p, 1) for p in paths)) == outcome(as_entries)
