"""The Hub's hash cache: correct hashes, no re-reads of unchanged files, changes noticed."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from capydeploy.hub import hashcache
from capydeploy.hub.hashcache import FileChangedError, HashCache, hash_files
from capydeploy.hub.scan import LocalFile, scan_folder


@pytest.fixture
def game(tmp_path: Path) -> Path:
    folder = tmp_path / "game"
    (folder / "data").mkdir(parents=True)
    (folder / "game.exe").write_bytes(b"exe" * 1000)
    (folder / "data" / "big.pak").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (folder / "empty").write_bytes(b"")
    return folder


def expected_hashes(folder: Path) -> dict[str, str]:
    return {f.relative_path: hashlib.sha256(Path(f.path).read_bytes()).hexdigest() for f in scan_folder(folder)}


async def test_hashes_are_right_and_persisted(game: Path, tmp_path: Path) -> None:
    cache_file = tmp_path / "cache" / "hash-cache.json"
    cache = HashCache(cache_file)
    seen: list[tuple[int, int]] = []
    hashes = await hash_files(
        scan_folder(game), cache, progress=lambda done, total: seen.append((done, total))
    )
    assert hashes == expected_hashes(game)
    assert cache.stats.misses == 3 and cache.stats.hits == 0
    assert cache_file.is_file()
    total = sum(f.size for f in scan_folder(game))
    assert seen[-1] == (total, total)
    assert json.loads(cache_file.read_text())["version"] == 1


async def test_an_unchanged_redeploy_reads_no_file_data(
    game: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_file = tmp_path / "hash-cache.json"
    first = await hash_files(scan_folder(game), HashCache(cache_file))

    reads: list[str] = []
    real = hashcache._sha256_of_file

    def counting(file: LocalFile, on_bytes: Callable[[int], None], stop: threading.Event) -> str:
        reads.append(file.relative_path)
        return real(file, on_bytes, stop)

    monkeypatch.setattr(hashcache, "_sha256_of_file", counting)
    cache = HashCache(cache_file)  # a new run of the Hub
    again = await hash_files(scan_folder(game), cache)
    assert again == first
    assert reads == []
    assert (cache.stats.hits, cache.stats.misses, cache.stats.bytes_hashed) == (3, 0, 0)

    # Touch one file: only that one is read again.
    target = game / "game.exe"
    target.write_bytes(b"new content")
    third = await hash_files(scan_folder(game), cache)
    assert reads == ["game.exe"]
    assert third["game.exe"] == hashlib.sha256(b"new content").hexdigest()
    assert cache.stats.bytes_hashed == len(b"new content")


async def test_a_file_changed_after_the_scan_is_an_error(game: Path) -> None:
    files = scan_folder(game)
    (game / "game.exe").write_bytes(b"different size now")
    with pytest.raises(FileChangedError, match=r"game\.exe"):
        await hash_files(files, None)


async def test_without_a_cache_and_with_a_damaged_cache(game: Path, tmp_path: Path) -> None:
    assert await hash_files(scan_folder(game), None) == expected_hashes(game)
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json")
    cache = HashCache(damaged)
    assert len(cache) == 0
    assert await hash_files(scan_folder(game), cache) == expected_hashes(game)
    assert len(HashCache(damaged)) == 3


async def test_entries_of_files_gone_from_the_folder_are_dropped(game: Path, tmp_path: Path) -> None:
    from capydeploy.hub.deploy import prepare

    cache_file = tmp_path / "cache" / "hash-cache.json"
    other = tmp_path / "game-2"  # a sibling whose name starts like the game's: must be kept
    other.mkdir()
    (other / "keep.bin").write_bytes(b"other game")
    await hash_files(scan_folder(game) + scan_folder(other), HashCache(cache_file))
    (game / "data" / "big.pak").rename(game / "data" / "renamed.pak")

    files, known = await prepare(game, HashCache(cache_file), hash_uncached=False)
    stored = json.loads(cache_file.read_text())["entries"]
    assert sorted(Path(path).name for path in stored) == ["empty", "game.exe", "keep.bin"]
    assert set(known) == {"empty", "game.exe"}  # the renamed file is hashed again when sent
    assert {f.relative_path for f in files} == {"empty", "game.exe", "data/renamed.pak"}


async def test_entries_that_are_not_lowercase_sha256_hex_are_not_trusted(game: Path, tmp_path: Path) -> None:
    # init_upload is built from cached hashes without validating each one again: the cache must
    # only ever give well-formed ones.
    path = tmp_path / "cache.json"
    files = scan_folder(game)
    cache = HashCache(path)
    await hash_files(files, cache)
    raw = json.loads(path.read_text())
    keys = sorted(raw["entries"])
    raw["entries"][keys[0]][2] = "z" * 64
    raw["entries"][keys[1]][2] = raw["entries"][keys[1]][2].upper()
    path.write_text(json.dumps(raw))
    reloaded = HashCache(path)
    assert len(reloaded) == len(keys) - 2
    assert await hash_files(files, reloaded) == expected_hashes(game)
