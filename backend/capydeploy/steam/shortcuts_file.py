"""Safe read-modify-write of one user's binary `shortcuts.vdf` (the rules of guides/steam.md)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import vdf

from ..storage import atomic_write_bytes, remove_stale_temp_files
from .appid import shortcut_app_id, to_signed_int32, to_unsigned_int32

ROOT_KEY: Final = "shortcuts"
# The whole file for "no shortcuts": 00 "shortcuts" 00 08 08.
EMPTY_FILE: Final = b"\x00shortcuts\x00\x08\x08"
DEFAULT_BACKUPS: Final = 3
FIRST_BACKUP_SUFFIX: Final = ".capydeploy-original.bak"

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_REPLACEMENT: Final = "\ufffd"


class ShortcutsFileError(Exception):
    """A shortcuts.vdf that cannot be rewritten without risk; the file was left untouched."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}; the file was left untouched")
        self.path = path
        self.reason = reason


class DuplicateShortcutError(ValueError):
    """A new shortcut whose computed app id is already taken."""


@dataclass(frozen=True)
class Shortcut:
    """One entry as the Agent reports it: unsigned id, `Exe`/`StartDir` without their quotes."""

    app_id: int
    name: str
    exe: str
    start_dir: str
    launch_options: str
    icon: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class NewShortcut:
    """What the Agent writes for a shortcut of its own; paths are plain, quoting happens on write."""

    name: str
    exe: str
    start_dir: str
    launch_options: str = ""
    tags: tuple[str, ...] = ()
    icon: str = ""


def quote_path(path: str) -> str:
    """`Exe`/`StartDir` are stored in double quotes (arguments go in LaunchOptions)."""
    return f'"{path}"'


def unquote_path(field: str) -> str:
    if len(field) >= 2 and field.startswith('"') and field.endswith('"'):
        return field[1:-1]
    return field


def find_key(entry: dict[str, Any], name: str) -> str | None:
    """The key of `entry` that equals `name` case-insensitively (other writers use `appname`, `exe`)."""
    wanted = name.casefold()
    for key in entry:
        if key.casefold() == wanted:
            return key
    return None


def _get_str(entry: dict[str, Any], name: str) -> str:
    key = find_key(entry, name)
    value = entry.get(key) if key is not None else None
    return value if isinstance(value, str) else ""


def _set(entry: dict[str, Any], name: str, value: Any) -> None:
    """Edit the key that exists (keeping its casing and place), else add it with Steam's casing."""
    key = find_key(entry, name)
    entry[key if key is not None else name] = value


def _check_text(value: str, what: str, allow_quote: bool = True) -> None:
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    if not allow_quote and '"' in value:
        raise ValueError(f"{what} contains a double quote, which Steam's quoted path field cannot hold")


def entry_app_id(entry: dict[str, Any]) -> int:
    """The stored id, unsigned. Entries written before Steam stored ids get Steam's legacy CRC id."""
    key = find_key(entry, "appid")
    stored = entry.get(key) if key is not None else None
    if isinstance(stored, int) and _INT32_MIN <= stored <= 2**32 - 1:
        return to_unsigned_int32(stored)
    return shortcut_app_id(_get_str(entry, "Exe"), _get_str(entry, "AppName"))


def entry_to_shortcut(entry: dict[str, Any]) -> Shortcut:
    tags_key = find_key(entry, "tags")
    raw_tags = entry.get(tags_key) if tags_key is not None else None
    tags = (
        tuple(value for value in raw_tags.values() if isinstance(value, str))
        if isinstance(raw_tags, dict)
        else ()
    )
    return Shortcut(
        app_id=entry_app_id(entry),
        name=_get_str(entry, "AppName"),
        exe=unquote_path(_get_str(entry, "Exe")),
        start_dir=unquote_path(_get_str(entry, "StartDir")),
        launch_options=_get_str(entry, "LaunchOptions"),
        icon=_get_str(entry, "icon"),
        tags=tags,
    )


def _tags_map(tags: Iterable[str]) -> dict[str, str]:
    return {str(index): tag for index, tag in enumerate(tags)}


def new_entry(shortcut: NewShortcut) -> tuple[int, dict[str, Any]]:
    """A fresh entry in Steam's field order and casing, with its computed id (unsigned)."""
    _check_text(shortcut.name, "name")
    _check_text(shortcut.exe, "exe", allow_quote=False)
    _check_text(shortcut.start_dir, "startDir", allow_quote=False)
    _check_text(shortcut.launch_options, "launchOptions")
    _check_text(shortcut.icon, "icon")
    for tag in shortcut.tags:
        _check_text(tag, "tag")
    exe_field = quote_path(shortcut.exe)
    # Computed on the exact stored Exe field, quotes included.
    app_id = shortcut_app_id(exe_field, shortcut.name)
    entry: dict[str, Any] = {
        "appid": to_signed_int32(app_id),
        "AppName": shortcut.name,
        "Exe": exe_field,
        "StartDir": quote_path(shortcut.start_dir),
        "icon": shortcut.icon,
        "ShortcutPath": "",
        "LaunchOptions": shortcut.launch_options,
        "IsHidden": 0,
        "AllowDesktopConfig": 1,
        "AllowOverlay": 1,
        "OpenVR": 0,
        "Devkit": 0,
        "DevkitGameID": "",
        "DevkitOverrideAppID": 0,
        "LastPlayTime": 0,
        "FlatpakAppID": "",
        "sortas": "",
        "tags": _tags_map(shortcut.tags),
    }
    return app_id, entry


