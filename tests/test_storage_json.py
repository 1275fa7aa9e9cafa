"""atomic_write_json: both forms read back to the same value; the compact one is a single line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capydeploy import storage
from capydeploy.storage import atomic_write_json, read_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, compact=st.booleans())
def test_every_value_reads_back_unchanged(tmp_path: Path, value: Any, compact: bool) -> None:
    # Lone surrogates included (st.text() yields them): the file stays valid UTF-8.
    path = tmp_path / "value.json"
    atomic_write_json(path, value, compact=compact)
    assert read_json(path, default=object()) == value
    path.read_bytes().decode("utf-8")


def test_the_compact_form_has_no_indentation(tmp_path: Path) -> None:
    manifest = {"version": 1, "files": [{"path": f"data/é-{i}.bin", "size": i} for i in range(3)]}
    compact, indented = tmp_path / "compact.json", tmp_path / "indented.json"
    atomic_write_json(compact, manifest, compact=True)
    atomic_write_json(indented, manifest)
    assert b"\n" not in compact.read_bytes() and b", " not in compact.read_bytes()
    assert b"\n  " in indented.read_bytes()
    assert json.loads(compact.read_text()) == json.loads(indented.read_text()) == manifest
    assert compact.stat().st_size < indented.stat().st_size


def test_long_lists_are_written_in_batches_that_join_up(tmp_path: Path) -> None:
    from capydeploy import storage

    batch = storage.COMPACT_JSON_BATCH
    for count in (batch, batch + 1, 2 * batch, 3 * batch + 7):
        value = {
            "version": 1,
            "files": [{"path": f"d/{i}", "size": i, "sha256": None} for i in range(count)],
            "nested": {"list": list(range(count)), "empty": [], "text": "é\ud800"},
        }
        pieces = list(storage._compact_json_pieces(value))
        # No piece holds more than a batch of entries (one C call each), and every entry is there.
        assert max(piece.count('"path"') for piece in pieces) == min(count, batch)
        assert sum(piece.count('"path"') for piece in pieces) == count
        path = tmp_path / f"batched-{count}.json"
        atomic_write_json(path, value, compact=True)
        assert read_json(path, default=None) == value
        assert path.read_text() == json.dumps(value, separators=(",", ":"))


def test_an_iterator_is_written_as_a_list_made_a_batch_at_a_time(tmp_path: Path) -> None:
    from capydeploy import storage

    batch = storage.COMPACT_JSON_BATCH
    made = 0

    def entries(count: int) -> Any:
        nonlocal made
        for i in range(count):
            made += 1
            yield {"path": f"d/{i}", "size": i}

    for count in (0, 1, batch, 2 * batch + 3):
        made = 0
        pieces = storage._compact_json_pieces({"version": 1, "files": entries(count)})
        text = ""
        for piece in pieces:
            text += piece
            # Never more than one batch ahead of what was written.
            assert made <= text.count('"path"') + batch
        assert json.loads(text) == {"version": 1, "files": [{"path": f"d/{i}", "size": i} for i in range(count)]}
    path = tmp_path / "lazy.json"
    atomic_write_json(path, {"files": entries(3)}, compact=True)
    assert read_json(path, default=None) == {"files": [{"path": f"d/{i}", "size": i} for i in range(3)]}


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
header_values = scalars | st.lists(scalars, max_size=3)
headers = st.dictionaries(st.text(max_size=6).filter(lambda key: key != "files"), header_values, max_size=4)
items = st.lists(json_values, max_size=12)
layouts = st.sampled_from(["compact", "spaced", "indented"])


def _write(path: Path, document: dict[str, Any], layout: str) -> None:
    if layout == "compact":
        atomic_write_json(path, document, compact=True)
    else:
        path.write_text(json.dumps(document, indent=2 if layout == "indented" else None))


def _read_list(path: Path) -> tuple[dict[str, Any], list[Any]]:
    members, listed = storage.read_json_list(path, "files")
    return members, list(listed)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=headers, listed=items, layout=layouts, block=st.integers(1, 40))
def test_a_list_read_a_block_at_a_time_reads_as_the_whole_text(
    tmp_path: Path, header: dict[str, Any], listed: list[Any], layout: str, block: int
) -> None:
    """Our files' shape (members, then the long list last), written any way, in blocks down to
    one character: the same members and items as json.loads of the whole text."""
    path = tmp_path / "list.json"
    _write(path, {**header, "files": listed}, layout)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage, "JSON_LIST_BLOCK", block)
        members, read = _read_list(path)
    assert {**members, "files": read} == json.loads(path.read_text())
    assert members["files"] == []


documents = st.dictionaries(st.sampled_from(["files", "a", "b"]), json_values, max_size=4)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents | json_values, cut=st.none() | st.integers(0, 400), block=st.integers(1, 40))
def test_a_list_read_a_block_at_a_time_is_the_whole_text_or_refused(
    tmp_path: Path, document: Any, cut: int | None, block: int
) -> None:
    """Any JSON (other shapes, the list not last, nested lists of that name, cut short): either
    exactly what json.loads reads, or refused (the caller then reads it the plain way)."""
    path = tmp_path / "any.json"
    text = json.dumps(document)
    path.write_text(text if cut is None else text[:cut])
    try:
        plain: Any = json.loads(path.read_text())
    except ValueError:
        plain = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage, "JSON_LIST_BLOCK", block)
        try:
            members, read = _read_list(path)
        except ValueError:  # NotAStreamableList is one
            return
    assert plain == {**members, "files": read}
