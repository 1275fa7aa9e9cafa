"""shortcuts.vdf read-modify-write: fidelity, refusals, backups, crash safety, properties."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import vdf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capydeploy.steam.appid import shortcut_app_id, to_signed_int32
from capydeploy.steam.shortcuts_file import (
    EMPTY_FILE,
    DuplicateShortcutError,
    NewShortcut,
    ShortcutsFile,
    ShortcutsFileError,
    backup_paths,
)

HEADER = b"\x00shortcuts\x00"


def steam_entry(appid: int, name: str, exe: str, **extra: Any) -> dict[str, Any]:
    """An entry as Steam writes it (Steam's casing, signed appid)."""
    entry: dict[str, Any] = {
        "appid": to_signed_int32(appid),
        "AppName": name,
        "Exe": f'"{exe}"',
        "StartDir": f'"{os.path.dirname(exe)}/"',
        "icon": "",
        "ShortcutPath": "",
        "LaunchOptions": "",
        "IsHidden": 0,
        "AllowDesktopConfig": 1,
        "AllowOverlay": 1,
        "OpenVR": 0,
        "Devkit": 0,
        "DevkitGameID": "",
        "DevkitOverrideAppID": 0,
        "LastPlayTime": 1700000000,
        "FlatpakAppID": "",
        "sortas": "",
        "tags": {},
    }
    entry.update(extra)
    return entry


def other_tool_entry(name: str, exe: str) -> dict[str, Any]:
    """An entry from another writer: lowercase keys, unknown keys, tags, no `icon` field."""
    return {
        "appid": -123456789,
        "appname": name,
        "exe": exe,  # unquoted, as some tools write it
        "StartDir": "/opt/games",
        "LaunchOptions": "--fullscreen %command%",
        "openvr": 0,
        "CapyUnknownKey": "keep me",
        "SomeNumber": 42,
        "tags": {"0": "favorite", "1": "Ōkami fans"},
    }


def build(entries: list[dict[str, Any]]) -> bytes:
    return bytes(vdf.binary_dumps({"shortcuts": {str(index): entry for index, entry in enumerate(entries)}}))


SAMPLE = [
    steam_entry(3672303389, "Celeste", "/home/deck/Games/Celeste/Celeste.exe"),
    other_tool_entry("Ōkami HD", "/opt/games/okami/okami"),
    steam_entry(
        0xFFFFFFF0, "Steam-made", "/usr/bin/retroarch", LaunchOptions="-L core.so", tags={"0": "Emulators"}
    ),
]


def entry_bodies(data: bytes) -> list[bytes]:
    """Each entry's bytes after its index key, located by walking the file (and checked against it)."""
    document = vdf.binary_loads(data)
    offset = len(HEADER)
    assert data[:offset] == HEADER
    bodies = []
    for key, entry in document["shortcuts"].items():
        head = b"\x00" + key.encode() + b"\x00"
        assert data[offset : offset + len(head)] == head
        offset += len(head)
        body = bytes(vdf.binary_dumps(entry))
        assert data[offset : offset + len(body)] == body
        bodies.append(body)
        offset += len(body)
    assert data[offset:] == b"\x08\x08"
    return bodies


def keys_of(data: bytes) -> list[str]:
    return list(vdf.binary_loads(data)["shortcuts"])


@pytest.fixture
def shortcuts_path(tmp_path: Path) -> Path:
    folder = tmp_path / "userdata/52079950/config"
    folder.mkdir(parents=True)
    return folder / "shortcuts.vdf"


def test_empty_list_is_the_guides_13_bytes() -> None:
    assert bytes.fromhex("00 73 68 6f 72 74 63 75 74 73 00 08 08") == EMPTY_FILE
    assert vdf.binary_dumps({"shortcuts": {}}) == EMPTY_FILE


def test_missing_file_means_no_shortcuts_yet(shortcuts_path: Path) -> None:
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    assert shortcuts_file.shortcuts() == []
    assert shortcuts_file.exists is False
    app_id = shortcuts_file.add(
        NewShortcut(
            name="Celeste",
            exe="/home/deck/Games/Celeste/Celeste.exe",
            start_dir="/home/deck/Games/Celeste/",
            tags=("Indie",),
        )
    )
    assert app_id == 3672303389  # the guide's vector: computed on the quoted Exe field
    shortcuts_file.save()
    stored = vdf.binary_loads(shortcuts_path.read_bytes())["shortcuts"]["0"]
    assert stored["appid"] == -622663907
    assert stored["Exe"] == '"/home/deck/Games/Celeste/Celeste.exe"'
    assert stored["StartDir"] == '"/home/deck/Games/Celeste/"'
    assert stored["tags"] == {"0": "Indie"}
    assert list(stored)[:4] == ["appid", "AppName", "Exe", "StartDir"]
    # Nothing existed to back up.
    first, rotating = backup_paths(shortcuts_path, 3)
    assert not first.exists()
    assert not any(path.exists() for path in rotating)


def test_the_13_byte_empty_file_is_valid(shortcuts_path: Path) -> None:
    shortcuts_path.write_bytes(EMPTY_FILE)
    assert ShortcutsFile.load(shortcuts_path).shortcuts() == []


def test_listing_unquotes_paths_and_reads_stored_ids(shortcuts_path: Path) -> None:
    legacy = {
        "AppName": "Old",
        "Exe": '"/old/game"',
        "StartDir": '"/old/"',
    }  # written before Steam stored ids
    shortcuts_path.write_bytes(build([*SAMPLE, legacy]))
    listed = ShortcutsFile.load(shortcuts_path).shortcuts()
    celeste, okami, steam_made, old = listed
    assert (celeste.app_id, celeste.name, celeste.exe, celeste.start_dir) == (
        3672303389,
        "Celeste",
        "/home/deck/Games/Celeste/Celeste.exe",
        "/home/deck/Games/Celeste/",
    )
    # Lowercase keys are read; the stored id is reported unsigned, never recomputed.
    assert okami.name == "Ōkami HD"
    assert okami.exe == "/opt/games/okami/okami"
    assert okami.app_id == -123456789 & 0xFFFFFFFF
    assert okami.tags == ("favorite", "Ōkami fans")
    assert okami.launch_options == "--fullscreen %command%"
    assert steam_made.app_id == 0xFFFFFFF0
    assert steam_made.app_id != shortcut_app_id('"/usr/bin/retroarch"', "Steam-made")
    assert old.app_id == shortcut_app_id('"/old/game"', "Old")


def test_adding_keeps_every_entry_byte_identical(shortcuts_path: Path) -> None:
    original = build(SAMPLE)
    shortcuts_path.write_bytes(original)
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    shortcuts_file.add(
        NewShortcut(name="New", exe="/home/deck/Games/New/new.x86_64", start_dir="/home/deck/Games/New")
    )
    shortcuts_file.save()
    rewritten = shortcuts_path.read_bytes()
    assert entry_bodies(rewritten)[:3] == entry_bodies(original)
    assert keys_of(rewritten) == ["0", "1", "2", "3"]
    # Unknown keys, order and casing of the other tool's entry are intact.
    okami = vdf.binary_loads(rewritten)["shortcuts"]["1"]
    assert list(okami) == list(SAMPLE[1])


def test_deleting_renumbers_and_keeps_the_rest_byte_identical(shortcuts_path: Path) -> None:
    original = build(SAMPLE)
    shortcuts_path.write_bytes(original)
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    assert shortcuts_file.remove(-123456789 & 0xFFFFFFFF) is True
    assert shortcuts_file.remove(12345) is False
    shortcuts_file.save()
    rewritten = shortcuts_path.read_bytes()
    before = entry_bodies(original)
    assert keys_of(rewritten) == ["0", "1"]
    assert entry_bodies(rewritten) == [before[0], before[2]]


def test_edits_go_to_the_key_that_exists(shortcuts_path: Path) -> None:
    original = build(SAMPLE)
    shortcuts_path.write_bytes(original)
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    okami_id = -123456789 & 0xFFFFFFFF
    assert shortcuts_file.update(okami_id, name="Okami", exe="/opt/okami/run", icon="/grid/x_icon.png")
    shortcuts_file.save()
    rewritten = shortcuts_path.read_bytes()
    entry = vdf.binary_loads(rewritten)["shortcuts"]["1"]
    assert entry["appname"] == "Okami"
    assert entry["exe"] == '"/opt/okami/run"'
    assert "AppName" not in entry
    assert "Exe" not in entry
    # A missing field is created with Steam's casing, at the end.
    assert list(entry)[-1] == "icon"
    assert entry["icon"] == "/grid/x_icon.png"
    # The id stays what was stored, though Exe and name changed.
    assert entry["appid"] == -123456789
    bodies = entry_bodies(rewritten)
    assert [bodies[0], bodies[2]] == [entry_bodies(original)[0], entry_bodies(original)[2]]


def test_a_redeploy_updates_the_same_shortcut(shortcuts_path: Path) -> None:
    shortcuts_path.write_bytes(build(SAMPLE))
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    game = NewShortcut(name="Steam-made", exe="/usr/bin/retroarch", start_dir="/usr/bin", launch_options="-v")
    app_id, created = shortcuts_file.upsert(game)
    # Same exe and name as an entry Steam made: its id is kept, nothing is added.
    assert (app_id, created) == (0xFFFFFFF0, False)
    assert len(shortcuts_file.shortcuts()) == 3
    found = shortcuts_file.find(app_id)
    assert found is not None
    assert found.launch_options == "-v"
    new_id, created = shortcuts_file.upsert(NewShortcut(name="Fresh", exe="/games/fresh", start_dir="/games"))
    assert created is True
    assert new_id == shortcut_app_id('"/games/fresh"', "Fresh")


def test_a_colliding_new_id_is_refused(shortcuts_path: Path) -> None:
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    game = NewShortcut(name="A", exe="/a", start_dir="/")
    shortcuts_file.add(game)
    with pytest.raises(DuplicateShortcutError):
        shortcuts_file.add(game)


@pytest.mark.parametrize(
    "shortcut",
    [
        NewShortcut(name="x", exe='/games/"quoted"', start_dir="/games"),
        NewShortcut(name="x", exe="/games/x", start_dir='/g"'),
        NewShortcut(name="x\x00y", exe="/games/x", start_dir="/games"),
        NewShortcut(name="x", exe="/games/x", start_dir="/games", tags=("a\x00",)),
    ],
)
def test_values_steam_cannot_hold_are_refused(shortcuts_path: Path, shortcut: NewShortcut) -> None:
    with pytest.raises(ValueError):
        ShortcutsFile.load(shortcuts_path).add(shortcut)


def _hand_built(body: bytes) -> bytes:
    return HEADER + b"\x000\x00" + body + b"\x08\x08\x08"


VALID = build(SAMPLE)
CORRUPT_FILES = {
    "empty": b"",
    "trailing bytes": VALID + b"\x00",
    "missing final end marker": VALID[:-1],
    "invalid UTF-8 value": _hand_built(b"\x01AppName\x00Caf\xe9\x00"),
    "invalid UTF-8 key": _hand_built(b"\x01App\xffName\x00Cafe\x00"),
    "missing root key": bytes(vdf.binary_dumps({"shortcutz": {}})),
    "root not a map": bytes(vdf.binary_dumps({"shortcuts": "nope"})),
    "entry not a map": bytes(vdf.binary_dumps({"shortcuts": {"0": "nope"}})),
    "duplicate key": _hand_built(b"\x01AppName\x00A\x00\x01AppName\x00B\x00"),
    "wide string": _hand_built(b"\x05AppName\x00" + "hé".encode("utf-16-le") + b"\x00\x00"),
    "unknown type": _hand_built(b"\x09AppName\x00"),
    "garbage": b"this is not a vdf file",
    "truncated int": VALID[: VALID.index(b"appid") + 8],
}


def _folder_listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize("name", sorted(CORRUPT_FILES))
def test_unsafe_files_are_refused_and_left_untouched(shortcuts_path: Path, name: str) -> None:
    data = CORRUPT_FILES[name]
    shortcuts_path.write_bytes(data)
    before = _folder_listing(shortcuts_path.parent)
    with pytest.raises(ShortcutsFileError) as caught:
        ShortcutsFile.load(shortcuts_path)
    assert "left untouched" in str(caught.value)
    assert shortcuts_path.read_bytes() == data
    assert _folder_listing(shortcuts_path.parent) == before


def test_invalid_utf8_is_named(shortcuts_path: Path) -> None:
    shortcuts_path.write_bytes(CORRUPT_FILES["invalid UTF-8 value"])
    with pytest.raises(ShortcutsFileError, match="invalid UTF-8"):
        ShortcutsFile.load(shortcuts_path)


def test_every_truncation_is_refused(shortcuts_path: Path) -> None:
    for cut in range(len(VALID)):
        shortcuts_path.write_bytes(VALID[:cut])
        with pytest.raises(ShortcutsFileError):
            ShortcutsFile.load(shortcuts_path)


def test_a_real_replacement_character_is_fine(shortcuts_path: Path) -> None:
    data = build([steam_entry(5, "Name \ufffd", "/x")])
    shortcuts_path.write_bytes(data)
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    assert shortcuts_file.shortcuts()[0].name == "Name \ufffd"
    shortcuts_file.save()
    assert shortcuts_path.read_bytes() == data


def test_backups_first_kept_forever_and_rotation_bounded(shortcuts_path: Path) -> None:
    original = build(SAMPLE)
    shortcuts_path.write_bytes(original)
    first, rotating = backup_paths(shortcuts_path, 3)
    versions = [original]
    for round_number in range(5):
        shortcuts_file = ShortcutsFile.load(shortcuts_path)
        shortcuts_file.add(NewShortcut(name=f"Game {round_number}", exe=f"/g/{round_number}", start_dir="/g"))
        shortcuts_file.save(backups=3)
        versions.append(shortcuts_path.read_bytes())
        assert first.read_bytes() == original
    # Newest backup first: each holds the file as it was before one of the last three writes.
    assert [path.read_bytes() for path in rotating] == [versions[-2], versions[-3], versions[-4]]
    backups = [name for name in _folder_listing(shortcuts_path.parent) if name.endswith(".bak")]
    assert len(backups) == 4
    assert not shortcuts_path.with_name("shortcuts.vdf.capydeploy-4.bak").exists()


def test_a_crash_before_the_rename_leaves_the_old_file(
    shortcuts_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = build(SAMPLE)
    shortcuts_path.write_bytes(original)
    real_replace = os.replace

    def crash_on_target(source: Any, target: Any) -> None:
        if Path(target) == shortcuts_path:
            raise OSError("simulated power loss")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_on_target)
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    shortcuts_file.add(NewShortcut(name="Lost", exe="/g/lost", start_dir="/g"))
    with pytest.raises(OSError, match="simulated"):
        shortcuts_file.save()
    assert shortcuts_path.read_bytes() == original
    assert not [name for name in _folder_listing(shortcuts_path.parent) if name.endswith(".tmp")]


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old), follow_symlinks=False)