@dataclass
class _Document:
    top: dict[str, Any]  # every top-level key, in order (normally only "shortcuts")
    root_key: str
    entries: list[dict[str, Any]]


def _first_difference(left: bytes, right: bytes) -> int:
    for offset, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return offset
    return min(len(left), len(right))


def _contains_replacement(value: object) -> bool:
    if isinstance(value, str):
        return _REPLACEMENT in value
    if isinstance(value, dict):
        return any(_contains_replacement(key) or _contains_replacement(item) for key, item in value.items())
    return False


def parse_document(data: bytes, path: Path) -> _Document:
    """Parse strictly: anything the `vdf` package would not write back byte for byte is refused."""
    if data == b"":
        # vdf.binary_loads(b"") returns {} silently; an empty list is 13 bytes, never 0.
        raise ShortcutsFileError(path, "the file is empty (an empty shortcut list is 13 bytes)")
    try:
        top = vdf.binary_loads(data, merge_duplicate_keys=False, raise_on_remaining=True)
    except Exception as error:  # vdf raises SyntaxError, struct.error, UnicodeError...: all mean "corrupt"
        raise ShortcutsFileError(path, f"not a valid binary VDF file ({error})") from error
    root_key = find_key(top, ROOT_KEY)
    if root_key is None:
        raise ShortcutsFileError(path, "the root 'shortcuts' key is missing")
    root = top[root_key]
    if not isinstance(root, dict):
        raise ShortcutsFileError(path, "the root 'shortcuts' key is not a map")
    for key, entry in root.items():
        if not isinstance(entry, dict):
            raise ShortcutsFileError(path, f"shortcut {key!r} is not a map")
    # vdf decodes invalid UTF-8 with replacement characters, drops duplicate keys, turns wide
    # strings into UTF-8 and accepts a missing final end marker: re-encoding would lose bytes.
    try:
        reencoded = vdf.binary_dumps(top)
    except Exception as error:
        raise ShortcutsFileError(path, f"cannot be re-encoded ({error})") from error
    if reencoded != data:
        offset = _first_difference(reencoded, data)
        if _contains_replacement(top):
            reason = f"invalid UTF-8 text near byte {offset}"
        else:
            reason = (
                f"does not re-encode identically (from byte {offset}: a duplicate key, a wide string, "
                "a truncated end or an unusual encoding)"
            )
        raise ShortcutsFileError(path, reason)
    return _Document(top=top, root_key=root_key, entries=list(root.values()))


