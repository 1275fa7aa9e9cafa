"""The transfer package's small parts: byte ranges, the chunk journal, the in-order file hash, the
signature that decides whether an init_upload resumes a staged upload."""

from __future__ import annotations

import hashlib
import itertools
import random
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capydeploy.agent.transfer import journal as journal_module
from capydeploy.agent.transfer.file_table import FileTable, StagedFile
from capydeploy.agent.transfer.filehash import FileHash, HashClaim, Hasher, hash_bytes_after
from capydeploy.agent.transfer.journal import ChunkJournal, ChunkRecord, read_journal
from capydeploy.agent.transfer.ranges import (
    ByteRanges,
    Held,
    add_range,
    held_gaps,
    held_prefix,
    held_total,
    remove_range,
)
from capydeploy.agent.transfer.session import upload_signature

SIZE = 64
spans = st.tuples(st.integers(0, SIZE), st.integers(0, SIZE)).map(sorted)
operations = st.lists(st.tuples(st.sampled_from(["add", "add", "remove", "clear"]), spans), max_size=40)


@given(operations)
def test_byte_ranges_match_a_set_of_bytes(ops: list[tuple[str, list[int]]]) -> None:
    ranges = ByteRanges()
    model: set[int] = set()
    for operation, (start, end) in ops:
        span = set(range(start, end))
        if operation == "add":
            assert ranges.add(start, end) == len(span - model)
            model |= span
        elif operation == "remove":
            assert ranges.remove(start, end) == len(span & model)
            model -= span
        else:
            ranges.clear()
            model.clear()
        assert ranges.total == len(model)
        assert ranges.covers(start, end) == (span <= model)
        prefix = 0
        while prefix in model:
            prefix += 1
        assert ranges.prefix_end() == prefix
        gaps = ranges.missing(SIZE)
        assert {b for s, e in gaps for b in range(s, e)} == set(range(SIZE)) - model
        intervals = ranges.intervals()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(intervals))  # merged, sorted
        assert ranges.covers(0, SIZE) == (len(model) == SIZE)


@given(operations)
def test_held_bytes_match_a_set_of_bytes_and_stay_an_int_while_a_prefix(ops: list[tuple[str, list[int]]]) -> None:
    held: Held = 0
    model: set[int] = set()
    for operation, (start, end) in ops:
        span = set(range(start, end))
        if operation == "add":
            held, added = add_range(held, start, end)
            assert added == len(span - model)
            model |= span
        elif operation == "remove":
            held, removed = remove_range(held, start, end)
            assert removed == len(span & model)
            model -= span
        else:
            held = 0
            model.clear()
        assert held_total(held) == len(model)
        prefix = 0
        while prefix in model:
            prefix += 1
        assert held_prefix(held) == prefix
        gaps = held_gaps(held, SIZE)
        assert {b for s, e in gaps for b in range(s, e)} == set(range(SIZE)) - model
        assert all(a[1] < b[0] for a, b in itertools.pairwise(gaps))  # merged, sorted
        # No object beyond the int while the bytes are one run from offset 0 (or none).
        assert isinstance(held, int) == (len(model) == prefix)


def test_journal_round_trip_resets_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "chunks.log"
    journal = ChunkJournal(path)
    a = ChunkRecord(0, 0, 10, "a" * 64)
    b = ChunkRecord(1, 0, 5, "b" * 64)
    c = ChunkRecord(0, 10, 10, "c" * 64)
    journal.append_chunk(a)
    journal.append_chunk(b)
    journal.append_reset(1)
    journal.append_chunk(c)
    journal.append_chunk(ChunkRecord(9, 0, 1, "d" * 64))  # index beyond the file list: ignored
    journal.close()
    with path.open("ab") as handle:
        handle.write(b"garbled line\nC 1 0 5 " + b"e" * 30)  # garbage, then a torn last line
    assert read_journal(path, file_count=2) == {0: [a, c]}
    assert read_journal(tmp_path / "absent.log", file_count=2) == {}