def test_a_sigkill_inside_the_atomic_write_leaves_a_temp_file_the_next_write_clears(shortcuts_path: Path) -> None:
    original = build(SAMPLE)
    shortcuts_path.write_bytes(original)
    # A real process killed with SIGKILL after its temp file is written and fsynced, before the rename.
    child = subprocess.run(
        [
            sys.executable, "-c",
            "import os, signal, sys\n"
            "from pathlib import Path\n"
            "from capydeploy.storage import atomic_write_bytes\n"
            "atomic_write_bytes(Path(sys.argv[1]), b'half', verify=lambda _: os.kill(os.getpid(), signal.SIGKILL))\n",
            str(shortcuts_path),
        ],
        check=False, timeout=60,
    )
    assert child.returncode == -signal.SIGKILL
    leftovers = [p for p in shortcuts_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".shortcuts.vdf.")
    assert shortcuts_path.read_bytes() == original

    # A young temp file may be a write still running elsewhere: kept. A minute later: cleared.
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    shortcuts_file.add(NewShortcut(name="One", exe="/g/one", start_dir="/g"))
    shortcuts_file.save()
    assert leftovers[0].exists()
    _age(leftovers[0], 120)
    shortcuts_file.add(NewShortcut(name="Two", exe="/g/two", start_dir="/g"))
    shortcuts_file.save()
    assert not leftovers[0].exists()
    assert not [name for name in _folder_listing(shortcuts_path.parent) if name.endswith(".tmp")]
    assert [s.name for s in ShortcutsFile.load(shortcuts_path).shortcuts()][-2:] == ["One", "Two"]


