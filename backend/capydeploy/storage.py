"""Atomic, private file writes used by agent, steam and hub alike.

A write goes to a temp file in the same folder, is fsynced, then renamed over the target, so a
crash leaves either the old file or the new one, never half of either. A crash (SIGKILL) between
the two can leave the temp file behind: `remove_stale_temp_files` clears such leftovers.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

PRIVATE_FILE_MODE = 0o600
# A temp file younger than this may belong to a write still running (another process): kept.
STALE_TEMP_AGE = 60.0
# mkstemp's random part: 8 characters of this alphabet (tempfile._RandomNameSequence).
_TEMP_RANDOM = r"[a-z0-9_]{8}"
_TEMP_SUFFIX = ".tmp"
# A compact JSON list longer than this is encoded a batch at a time (see atomic_write_json).
COMPACT_JSON_BATCH = 500
_COMPACT_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def fsync_directory(folder: Path) -> None:
    """Make a rename inside `folder` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: Path,
    data: bytes | Iterable[bytes],
    mode: int = 0o644,
    verify: Callable[[Path], None] | None = None,
) -> None:
    """Replace `path` with `data` (bytes, or pieces written in turn) atomically; `verify(temp_path)`
    may raise to abort before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=_TEMP_SUFFIX, dir=path.parent)
    temp_path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                for piece in data:
                    handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_path, mode)
        if verify is not None:
            verify(temp_path)
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp_path.unlink()
        raise
    fsync_directory(path.parent)


def remove_stale_temp_files(
    folder: Path, names: Iterable[str], max_age: float = STALE_TEMP_AGE, now: float | None = None
) -> list[Path]:
    """Delete the temp files that interrupted `atomic_write_bytes` calls on `folder/<name>` left.

    Only regular files named exactly as this module names its temp files (`.<name>.<8 random
    characters>.tmp`) and not modified for `max_age` seconds. Best effort: returns what it removed.
    """
    folder = Path(folder)
    prefixes = "|".join(re.escape(_temp_prefix(folder / name)) for name in names)
    if not prefixes:
        return []
    pattern = re.compile(f"(?:{prefixes}){_TEMP_RANDOM}{re.escape(_TEMP_SUFFIX)}")
    limit = (time.time() if now is None else now) - max_age
    removed: list[Path] = []
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_mtime > limit:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def atomic_write_json(path: Path, value: Any, private: bool = False, compact: bool = False) -> None:
    """Write `value` as JSON atomically; `private` files get mode 0600.

    `compact` is for files that grow with a game's file count (manifests, upload records, the
    Hub's hash cache). The indented form goes through json's pure-Python encoder, which for 20 000
    files held about 20 MB of string pieces at once. The compact form encodes long lists in
    batches with the C encoder and writes each batch as it comes: a few milliseconds per call (one
    call for the whole list holds the GIL, and so the Agent's event loop, for about 75 ms) and
    one batch in memory at a time. In this form a value may also be an iterator, written as a
    list whose items are made a batch at a time.
    """
    if compact:
        atomic_write_bytes(
            path,
            (piece.encode("utf-8") for piece in _compact_json_pieces(value)),
            mode=PRIVATE_FILE_MODE if private else 0o644,
        )
        return
    data = json.dumps(value, indent=2, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, data, mode=PRIVATE_FILE_MODE if private else 0o644)


def _compact_json_pieces(value: Any) -> Iterator[str]:
    """Compact JSON text of `value` in pieces: long lists a batch at a time, the rest whole."""
    if isinstance(value, dict) and value and all(isinstance(key, str) for key in value):
        yield "{"
        for position, (key, item) in enumerate(value.items()):
            yield ("," if position else "") + _COMPACT_ENCODER.encode(key) + ":"
            yield from _compact_json_pieces(item)
        yield "}"
    elif isinstance(value, Iterator) or (isinstance(value, list) and len(value) > COMPACT_JSON_BATCH):
        # A long list, or one made as it is written (a manifest's entries), a batch at a time.
        items = iter(value)
        yield "["
        first = True
        while batch := list(itertools.islice(items, COMPACT_JSON_BATCH)):
            yield ("" if first else ",") + _COMPACT_ENCODER.encode(batch)[1:-1]
            first = False
        yield "]"
    else:
        yield _COMPACT_ENCODER.encode(value)


def read_json(
    path: Path, default: Any, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
) -> Any:
    """Read a JSON file, or return `default` when it is missing or unreadable.

    A file that lists a game's files is read with an `object_pairs_hook` that makes each entry
    its object at once: json.loads of 100 000 entries otherwise makes 100 000 dicts (tens of MB)
    in one call that holds the GIL, and so the Agent's event loop, for 60 ms and more.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=object_pairs_hook)
    except FileNotFoundError:
        return default
    except (OSError, ValueError):
        return default


# How much of a file `read_json_list` reads at a time, and the most it holds at once.
JSON_LIST_BLOCK = 1 << 18
_JSON_LIST_ITEM_MAX = 1 << 20
_JSON_WHITESPACE = " \t\n\r"
_JSON_ITEM_ENDS = ",]" + _JSON_WHITESPACE


class NotAStreamableList(ValueError):
    """The file is not `{...,"key":[items]}` with the list last (or is damaged): read it whole."""


def read_json_list(
    path: Path, key: str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
) -> tuple[dict[str, Any], Generator[Any, None, None]]:
    """Read a JSON object whose last member is a long list (the compact files of
    `atomic_write_json`) a block at a time: its other members, and its list's items one by one.

    `json.loads` of the whole text holds the file's bytes and its text at once (28 MB for the
    manifest of a game of 100 000 files) and then every item; here about `JSON_LIST_BLOCK`
    characters are held. Raises `FileNotFoundError`, `OSError`, or `NotAStreamableList` (also
    while the items are read) when the file is not of that shape or is damaged: the caller then
    reads it the plain way, which decides.
    """
    stream = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the items' generator
    try:
        # Outside a string a quote is never escaped; inside one, every quote is: the member name
        # found can only be a name. Closed as `[]}`, the text before the list parses only if that
        # member is the object's own (not a nested object's).
        name = re.compile(re.escape(json.dumps(key)) + r"\s*:\s*\[")
        text = ""
        while (found := name.search(text)) is None and len(text) <= _JSON_LIST_ITEM_MAX:
            block = stream.read(JSON_LIST_BLOCK)
            if not block:
                break
            text += block
        if not text.lstrip(_JSON_WHITESPACE).startswith("{") or found is None:
            raise NotAStreamableList(f"no {key!r} list near the start")
        start = found.end()
        try:
            members = json.loads(text[:start] + "]}")
        except ValueError:
            raise NotAStreamableList("the members before the list are not an object") from None
        if not isinstance(members, dict):
            raise NotAStreamableList("not an object")
    except BaseException:
        stream.close()
        raise
    decoder = json.JSONDecoder(object_pairs_hook=object_pairs_hook)
    return members, _json_list_items(stream, text, start, decoder)


def _json_list_items(stream: Any, text: str, position: int, decoder: json.JSONDecoder) -> Generator[Any, None, None]:
    with stream:
        reader = _BlockReader(stream, text, position)
        if reader.next_char() == "]":
            reader.position += 1
        else:
            while True:
                yield reader.decode_item(decoder)
                separator = reader.next_char()
                reader.position += 1
                if separator == "]":
                    break
                if separator != ",":
                    raise NotAStreamableList("items not separated by commas")
        if reader.rest().strip(_JSON_WHITESPACE) != "}":
            raise NotAStreamableList("the list is not the object's last member")


class _BlockReader:
    """The text of a file read a block at a time, from `position` on."""

    def __init__(self, stream: Any, text: str, position: int) -> None:
        self._stream = stream
        self.text = text
        self.position = position
        self._at_end = False

    def _read_more(self) -> bool:
        if self._at_end:
            return False
        block = self._stream.read(JSON_LIST_BLOCK)
        if not block:
            self._at_end = True
            return False
        self.text = self.text[self.position :] + block
        self.position = 0
        return True

    def next_char(self) -> str:
        """The next character that is not whitespace, not consumed."""
        while True:
            while self.position < len(self.text) and self.text[self.position] in _JSON_WHITESPACE:
                self.position += 1
            if self.position < len(self.text):
                return self.text[self.position]
            if not self._read_more():
                raise NotAStreamableList("the file ends inside the list")

    def decode_item(self, decoder: json.JSONDecoder) -> Any:
        self.next_char()
        while True:
            try:
                item, end = decoder.raw_decode(self.text, self.position)
            except ValueError:
                item, end = None, -1  # cut by the block's end, or damaged: more text decides
            # An item ends where a separator follows: a number may have been cut short by the
            # block's end ("0." of "0.5" reads as 0).
            if end != -1 and end < len(self.text) and self.text[end] in _JSON_ITEM_ENDS:
                self.position = end
                return item
            if len(self.text) - self.position > _JSON_LIST_ITEM_MAX or not self._read_more():
                raise NotAStreamableList("an item is damaged or too long")

    def rest(self) -> str:
        tail = self.text[self.position :]
        while self._read_more():
            tail = self.text
            if len(tail) > _JSON_LIST_ITEM_MAX:
                raise NotAStreamableList("more after the list")
        return tail
