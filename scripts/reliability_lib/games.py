"""Versioned test games, digests of installed trees, and shortcuts.vdf checks."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vdf

MiB = 1024 * 1024
EXECUTABLE = "bin/game.x86_64"
Digest = dict[str, tuple[int, str]]  # relative path -> (size, sha256)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(folder: Path) -> Digest | None:
    """Every regular file under `folder` with its size and hash; None when the folder is missing."""
    if not folder.is_dir():
        return None
    result: Digest = {}
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            relative = path.relative_to(folder).as_posix()
            result[relative] = (path.stat().st_size, sha256_file(path))
    return result


def describe_difference(expected: Digest, actual: Digest | None) -> str:
    if actual is None:
        return "the game folder is missing"
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    parts = []
    if missing:
        parts.append(f"missing {missing[:3]}")
    if extra:
        parts.append(f"extra {extra[:3]}")
    if changed:
        parts.append(f"changed {changed[:3]}")
    return "; ".join(parts) or "identical"


def damaged_bytes(expected: Digest, actual: Digest | None) -> int:
    """Bytes of `expected` not present intact in `actual` (the measure of data lost)."""
    if actual is None:
        return sum(size for size, _ in expected.values())
    return sum(size for path, (size, sha) in expected.items() if actual.get(path) != (size, sha))


@dataclass
class GameVersion:
    number: int
    folder: Path
    digest: Digest
    launch_options: str

    @property
    def total(self) -> int:
        return sum(size for size, _ in self.digest.values())

    def needed_after(self, installed: GameVersion | None) -> int:
        """Bytes the Hub must send when `installed` is in place (unchanged files are carried)."""
        old = installed.digest if installed is not None else {}
        return sum(size for path, (size, sha) in self.digest.items() if old.get(path) != (size, sha))


@dataclass
class GameLine:
    """A game that changes from version to version: some files change, some never do.

    Layout (sizes scale with `size`): `bin/game.x86_64` (a script naming the version), `data/big.pak`
    (half the game, new each version), six `data/levels/level<i>.dat` (a random subset changes),
    `data/static.bin` (never changes: carried by the Agent), `empty.cfg` and a file with a
    non-ASCII name.
    """

    root: Path
    size: int
    seed: int
    versions: list[GameVersion] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._current: dict[str, bytes] = {}

    def _bytes(self, count: int) -> bytes:
        return self._rng.randbytes(count)

    def next_version(self) -> GameVersion:
        number = len(self.versions) + 1
        files = self._current
        big = self.size // 2
        level = max(1, self.size * 3 // 10 // 6)
        static = max(1, self.size - big - 6 * level)
        if not files:
            files["data/static.bin"] = self._bytes(static)
            files["empty.cfg"] = b""
            for index in range(6):
                files[f"data/levels/level{index}.dat"] = self._bytes(level + index * 4099)
        else:
            for index in self._rng.sample(range(6), self._rng.randint(1, 3)):
                files[f"data/levels/level{index}.dat"] = self._bytes(level + index * 4099 + self._rng.randint(0, 999))
        files[EXECUTABLE] = f"#!/bin/sh\necho 'fault game version {number}'\n".encode()
        files["data/big.pak"] = self._bytes(big + self._rng.randint(0, MiB))
        files["données/notes ü.txt"] = f"version {number}\n".encode() * (1 + number % 7)
        folder = self.root / f"v{number}"
        digest: Digest = {}
        for relative, data in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            digest[relative] = (len(data), hashlib.sha256(data).hexdigest())
        (folder / EXECUTABLE).chmod(0o755)
        version = GameVersion(number, folder, digest, launch_options=f"--fault-version {number}")
        self.versions.append(version)
        # Keep only the last two source folders on disk.
        if len(self.versions) > 2:
            shutil.rmtree(self.versions[-3].folder, ignore_errors=True)
        return version


# --- shortcuts.vdf ---------------------------------------------------------------------------------


def other_shortcuts() -> bytes:
    """A valid shortcuts.vdf holding two shortcuts that are not ours (they must survive every write)."""

    def entry(app_id: int, name: str, exe: str) -> dict[str, Any]:
        return {
            "appid": app_id - 2**32 if app_id >= 2**31 else app_id,
            "AppName": name,
            "Exe": f'"{exe}"',
            "StartDir": f'"{os.path.dirname(exe)}"',
            "icon": "",
            "ShortcutPath": "",
            "LaunchOptions": "-windowed",
            "IsHidden": 0,
            "AllowDesktopConfig": 1,
            "AllowOverlay": 1,
            "OpenVR": 0,
            "Devkit": 0,
            "DevkitGameID": "",
            "DevkitOverrideAppID": 0,
            "LastPlayTime": 1_700_000_000,
            "FlatpakAppID": "",
            "tags": {"0": "favorite"},
        }

    document = {
        "shortcuts": {
            "0": entry(3_000_000_001, "Other Game", "/usr/games/other"),
            "1": entry(2_900_000_002, "Émulateur", "/opt/emu/run.sh"),
        }
    }
    return bytes(vdf.binary_dumps(document))


def _entries(data: bytes) -> list[dict[str, Any]]:
    top = vdf.binary_loads(data, merge_duplicate_keys=False, raise_on_remaining=True)
    if bytes(vdf.binary_dumps(top)) != data:
        raise ValueError("does not re-encode identically")
    root = top.get("shortcuts")
    if not isinstance(root, dict):
        raise ValueError("no 'shortcuts' map")
    return list(root.values())


def _unquote(text: object) -> str:
    value = str(text)
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def check_vdf_update(
    before: bytes,
    after: bytes,
    *,
    game_name: str,
    exe: Path,
    launch_options: str,
) -> str | None:
    """None when `after` is `before` with our game's shortcut added or updated as asked, else why not.

    Independent of the product's writer: parsed with the `vdf` package, other entries compared
    field by field.
    """
    try:
        old = _entries(before)
    except Exception as error:
        return f"the previous file does not parse ({error})"
    try:
        new = _entries(after)
    except Exception as error:
        return f"the file does not parse: half-written or corrupt ({error})"
    ours = [e for e in new if e.get("AppName") == game_name]
    others_new = [e for e in new if e.get("AppName") != game_name]
    others_old = [e for e in old if e.get("AppName") != game_name]
    if others_new != others_old:
        return "another shortcut changed"
    if len(ours) != 1:
        return f"{len(ours)} entries for {game_name!r}"
    entry = ours[0]
    if _unquote(entry.get("Exe")) != str(exe):
        return f"exe is {entry.get('Exe')!r}, expected {str(exe)!r}"
    if _unquote(entry.get("StartDir")) != str(exe.parent):
        return f"startDir is {entry.get('StartDir')!r}"
    if entry.get("LaunchOptions") != launch_options:
        return f"launch options are {entry.get('LaunchOptions')!r}, expected {launch_options!r}"
    previous = [e for e in old if e.get("AppName") == game_name]
    if previous and previous[0].get("appid") != entry.get("appid"):
        return "the shortcut's appid changed on update"
    return None


def vdf_state(
    before: bytes, after: bytes, *, game_name: str, exe: Path, launch_options: str
) -> tuple[str, str | None]:
    """("unchanged" | "updated" | "bad", reason)."""
    if after == before:
        return "unchanged", None
    reason = check_vdf_update(before, after, game_name=game_name, exe=exe, launch_options=launch_options)
    return ("updated", None) if reason is None else ("bad", reason)


def vdf_app_id(data: bytes, game_name: str) -> int | None:
    for entry in _entries(data):
        if entry.get("AppName") == game_name:
            value = int(entry.get("appid", 0))
            return value + 2**32 if value < 0 else value
    return None


# Corrupt shortcuts.vdf files: each is refused by a strict reader (the product's must agree).
def corruptions(valid: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    cut = rng.randint(1, len(valid) - 2)
    garbage = rng.randbytes(len(valid))
    flipped = bytearray(valid)
    flipped[0] = 0x0F  # an unknown type byte where the root map starts
    return [
        ("empty file", b""),
        ("truncated", valid[:cut]),
        ("final end marker missing", valid[:-1]),
        ("random bytes", b"\x00shortcuts\x00" + garbage),
        ("unknown type byte", bytes(flipped)),
        ("trailing garbage", valid + b"\x00junk\x00\xff\xff"),
        ("text VDF", b'"shortcuts"\n{\n\t"0"\n\t{\n\t\t"AppName"\t"x"\n\t}\n}\n'),
        ("invalid UTF-8 in a name", valid.replace(b"Other Game", b"Other\xff\xfeGam")),
    ]