def test_only_our_own_stale_temp_files_are_removed(shortcuts_path: Path) -> None:
    shortcuts_path.write_bytes(build(SAMPLE))
    folder = shortcuts_path.parent
    stale = [folder / ".shortcuts.vdf.ab_d1234.tmp", folder / ".shortcuts.vdf.capydeploy-1.bak.zz9yy000.tmp"]
    kept = [
        folder / ".shortcuts.vdf.toolong12345.tmp",  # not mkstemp's 8 random characters
        folder / ".shortcuts.vdf.ABCD1234.tmp",  # mkstemp draws lowercase only
        folder / ".localconfig.vdf.abcd1234.tmp",  # another file's temp
        folder / "shortcuts.vdf.abcd1234.tmp",  # no leading dot
        folder / ".shortcuts.vdf.abcd1234.tmp.keep",
    ]
    for path in (*stale, *kept):
        path.write_bytes(b"x")
        _age(path, 3600)
    young = folder / ".shortcuts.vdf.young123.tmp"
    young.write_bytes(b"x")
    a_folder = folder / ".shortcuts.vdf.folder12.tmp"
    a_folder.mkdir()
    a_link = folder / ".shortcuts.vdf.symlink1.tmp"
    a_link.symlink_to(folder / "localconfig.vdf")
    for path in (a_folder, a_link):
        _age(path, 3600)

    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    shortcuts_file.add(NewShortcut(name="New", exe="/g/new", start_dir="/g"))
    shortcuts_file.save(backups=3)

    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in (*kept, young, a_folder))
    assert a_link.is_symlink()