def _check_encodable(value: object, where: str) -> None:
    """Refuse ints the int32 field cannot hold before `vdf` fails halfway with struct.error."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_encodable(item, f"{where}/{key}")
    elif (
        isinstance(value, int)
        and not isinstance(value, vdf.UINT_64 | vdf.INT_64)
        and not _INT32_MIN <= value <= _INT32_MAX
    ):
        raise ValueError(f"{where} = {value} does not fit a signed 32-bit field")


def encode_document(document: _Document) -> bytes:
    """The file bytes: entries renumbered "0".."n-1", every other key kept in place."""
    root = {str(index): entry for index, entry in enumerate(document.entries)}
    top = {key: (root if key == document.root_key else value) for key, value in document.top.items()}
    _check_encodable(top, "")
    return bytes(vdf.binary_dumps(top))


class ShortcutsFile:
    """One user's shortcuts.vdf, loaded strictly; edits are kept in memory until `save`."""

    def __init__(self, path: Path, document: _Document, original: bytes | None, mode: int) -> None:
        self.path = path
        self._document = document
        self._original = original
        self._mode = mode

    @classmethod
    def load(cls, path: Path) -> ShortcutsFile:
        """Read `path`; a missing file is an empty list, anything unsafe raises ShortcutsFileError."""
        path = Path(path)
        try:
            data = path.read_bytes()
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            return cls(path, _Document(top={ROOT_KEY: {}}, root_key=ROOT_KEY, entries=[]), None, 0o644)
        except OSError as error:
            raise ShortcutsFileError(path, f"cannot be read ({error.strerror or error})") from error
        return cls(path, parse_document(data, path), data, mode)

    @property
    def exists(self) -> bool:
        return self._original is not None

    def shortcuts(self) -> list[Shortcut]:
        return [entry_to_shortcut(entry) for entry in self._document.entries]

    def find(self, app_id: int) -> Shortcut | None:
        entry = self._entry(app_id)
        return entry_to_shortcut(entry) if entry is not None else None

    def find_same(self, name: str, exe: str) -> Shortcut | None:
        """An existing shortcut for the same executable and name (a redeploy), whatever its id."""
        for shortcut in self.shortcuts():
            if shortcut.name == name and shortcut.exe == exe:
                return shortcut
        return None

    def _entry(self, app_id: int) -> dict[str, Any] | None:
        for entry in self._document.entries:
            if entry_app_id(entry) == app_id:
                return entry
        return None

    def add(self, shortcut: NewShortcut) -> int:
        """Append a shortcut and return its (unsigned) app id."""
        app_id, entry = new_entry(shortcut)
        if self._entry(app_id) is not None:
            raise DuplicateShortcutError(f"a shortcut with appId {app_id} already exists")
        self._document.entries.append(entry)
        return app_id

    def upsert(self, shortcut: NewShortcut) -> tuple[int, bool]:
        """Update the same game's shortcut if there is one (its id is kept), else add it.

        Returns `(app_id, created)`. A redeploy must not leave Steam with two identical entries.
        """
        existing = self.find_same(shortcut.name, shortcut.exe)
        if existing is None:
            return self.add(shortcut), True
        existing_id = existing.app_id
        self.update(
            existing_id,
            start_dir=shortcut.start_dir,
            launch_options=shortcut.launch_options,
            tags=shortcut.tags,
            icon=shortcut.icon or None,
        )
        return existing_id, False

    def update(
        self,
        app_id: int,
        *,
        name: str | None = None,
        exe: str | None = None,
        start_dir: str | None = None,
        launch_options: str | None = None,
        tags: Sequence[str] | None = None,
        icon: str | None = None,
    ) -> bool:
        """Change some fields of an existing shortcut (its id is never recomputed); False if unknown."""
        entry = self._entry(app_id)
        if entry is None:
            return False
        if name is not None:
            _check_text(name, "name")
            _set(entry, "AppName", name)
        if exe is not None:
            _check_text(exe, "exe", allow_quote=False)
            _set(entry, "Exe", quote_path(exe))
        if start_dir is not None:
            _check_text(start_dir, "startDir", allow_quote=False)
            _set(entry, "StartDir", quote_path(start_dir))
        if launch_options is not None:
            _check_text(launch_options, "launchOptions")
            _set(entry, "LaunchOptions", launch_options)
        if tags is not None:
            for tag in tags:
                _check_text(tag, "tag")
            _set(entry, "tags", _tags_map(tags))
        if icon is not None:
            _check_text(icon, "icon")
            _set(entry, "icon", icon)
        return True

    def remove(self, app_id: int) -> bool:
        """Remove every entry with this id; the rest are renumbered when saved."""
        kept = [entry for entry in self._document.entries if entry_app_id(entry) != app_id]
        removed = len(kept) != len(self._document.entries)
        self._document.entries = kept
        return removed

    def to_bytes(self) -> bytes:
        try:
            return encode_document(self._document)
        except ValueError as error:
            raise ShortcutsFileError(self.path, f"the new content cannot be encoded ({error})") from error

    def save(self, backups: int = DEFAULT_BACKUPS) -> None:
        """Back up, write a temp file, fsync, re-parse it, then rename it over the file."""
        data = self.to_bytes()
        try:
            current: bytes | None = self.path.read_bytes()
        except FileNotFoundError:
            current = None
        if current != self._original:
            raise ShortcutsFileError(self.path, "it changed on disk since it was read")
        remove_stale_temps(self.path, backups)
        if current is not None:
            write_backups(self.path, current, backups, self._mode)

        def verify(temp_path: Path) -> None:
            written = temp_path.read_bytes()
            if written != data or parse_document(written, temp_path).entries != self._document.entries:
                raise ShortcutsFileError(self.path, "the temp file did not read back as written")

        atomic_write_bytes(self.path, data, mode=self._mode, verify=verify)
        self._original = data


def backup_paths(path: Path, backups: int) -> tuple[Path, list[Path]]:
    """The first-ever backup (kept forever) and the rotating ones, newest first."""
    first = path.with_name(path.name + FIRST_BACKUP_SUFFIX)
    rotating = [path.with_name(f"{path.name}.capydeploy-{index}.bak") for index in range(1, backups + 1)]
    return first, rotating


def remove_stale_temps(path: Path, backups: int) -> list[Path]:
    """Clear the temp files that a write of the file or of its backups, killed before its rename
    (SIGKILL, power loss), left in the folder. Only our own temp names, only older than a minute."""
    first, rotating = backup_paths(path, backups)
    return remove_stale_temp_files(path.parent, [path.name, first.name, *(backup.name for backup in rotating)])


def write_backups(path: Path, data: bytes, backups: int, mode: int) -> None:
    """Keep the file as first found forever, and the last `backups` versions before each write."""
    first, rotating = backup_paths(path, backups)
    if not first.exists():
        atomic_write_bytes(first, data, mode=mode)
    if not rotating:
        return
    with contextlib.suppress(FileNotFoundError):
        rotating[-1].unlink()
    for older, newer in reversed(list(zip(rotating[1:], rotating[:-1], strict=True))):
        with contextlib.suppress(FileNotFoundError):
            os.replace(newer, older)
    atomic_write_bytes(rotating[0], data, mode=mode)
