"""The per-upload file table: each row reads back what was listed and what was written to it."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capydeploy.agent.transfer.file_table import FileTable, StagedFile
from capydeploy.agent.transfer.filehash import FileHash
from capydeploy.agent.transfer.found_digests import FoundDigests
from capydeploy.agent.transfer.ranges import ByteRanges, held_prefix
from capydeploy.agent.transfer.session import adopt_hashes, hashes_fit
from capydeploy.protocol import path_column
from capydeploy.protocol.listing import FileListing
from capydeploy.protocol.path_column import PathColumn

TREE = Path("/staging/tree")


class Listed(NamedTuple):
    relative_path: str
    size: int
    sha256: str | None = None


def _hex(seed: int) -> str:
    return hashlib.sha256(str(seed).encode()).hexdigest()


def test_rows_read_back_the_list_in_its_order() -> None:
    listed = [Listed("b/c.bin", 7, _hex(1)), Listed("a.txt", 0), Listed("\u00e9t\u00e9/x", 1 << 40, _hex(2))]
    table = FileTable(TREE, listed)
    assert len(table) == 3
    assert [(f.index, f.relative_path, f.size, f.sha256) for f in table] == [
        (i, *entry) for i, entry in enumerate(listed)
    ]
    assert table[-1] == table[2] and table[0:2] == [table[0], table[1]]
    with pytest.raises(IndexError):
        table[3]
    assert table.find("a.txt") == table[1] and table.listing.index_of("a.txt") == 1
    assert table.find("missing") is None and table.listing.index_of("b") is None
    assert table[0].path == TREE / "b/c.bin" and table[0].os_path == str(TREE / "b/c.bin")
    assert table[0].given_digest() == bytes.fromhex(_hex(1)) and table[1].given_digest() is None
    # A fresh row holds nothing and knows nothing yet.
    row = table[0]
    assert (row.held, row.complete, row.sealed, row.carried_mtime_ns, row.program, row.writes) == (
        0, False, False, None, None, 0
    )
    assert table[1].complete  # an empty file is complete from the start
    assert row.hash_state is None


def test_views_of_one_row_are_equal_and_see_the_same_row() -> None:
    table = FileTable(TREE, [Listed("a", 3), Listed("b", 3)])
    first, again = table[0], table.find("a")
    assert first == again and hash(first) == hash(again) and first is not again
    assert first != table[1] and first != FileTable(TREE, [Listed("a", 3)])[0]
    first.sealed = True
    assert again is not None and again.sealed
    assert len({first, again, table[1]}) == 2


class RowModel(NamedTuple):
    sha256: str | None
    held: Any
    sealed: bool
    mtime: int | None
    program: bool | None
    writes: int


rows = st.integers(0, 4)
actions = st.one_of(
    st.tuples(st.just("held"), rows, st.integers(0, 100)),
    st.tuples(st.just("gaps"), rows, st.integers(1, 40), st.integers(50, 90)),
    st.tuples(st.just("sealed"), rows, st.booleans()),
    st.tuples(st.just("mtime"), rows, st.none() | st.integers(-(2**63) + 1, 2**63 - 1)),
    st.tuples(st.just("program"), rows, st.none() | st.booleans()),
    st.tuples(st.just("writes"), rows, st.integers(0, 1000)),
    st.tuples(st.just("sha256"), rows, st.integers(0, 10)),
    st.tuples(st.just("found"), rows, st.integers(0, 10)),
)


# action -> (the view's attribute, the model's field) for facts written as they are
PLAIN_FACTS = {
    "held": ("held", "held"),
    "sealed": ("sealed", "sealed"),
    "mtime": ("carried_mtime_ns", "mtime"),
    "program": ("program", "program"),
    "writes": ("writes", "writes"),
}


@given(st.lists(actions, max_size=40))
def test_each_fact_of_a_row_is_kept_apart_from_every_other(steps: list[tuple[Any, ...]]) -> None:
    """Any sequence of writes to any rows: every row reads back exactly its own last writes."""
    sizes = [100, 100, 0, 100, 1]
    table = FileTable(TREE, [Listed(f"f{i}", size) for i, size in enumerate(sizes)])
    model = [RowModel(None, 0, False, None, None, 0) for _ in sizes]
    for action, index, *values in steps:
        row = table[index]
        if action in PLAIN_FACTS:
            attribute, field = PLAIN_FACTS[action]
            setattr(row, attribute, values[0])
            model[index] = model[index]._replace(**{field: values[0]})
        elif action == "gaps":
            ranges = ByteRanges()
            ranges.add(0, values[0])
            ranges.add(values[1], 100)
            row.held = ranges
            model[index] = model[index]._replace(held=ranges)
        elif action == "found":
            row.settle_digest(bytes.fromhex(_hex(values[0])))
            continue  # (the hash's own tests are below; here only the bulk readings use it)
        else:
            table.listing.set_given(index, _hex(values[0]))
            model[index] = model[index]._replace(sha256=_hex(values[0]))
        for i, expected in enumerate(model):
            seen = table[i]
            assert seen.sha256 == expected.sha256
            assert seen.held is expected.held or seen.held == expected.held
            held_to = expected.held if isinstance(expected.held, int) else expected.held.prefix_end()
            assert seen.complete == (held_to >= sizes[i])
            assert (seen.sealed, seen.carried_mtime_ns, seen.program, seen.writes) == (
                expected.sealed, expected.mtime, expected.program, expected.writes
            )
    # The readings of whole columns say what the views say, row by row.
    views = list(table)
    assert list(table.incomplete_rows()) == [v.index for v in views if not v.complete]
    assert [table.is_complete(v.index) for v in views] == [v.complete for v in views]
    assert list(table.sealed_rows()) == [v.index for v in views if v.sealed]
    assert list(table.written_rows()) == [v.index for v in views if not v.sealed]
    assert table.written_count() == sum(1 for v in views if not v.sealed)
    assert list(table.held_prefixes()) == [(v.relative_path, v.size, held_prefix(v.held)) for v in views]
    assert list(table.tree_rows()) == [(v.relative_path, v.size, v.sealed, v.program) for v in views]
    assert list(table.manifest_rows()) == [
        (v.relative_path, v.size, v.sha256 if v.sealed else v.finished_hexdigest()) for v in views
    ]
    assert list(table.listing.triples()) == [(v.relative_path, v.size, v.sha256) for v in views]
    assert list(table.carried_rows()) == [(v.index, v.relative_path, v.size, v.carried_mtime_ns) for v in views if v.sealed]
    assert [table.found_digest(v.index) for v in views] == [
        state if isinstance(state := v.hash_state, bytes) else None for v in views
    ]


def test_a_row_keeps_a_running_hash_or_its_digest_never_both() -> None:
    table = FileTable(TREE, [Listed("a", 3), Listed("b", 3)])
    row = table[0]
    running = row.digest
    assert isinstance(running, FileHash) and row.hash_state is running and table[0].digest is running
    digest = hashlib.sha256(b"abc").digest()
    row.settle_digest(digest)
    assert row.hash_state == digest and row.finished_digest() == digest
    assert table[1].hash_state is None  # the other row is untouched
    again = row.digest  # asked for again (a chunk re-sent): a finished FileHash, the digest gone
    assert again.finished_digest() == digest and row.hash_state is again
    row.forget_digest()
    assert row.finished_digest() is None


def test_release_frees_every_row_and_lookups_find_nothing() -> None:
    listed = [Listed(f"f{i}", i, _hex(i)) for i in range(12_000)]
    request = FileListing.of(listed)
    table = FileTable(TREE, request)  # takes the request's columns over as they are
    assert table.paths is request.paths and table.sizes is request.sizes
    find = table.find  # a worker may hold the lookup while the table is released
    paths = table.paths  # ... and the loop a column (the current file of the progress report)
    table.release()
    assert len(table) == 0 and list(table) == [] and find("f1") is None
    assert len(paths) == 12_000 and paths[11_999] == "f11999"  # still whole for who read it before
    assert request == listed  # a caller that kept its request still reads it whole


def test_a_row_costs_a_few_dozen_bytes_beside_its_path() -> None:
    """The point of the table: a game of 100 000 files must not cost an object or four per file
    (about 500 bytes a file as objects; docs/performance.md, ninth session)."""
    count = 20_000
    listed = [Listed(f"folder/file-{i:06}.bin", 1024 + i, _hex(i)) for i in range(count)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = FileTable(TREE, listed)
        rows = table[:]  # views made and dropped: they must not stay
        del rows
        for row in table:
            row.held = row.size
            row.settle_digest(hashlib.sha256(row.relative_path.encode()).digest())
            row.sealed = True
            row.carried_mtime_ns = 1_700_000_000_000_000_000
        per_file = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    # Columns: 32 + 32 bytes of digests, 8 + 8 + 8 + 8 of integers, a few bytes of flags, the
    # path's 23 characters and its start, and two to four lookup slots of 4 bytes.
    assert per_file < 170, per_file
    assert table.find("folder/file-000007.bin") == table[7] and table[7].complete


def test_found_digests_keep_their_bytes_end_to_end() -> None:
    found = FoundDigests()
    digests = {f"f{i}": hashlib.sha256(bytes([i])).digest() for i in range(3)}
    for path, digest in digests.items():
        found.add(path, digest)
    assert dict(found.items()) == {path: digest.hex() for path, digest in digests.items()}
    assert found["f1"] == digests["f1"].hex()
    with pytest.raises(ValueError):
        found.add("short", b"\x00" * 31)


def test_staged_file_is_the_view_the_table_makes() -> None:
    table = FileTable(TREE, [Listed("a", 1)])
    assert isinstance(table[0], StagedFile) and repr(table[0]) == "StagedFile(0, 'a', 1)"


paths = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=12)


@given(st.lists(paths, unique=True, max_size=60), st.lists(paths, max_size=10), st.integers(1, 7))
def test_a_path_column_finds_each_path_at_its_row_and_nothing_else(
    listed: list[str], others: list[str], join_every: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(path_column, "JOIN_EVERY", join_every)  # joined a few paths at a time
        column = PathColumn(listed)
    assert len(column) == len(listed) and list(column) == listed
    assert [column[row] for row in range(len(listed))] == listed
    assert [column[-row] for row in range(1, len(listed) + 1)] == listed[::-1]  # as a list counts
    with pytest.raises(IndexError):
        column[len(listed)]
    with pytest.raises(IndexError):
        column[-len(listed) - 1]
    for row, path in enumerate(listed):
        assert column.index_of(path) == row
    for path in others:
        assert column.index_of(path) == (listed.index(path) if path in listed else None)
    empty = PathColumn([])
    assert len(empty) == 0 and list(empty) == [] and all(empty.index_of(p) is None for p in listed)


def test_a_path_column_probes_past_colliding_slots() -> None:
    """5 000 paths in 16 384 slots: hundreds land on a taken slot, and each is found past it."""
    listed = [f"p{i}" for i in range(5000)]
    column = PathColumn(listed)
    assert all(column.index_of(path) == row for row, path in enumerate(listed))
    assert column.index_of("p5000") is None and column.index_of("p") is None


hash_choices = st.none() | st.sampled_from([_hex(1), _hex(2)])
lists_of_files = st.lists(st.tuples(st.sampled_from(["a", "b", "c/d", "e"]), hash_choices), unique_by=lambda f: f[0])


@given(lists_of_files, lists_of_files)
def test_a_resuming_list_fits_the_staged_hashes_exactly_when_no_hash_changed(
    staged: list[tuple[str, str | None]], requested: list[tuple[str, str | None]]
) -> None:
    """D6 'sha256 where given': a staged hash must come back the same; a file staged without one
    may now bring one (and the staged upload takes it). Same answer from a live upload's table,
    a record's listing, and a plain list."""
    staged_files = [Listed(path, 1, digest) for path, digest in staged]
    requested_files = [Listed(path, 1, digest) for path, digest in requested]
    known = dict(staged)
    expected = all(known.get(path) in (None, digest) for path, digest in requested)
    table = FileTable(TREE, staged_files)
    for form in (table, FileListing.of(staged_files), staged_files):
        assert hashes_fit(form, requested_files) == expected
    if not expected:
        return
    session = SimpleNamespace(files=table)
    added = {path: digest for path, digest in requested if digest is not None and known.get(path) is None and path in known}
    assert adopt_hashes(session, requested_files) == bool(added)  # type: ignore[arg-type]
    assert {f.relative_path: f.sha256 for f in table} == {**known, **added}
