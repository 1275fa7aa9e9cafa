"""Manifests and session records are read with their entries made as the JSON is parsed (no dict
per file, no long GIL hold); the result must be exactly what parsing into dicts first gave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    read_manifest,
    stage_manifest,
)
from capydeploy.agent.transfer.session import _sorted_in_runs
from capydeploy.agent.transfer.staging import (
    RECORD_VERSION,
    SessionRecord,
    StagingLayout,
    read_session_record,
)

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


@given(st.lists(st.tuples(st.text(max_size=4), st.integers(0, 9)), max_size=40), st.integers(1, 5))
def test_sorting_in_runs_sorts(items: list[tuple[str, int]], run: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(session_module, "SORT_RUN", run)
        assert list(_sorted_in_runs(items)) == sorted(items)


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


def _fresh(text: str) -> str:
    """An equal string that is not the same object (as a path parsed from another message)."""
    return "".join(list(text))


installed_files = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 3), st.sampled_from([None, "aa" * 32, "bb" * 32])),
    max_size=30,
    unique_by=lambda item: item[0] + str(item[1]),
)
edits = st.lists(st.tuples(st.sampled_from(["drop", "add", "resize", "rehash"]), st.integers(0, 40)), max_size=6)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(installed=installed_files, changes=edits)
def test_a_manifest_read_against_a_file_list_shares_its_objects_and_nothing_else_changes(
    tmp_path: Path, installed: list[tuple[str, int, str | None]], changes: list[tuple[str, int]]
) -> None:
    entries = [ManifestEntry(f"{name}/{n}.bin", 1000 + n, sha, 7) for name, n, sha in installed]
    listed = [Listed(_fresh(e.path), int(str(e.size)), _fresh(e.sha256) if e.sha256 else None) for e in entries]
    for change, where in changes:  # the game as the Hub lists it now
        at = where % (len(listed) + 1)
        if change == "add":
            listed.insert(at, Listed(f"new/{where}.bin", 5, None))
        elif listed and at < len(listed):
            old = listed[at]
            if change == "drop":
                del listed[at]
            elif change == "resize":
                listed[at] = old._replace(size=old.size + 1)
            else:
                listed[at] = old._replace(sha256="cc" * 32)
    root = tmp_path / f"root{len(list(tmp_path.iterdir()))}"
    layout = StagingLayout(root, "upload-" + "2" * 32)
    layout.folder.mkdir(parents=True)
    stage_manifest(layout, "G", 1.0, iter(entries))
    manifests_dir(root).mkdir(parents=True)
    layout.manifest_file.rename(manifest_path(root, "G"))

    alone = read_manifest(root, "G")
    shared = read_manifest(root, "G", listed)
    assert alone is not None and shared == alone  # the same facts, whatever the list
    if not changes:  # the same list in the same order: every object comes from the list
        for entry, same in zip(shared.entries.values(), listed, strict=True):
            assert entry.path is same.relative_path and entry.size is same.size
            assert entry.sha256 is same.sha256


def test_files_added_and_removed_since_do_not_stop_the_sharing(tmp_path: Path) -> None:
    entries = [ManifestEntry(f"data/{n:03}.bin", n, f"{n:064x}", 7) for n in range(300, 340)]
    listed = [Listed(_fresh(e.path), int(str(e.size)), _fresh(e.sha256 or "")) for e in entries]
    listed.insert(0, Listed("data/000-new.bin", 1, None))
    del listed[20]
    listed.insert(30, Listed("data/325-new.bin", 1, None))
    layout = StagingLayout(tmp_path, "upload-" + "2" * 32)
    layout.folder.mkdir(parents=True)
    stage_manifest(layout, "G", 1.0, iter(entries))
    manifests_dir(tmp_path).mkdir(parents=True)
    layout.manifest_file.rename(manifest_path(tmp_path, "G"))
    manifest = read_manifest(tmp_path, "G", listed)
    assert manifest is not None
    by_path = {f.relative_path: f for f in listed}
    shared = [e for e in manifest.entries.values() if e.path in by_path and e.sha256 is by_path[e.path].sha256]
    assert len(shared) == len(entries) - 1  # all but the one removed from the list