def test_journal_resets_in_bulk_act_like_single_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "RESETS_PER_WRITE", 3)  # several writes for 8 resets
    path = tmp_path / "chunks.log"
    journal = ChunkJournal(path)
    records = [ChunkRecord(index, 0, 4, f"{index:x}" * 64) for index in range(10)]
    for record in records:
        journal.append_chunk(record)
    journal.append_resets([0, 2, 3, 4, 5, 6, 8, 9])
    journal.append_resets([])
    journal.append_chunk(later := ChunkRecord(2, 0, 4, "f" * 64))
    journal.close()
    assert read_journal(path, file_count=10) == {1: [records[1]], 2: [later], 7: [records[7]]}


def _one_staged_file(path: str, size: int, tree: Path) -> StagedFile:
    return FileTable(tree, [Listed(path, size)])[0]


def _node(file_hash: FileHash, start: int, data: bytes) -> tuple[HashClaim, Future[Hasher]]:
    claim = file_hash.claim(start, start + len(data))
    assert claim is not None
    future: Future[Hasher] = Future()
    future.set_result(hash_bytes_after(claim, data))
    file_hash.chained(claim, future)
    return claim, future


def test_file_hash_accepts_commits_out_of_order() -> None:
    parts = [b"one", b"two", b"three"]
    file_hash = FileHash(11)
    nodes = []
    offset = 0
    for part in parts:
        nodes.append(_node(file_hash, offset, part))
        offset += len(part)
    # Stores finish 2, 0, 1: the hash waits for the gap, then catches up.
    for index in (2, 0, 1):
        claim, future = nodes[index]
        assert file_hash.commit(claim, future.result())
    assert file_hash.upto == offset
    assert file_hash.finished_hexdigest() == hashlib.sha256(b"".join(parts)).hexdigest()


def test_a_file_hashed_to_its_end_keeps_only_its_digest() -> None:
    file_hash = FileHash(6)
    first, first_future = _node(file_hash, 0, b"abc")
    second, second_future = _node(file_hash, 3, b"def")
    assert file_hash.commit(first, first_future.result())
    assert file_hash.finished_hexdigest() is None  # bytes 3-6 still in flight
    assert file_hash.commit(second, second_future.result())
    assert file_hash.finished_hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
    assert file_hash._hasher is None  # the OpenSSL state (a few hundred bytes a file) is gone
    assert file_hash.claim(0, 3) is None  # a re-sent chunk cannot extend a finished hash
    file_hash.invalidate()  # ... it rewrites hashed bytes: completion reads the file back
    assert file_hash.finished_hexdigest() is None
    assert file_hash.upto == 0


def test_a_settled_digest_keeps_no_hash_state_and_still_guards_rewrites(tmp_path: Path) -> None:
    staged = _one_staged_file("a.bin", 6, tmp_path)
    claim, future = _node(staged.digest, 0, b"abcdef")
    staged.writes = 2  # so the write that finishes it cannot drop the state on its own
    assert staged.digest.commit(claim, future.result())
    found = staged.finished_digest()
    assert found == hashlib.sha256(b"abcdef").digest()
    staged.settle_digest(found)
    assert staged.hash_state == found  # only the 32 bytes are kept
    # Asked for again (a completion that failed, then a second one): still finished, same digest.
    assert staged.digest.finished_digest() == found
    assert staged.digest.claim(0, 3) is None and staged.digest.claimed_end == 6
    # A chunk re-sent after it rewrites hashed bytes: the next completion must read the file back.
    staged.digest.invalidate()
    assert staged.finished_digest() is None and staged.digest.upto == 0
    staged.forget_digest()
    assert staged.finished_digest() is None