def test_a_file_changed_since_loading_is_not_overwritten(shortcuts_path: Path) -> None:
    shortcuts_path.write_bytes(build(SAMPLE))
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    changed_by_steam = build(SAMPLE[:1])
    shortcuts_path.write_bytes(changed_by_steam)
    shortcuts_file.add(NewShortcut(name="X", exe="/x", start_dir="/"))
    with pytest.raises(ShortcutsFileError, match="changed on disk"):
        shortcuts_file.save()
    assert shortcuts_path.read_bytes() == changed_by_steam


def test_an_int_out_of_int32_range_is_refused_before_writing(shortcuts_path: Path) -> None:
    original = build(SAMPLE)
    shortcuts_path.write_bytes(original)
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    # No public call stores such a value; reach in to prove the encoder refuses it cleanly.
    shortcuts_file._document.entries[0]["LastPlayTime"] = 2**31
    with pytest.raises(ShortcutsFileError, match="signed 32-bit"):
        shortcuts_file.save()
    assert shortcuts_path.read_bytes() == original


def test_other_top_level_keys_are_kept(shortcuts_path: Path) -> None:
    data = bytes(vdf.binary_dumps({"shortcuts": {"0": SAMPLE[0]}, "extra": {"k": "v"}}))
    shortcuts_path.write_bytes(data)
    shortcuts_file = ShortcutsFile.load(shortcuts_path)
    shortcuts_file.add(NewShortcut(name="X", exe="/x", start_dir="/"))
    shortcuts_file.save()
    assert list(vdf.binary_loads(shortcuts_path.read_bytes())) == ["shortcuts", "extra"]


