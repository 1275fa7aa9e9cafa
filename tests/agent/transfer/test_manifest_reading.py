"""Manifests and session records are read with their entries made as the JSON is parsed (no dict
per file, no long GIL hold); the result must be exactly what parsing into dicts first gave."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capydeploy import storage
from capydeploy.agent.transfer import session as session_module
from capydeploy.agent.transfer.manifest import (
    MANIFEST_VERSION,
    MTIME_UNSEEN,
    InstalledManifest,
    ManifestEntry,
    _entry_from_json,
    _read_manifest_file,
    manifest_entries,
    manifest_path,
    manifests_dir,
    matches_of,
    read_manifest,
    read_manifest_matches,
    recorded_among,
    stage_manifest,
)
from capydeploy.agent.transfer.session import _rows_by_path
from capydeploy.agent.transfer.staging import (
    RECORD_VERSION,
    SessionRecord,
    StagingLayout,
    read_session_record,
)
from capydeploy.protocol.listing import FileListing

values = st.one_of(st.none(), st.booleans(), st.integers(-1, 2**40), st.text(max_size=6), st.just("a/b.bin"))
entries = st.one_of(
    st.fixed_dictionaries(
        {"path": st.sampled_from(["a", "b/c", "../x", "/abs", "é.txt", ""]), "size": values, "mtimeNs": values},
        optional={"sha256": values, "extra": values},
    ),
    st.fixed_dictionaries({"path": st.just("ok"), "size": st.just(1), "mtimeNs": st.just(5)}),
    values,
)


def _plain_read(text: str, game_name: str) -> InstalledManifest | None:
    """The reading before entries were decoded by an object hook."""
    raw = json.loads(text)
    if not isinstance(raw, dict) or raw.get("version") != MANIFEST_VERSION:
        return None
    if raw.get("gameName") != game_name or not isinstance(raw.get("files"), list):
        return None
    found: dict[str, ManifestEntry] = {}
    for item in raw["files"]:
        entry = _entry_from_json(item)
        if entry is None:
            return None
        found[entry.path] = entry
    installed_at = raw.get("installedAt")
    return InstalledManifest(game_name, float(installed_at) if isinstance(installed_at, int | float) else 0.0, found)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(entries, max_size=5), st.dictionaries(st.sampled_from(["path", "size", "mtimeNs"]), values, max_size=3))
def test_a_manifest_reads_as_parsing_into_dicts_did(tmp_path: Path, files: list[Any], top_extra: dict[str, Any]) -> None:
    document = {"version": MANIFEST_VERSION, "gameName": "G", "installedAt": 3.5, "files": files, **top_extra}
    path = tmp_path / "manifest.json"
    text = json.dumps(document)
    path.write_text(text)
    assert _read_manifest_file(path, "G") == _plain_read(text, "G")


@given(st.lists(st.text(min_size=1, max_size=4), unique=True, max_size=40), st.integers(1, 5))
def test_rows_come_in_the_order_of_their_paths(paths: list[str], run: int) -> None:
    listing = FileListing.of([Listed(path, len(path), None) for path in paths])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(session_module, "SORT_RUN", run)
        assert [paths[row] for row in _rows_by_path(listing)] == sorted(paths)


file_entries_json = st.one_of(
    st.fixed_dictionaries(
        {"relativePath": st.sampled_from(["a", "b/c", "../x", "é.txt", ""]), "size": values},
        optional={"sha256": st.one_of(values, st.just("ab" * 32)), "mode": values},
    ),
    values,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(file_entries_json, max_size=5))
def test_a_session_record_reads_as_parsing_into_dicts_did(tmp_path: Path, files: list[Any]) -> None:
    layout = StagingLayout(tmp_path, "upload-" + "0" * 32)
    layout.folder.mkdir(parents=True, exist_ok=True)
    document = {
        "version": RECORD_VERSION, "uploadId": layout.upload_id, "hubId": "hub", "gameName": "G",
        "executable": None, "createdAt": 1.0, "files": files,
    }
    text = json.dumps(document)
    layout.session_file.write_text(text)
    try:
        plain: SessionRecord | None = SessionRecord.from_json(json.loads(text), layout.upload_id)
    except ValueError:
        plain = None
    assert read_session_record(layout) == plain


def test_a_staged_manifest_reads_back_entry_for_entry(tmp_path: Path) -> None:
    layout = StagingLayout(tmp_path, "upload-" + "1" * 32)
    layout.folder.mkdir(parents=True)
    (layout.folder / "a").mkdir()
    (layout.folder / "a" / "b.bin").write_bytes(b"12345")
    files = [("a/b.bin", 5, "ab" * 32), ("c.txt", 0, None), ("é/ü.dat", 9, "cd" * 32)]
    mtimes = [MTIME_UNSEEN, 11, 22]  # MTIME_UNSEEN: read from the file itself
    stage_manifest(layout, "G", 7.5, manifest_entries(layout.folder, files, mtimes))
    manifest = _read_manifest_file(layout.manifest_file, "G")
    assert manifest is not None and manifest.installed_at == 7.5
    assert list(manifest.entries.values()) == [
        ManifestEntry("a/b.bin", 5, "ab" * 32, (layout.folder / "a" / "b.bin").stat().st_mtime_ns),
        ManifestEntry("c.txt", 0, None, 11),
        ManifestEntry("é/ü.dat", 9, "cd" * 32, 22),
    ]


class Listed(NamedTuple):
    relative_path: str
    size: int
    sha256: str | None


installed_files = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 3), st.sampled_from([None, "aa" * 32, "bb" * 32])),
    max_size=30,
    unique_by=lambda item: item[0] + str(item[1]),
)
edits = st.lists(
    st.tuples(st.sampled_from(["drop", "add", "resize", "rehash", "unhash", "repeat", "extra key"]), st.integers(0, 40)),
    max_size=6,
)


def _write_manifest(root: Path, document: dict[str, Any]) -> None:
    manifests_dir(root).mkdir(parents=True, exist_ok=True)
    manifest_path(root, "G").write_text(json.dumps(document))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(installed=installed_files, changes=edits)
def test_a_manifest_matched_against_a_file_list_says_what_the_plain_reading_says(
    tmp_path: Path, installed: list[tuple[str, int, str | None]], changes: list[tuple[str, int]]
) -> None:
    """Per listed file, the installed copy's recorded mtime exactly where the manifest records
    the same path, size and hash; a later entry of a path decides (as it replaces the earlier
    one); an entry with keys we never write is read the plain way, with the same answer."""
    entries: list[dict[str, Any]] = [
        {"path": f"{name}/{n}.bin", "size": 1000 + n, "sha256": sha, "mtimeNs": 7 + n} for name, n, sha in installed
    ]
    listed = [Listed(e["path"], e["size"], e["sha256"]) for e in entries]
    for change, where in changes:  # the game as the Hub lists it now, and a manifest edited by hand
        at = where % (len(listed) + 1)
        if change == "add":
            listed.insert(at, Listed(f"new/{where}.bin", 5, "aa" * 32))
        elif change in ("repeat", "extra key") and entries and at < len(entries):
            if change == "repeat":  # the same path again, recording other facts
                entries.append({**entries[at], "sha256": "cc" * 32, "mtimeNs": 99})
            else:
                entries[at] = {**entries[at], "mode": 420}
        elif listed and at < len(listed):
            old = listed[at]
            if change == "drop":
                del listed[at]
            elif change == "resize":
                listed[at] = old._replace(size=old.size + 1)
            elif change == "rehash":
                listed[at] = old._replace(sha256="cc" * 32)
            else:
                listed[at] = old._replace(sha256=None)
    root = tmp_path / f"root{len(list(tmp_path.iterdir()))}"
    _write_manifest(root, {"version": MANIFEST_VERSION, "gameName": "G", "installedAt": 1.0, "files": entries})
    listing = FileListing.of(listed)

    matched = read_manifest_matches(root, "G", listing)
    plain = read_manifest(root, "G")
    assert plain is not None and matched is not None
    assert list(matched) == list(matches_of(plain, listing))
    last = {e["path"]: e for e in entries}  # what the plain reading keeps of each path
    for row, file in enumerate(listed):
        entry = last.get(file.relative_path)
        same = entry is not None and file.sha256 is not None and (entry["size"], entry["sha256"]) == (file.size, file.sha256)
        assert matched[row] == (entry["mtimeNs"] if same and entry is not None else MTIME_UNSEEN)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(entries, max_size=5), st.dictionaries(st.sampled_from(["path", "size", "mtimeNs"]), values, max_size=3))
def test_a_damaged_manifest_matches_nothing_as_it_reads_as_nothing(
    tmp_path: Path, files: list[Any], top_extra: dict[str, Any]
) -> None:
    root = tmp_path / f"root{len(list(tmp_path.iterdir()))}"
    _write_manifest(root, {"version": MANIFEST_VERSION, "gameName": "G", "installedAt": 3.5, "files": files, **top_extra})
    listing = FileListing.of([Listed("ok", 1, None), Listed("a", 0, "ab" * 32)])
    plain = read_manifest(root, "G")
    matched = read_manifest_matches(root, "G", listing)
    assert (matched is None) == (plain is None)
    if plain is not None and matched is not None:
        assert list(matched) == list(matches_of(plain, listing))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(entries, max_size=5), st.lists(st.sampled_from(["a", "b/c", "ok", "é.txt", "none"]), max_size=5))
def test_what_a_manifest_records_among_some_paths_is_what_the_plain_reading_says(
    tmp_path: Path, files: list[Any], asked: list[str]
) -> None:
    """`recorded_among` (which of a game folder's unlisted files an install put there) reads as
    it goes, and answers as the plain reading: None where that reads nothing."""
    root = tmp_path / f"root{len(list(tmp_path.iterdir()))}"
    _write_manifest(root, {"version": MANIFEST_VERSION, "gameName": "G", "installedAt": 3.5, "files": files})
    plain = read_manifest(root, "G")
    recorded = recorded_among(root, "G", asked)
    if plain is None:
        assert recorded is None
    else:
        assert recorded == {
            path: (plain.entries[path].size, plain.entries[path].mtime_ns) for path in set(asked) & plain.entries.keys()
        }


def test_what_a_manifest_of_another_game_or_none_records_is_unknown(tmp_path: Path) -> None:
    assert recorded_among(tmp_path, "G", ["a"]) is None  # none written
    _write_manifest(tmp_path, {"version": MANIFEST_VERSION, "gameName": "Other", "files": [{"path": "a", "size": 1, "mtimeNs": 1}]})
    assert recorded_among(tmp_path, "G", ["a"]) is None
    _write_manifest(tmp_path, {"version": MANIFEST_VERSION, "gameName": "G", "files": [{"path": "a", "size": 1, "mtimeNs": 1}]})
    assert recorded_among(tmp_path, "G", ["a", "b"]) == {"a": (1, 1)}


def test_a_manifest_of_another_game_or_none_matches_nothing(tmp_path: Path) -> None:
    listing = FileListing.of([Listed("a", 1, "ab" * 32)])
    assert read_manifest_matches(tmp_path, "G", listing) is None  # none written
    _write_manifest(tmp_path, {"version": MANIFEST_VERSION, "gameName": "Other", "files": []})
    assert read_manifest_matches(tmp_path, "G", listing) is None


def test_matching_a_manifest_makes_no_object_per_entry(tmp_path: Path) -> None:
    """The point of matching as it reads: a manifest of many files costs a few blocks of its
    text while read, not the whole text nor an object or five per entry (docs/performance.md,
    ninth session)."""
    count = 20_000
    entries = [{"path": f"data/{n:06}.bin", "size": n, "sha256": f"{n:064x}", "mtimeNs": n} for n in range(count)]
    _write_manifest(tmp_path, {"version": MANIFEST_VERSION, "gameName": "G", "installedAt": 1.0, "files": entries})
    listing = FileListing.of([Listed(e["path"], e["size"], e["sha256"]) for e in entries])
    text_bytes = manifest_path(tmp_path, "G").stat().st_size

    def traced_peak(read: Any) -> tuple[int, Any]:
        tracemalloc.start()
        try:
            result = read()
            return tracemalloc.get_traced_memory()[1], result
        finally:
            tracemalloc.stop()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage, "JSON_LIST_BLOCK", 64 * 1024)  # 2.8 MB of text, read in blocks
        matched_peak, matched = traced_peak(lambda: read_manifest_matches(tmp_path, "G", listing))
    plain_peak, plain = traced_peak(lambda: read_manifest(tmp_path, "G"))
    assert list(matched) == [e["mtimeNs"] for e in entries] == list(matches_of(plain, listing))
    # A few blocks of text and the mtimes (8 bytes an entry): never the whole text.
    assert matched_peak < text_bytes / 2, (matched_peak, text_bytes)
    assert plain_peak > 2 * text_bytes + 100 * count  # what it spares: the text twice, the entries


ENTRY_A = {"path": "data/a.pak", "size": 3, "sha256": "aa" * 32, "mtimeNs": 1}
ENTRY_SAVE = {"path": "saves/slot1.sav", "size": 5, "sha256": "bb" * 32, "mtimeNs": 777}


@pytest.mark.parametrize(
    "text",
    [
        # An entry with one more key (a later format) whose value looks like an entry itself.
        json.dumps({"version": 1, "gameName": "G", "installedAt": 0, "files": [{**ENTRY_A, "extra": ENTRY_SAVE}]}),
        # Two "files" members: the streamed reading meets the first, the plain reading keeps the last.
        '{"version": 1, "gameName": "G", "installedAt": 0, '
        f'"files": [{json.dumps(ENTRY_SAVE)}], "files": [{json.dumps(ENTRY_A)}]}}',
    ],
    ids=["nested entry", "two file lists"],
)
def test_a_manifest_the_streamed_reading_gives_up_on_reads_as_the_plain_reading_alone(
    tmp_path: Path, text: str
) -> None:
    """What the streamed reading saw before it gave up is forgotten: the answers are the plain
    reading's, never a mix (a save counted as an install's file would be deleted)."""
    manifest_path(tmp_path, "G").parent.mkdir(parents=True)
    manifest_path(tmp_path, "G").write_text(text)
    plain = read_manifest(tmp_path, "G")
    assert plain is not None
    assert recorded_among(tmp_path, "G", ["saves/slot1.sav", "data/a.pak"]) == {
        path: (entry.size, entry.mtime_ns) for path, entry in plain.entries.items()
    }
    listing = FileListing.of([Listed("saves/slot1.sav", 5, "bb" * 32), Listed("data/a.pak", 3, "aa" * 32)])
    matched = read_manifest_matches(tmp_path, "G", listing)
    assert matched is not None and list(matched) == list(matches_of(plain, listing))