def test_a_finished_hash_is_kept_as_its_bytes_only_while_no_other_write_is_in_flight(tmp_path: Path) -> None:
    staged = _one_staged_file("a.bin", 6, tmp_path)
    claim, future = _node(staged.digest, 0, b"abcdef")
    assert staged.digest.commit(claim, future.result())
    expected = hashlib.sha256(b"abcdef")
    staged.writes = 2  # another write of the file holds the FileHash: it must stay
    staged.settle_finished()
    assert isinstance(staged.hash_state, FileHash)
    staged.writes = 1  # only the write that finished it
    staged.settle_finished()
    assert staged.hash_state == expected.digest()  # 32 bytes, no hash state
    assert staged.finished_hexdigest() == expected.hexdigest()
    # A chunk re-sent later gets a finished FileHash back, and spoils it like any rewrite.
    file_hash = staged.digest
    assert file_hash.finished_hexdigest() == expected.hexdigest() and file_hash.claim(0, 6) is None
    file_hash.invalidate()
    assert staged.finished_hexdigest() is None
    staged.settle_finished()  # nothing finished: nothing to keep
    assert staged.hash_state is file_hash
    # Forgetting a file drops a finished digest too.
    claim, future = _node(staged.digest, 0, b"abcdef")
    assert staged.digest.commit(claim, future.result())
    staged.settle_finished()
    staged.forget_digest()
    assert staged.hash_state is None and staged.finished_hexdigest() is None


def test_an_empty_file_is_hashed_from_the_start() -> None:
    assert FileHash(0).finished_hexdigest() == hashlib.sha256(b"").hexdigest()


def test_a_failed_node_drops_the_chain() -> None:
    file_hash = FileHash(7)
    first, _ = _node(file_hash, 0, b"bad")
    second, second_future = _node(file_hash, 3, b"next")
    file_hash.abandon(first)
    assert not file_hash.commit(second, second_future.result())
    assert file_hash.upto == 0
    # A fresh chain starts where the hash stands.
    claim = file_hash.claim(0, 3)
    assert claim is not None and claim.prev is None


def test_rewriting_hashed_bytes_invalidates() -> None:
    file_hash = FileHash(6)
    claim, future = _node(file_hash, 0, b"abc")
    assert file_hash.commit(claim, future.result())
    assert file_hash.claimed_end == 3
    file_hash.invalidate()
    assert (file_hash.upto, file_hash.claimed_end) == (0, 0)
    assert file_hash.hasher.hexdigest() == hashlib.sha256(b"").hexdigest()


class Listed(NamedTuple):
    relative_path: str
    size: int
    sha256: str | None = None


listings = st.lists(
    st.tuples(st.sampled_from(["a", "a/b", "b", "a\u00e9", "ab", "a/b/c"]), st.integers(0, 12)),
    max_size=6,
    unique_by=lambda entry: entry[0],
)


@given(listings, listings, st.randoms(use_true_random=False))
def test_upload_signatures_match_exactly_when_paths_and_sizes_do(
    first: list[tuple[str, int]], second: list[tuple[str, int]], rng: random.Random
) -> None:
    root = Path("/games")
    shuffled = list(second)
    rng.shuffle(shuffled)  # the order of the list does not matter, nor do hashes
    mine = upload_signature("hub", "Game", root, [Listed(p, s) for p, s in first])
    theirs = upload_signature("hub", "Game", root, [Listed(p, s, "0" * 64) for p, s in shuffled])
    assert (mine == theirs) == (sorted(first) == sorted(second))
    assert mine != upload_signature("other hub", "Game", root, [Listed(p, s) for p, s in first])
    assert mine != upload_signature("hub", "Game 2", root, [Listed(p, s) for p, s in first])
    assert mine != upload_signature("hub", "Game", Path("/elsewhere"), [Listed(p, s) for p, s in first])


def test_a_staged_file_makes_its_hash_state_only_when_it_is_written() -> None:
    staged = _one_staged_file("a.bin", 3, Path("/staging/tree"))
    staged.forget_digest()  # a carried file is reset without ever being hashed
    assert staged.hash_state is None  # no state (about 100 bytes) for up to 100 000 carried files
    claim, future = _node(staged.digest, 0, b"abc")
    assert staged.digest.commit(claim, future.result())
    assert staged.digest.finished_hexdigest() == hashlib.sha256(b"abc").hexdigest()
    staged.forget_digest()
    assert staged.digest.finished_hexdigest() is None and staged.digest.upto == 0