# --- properties ----------------------------------------------------------------------------------

names = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), names),
        st.tuples(st.just("delete"), st.integers(min_value=0, max_value=10)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=st.integers(min_value=0, max_value=len(SAMPLE)), ops=operations)
def test_add_delete_sequences_keep_the_file_sound(initial: int, ops: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "shortcuts.vdf"
        start = build(SAMPLE[:initial]) if initial else None
        if start is not None:
            path.write_bytes(start)
        # The model: (app id, the entry's original bytes or None for entries we added), in order.
        model: list[tuple[int, bytes | None]] = []
        if start is not None:
            ids = [shortcut.app_id for shortcut in ShortcutsFile.load(path).shortcuts()]
            model = list(zip(ids, entry_bodies(start), strict=True))
        for step, (kind, value) in enumerate(ops):
            shortcuts_file = ShortcutsFile.load(path)
            if kind == "add":
                app_id = shortcuts_file.add(
                    NewShortcut(name=value, exe=f"/games/{step}/run", start_dir="/games")
                )
                model.append((app_id, None))
            elif model:
                index = value % len(model)
                assert shortcuts_file.remove(model[index][0])
                del model[index]
            else:
                assert not shortcuts_file.remove(value)
            shortcuts_file.save()
            data = path.read_bytes()
            assert keys_of(data) == [str(index) for index in range(len(model))]
            assert [shortcut.app_id for shortcut in ShortcutsFile.load(path).shortcuts()] == [
                i for i, _ in model
            ]
            bodies = entry_bodies(data)
            for (_, original_body), body in zip(model, bodies, strict=True):
                if original_body is not None:
                    assert body == original_body


def _mutations() -> st.SearchStrategy[bytes]:
    positions = st.integers(min_value=0, max_value=len(VALID) - 1)
    flip = st.tuples(positions, st.integers(min_value=0, max_value=255)).map(
        lambda change: VALID[: change[0]] + bytes([change[1]]) + VALID[change[0] + 1 :]
    )
    drop = positions.map(lambda at: VALID[:at] + VALID[at + 1 :])
    insert = st.tuples(positions, st.binary(min_size=1, max_size=3)).map(
        lambda change: VALID[: change[0]] + change[1] + VALID[change[0] :]
    )
    return st.one_of(flip, drop, insert, st.binary(max_size=64))


@settings(max_examples=300, deadline=None)
@given(data=_mutations())
def test_damaged_files_are_refused_or_round_trip_exactly(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "shortcuts.vdf"
        path.write_bytes(data)
        try:
            ShortcutsFile.load(path)
        except ShortcutsFileError:
            assert path.read_bytes() == data
            return
        # Whatever was accepted re-encodes to the very same bytes: nothing can be lost.
        assert vdf.binary_dumps(vdf.binary_loads(data)) == data
