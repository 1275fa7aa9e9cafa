"""Where a staged upload lives on disk and the small JSON files that describe it.

    <installRoot>/.capydeploy/staging/<uploadId>/
        session.json    who sent what: hub, game, file list (written once, atomically)
        activity.json   when it was last used, for the 24 h expiry (rewritten at most once a minute)
        chunks.log      the journal of written chunks (journal.py)
        tree/           the game's files as they arrive; renamed to <installRoot>/<gameName> at the end
        previous/       the old installed version, only for the instant of the swap
        manifest.json   the new version's manifest, written just before the swap, published after it
        previous-manifest.json  the old version's manifest, set aside for the instant of the swap
        kept.json       a marker: the game's own files were kept in tree/, a retry takes them back (keep.py)

Staging sits inside the install root so the final rename never crosses filesystems.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...protocol.envelope import ListedFile, decode_file_entries, upload_file_adapter
from ...protocol.listing import FileListing
from ...protocol.paths import RESERVED_NAMES, PathRuleError, validate_game_name, validate_relative_path
from ...storage import atomic_write_json, read_json
from .file_table import as_listing

AGENT_DIR_NAME = ".capydeploy"
assert AGENT_DIR_NAME in RESERVED_NAMES  # a game may never be called like our own folder

RECORD_VERSION = 1
_UPLOAD_ID = re.compile(r"^upload-[0-9a-f]{32}$")


def new_upload_id() -> str:
    """128 random bits: an upload id cannot be guessed by another hub."""
    return f"upload-{secrets.token_hex(16)}"


def is_upload_id(name: str) -> bool:
    return _UPLOAD_ID.match(name) is not None


def agent_dir(root: Path) -> Path:
    return root / AGENT_DIR_NAME


def staging_dir(root: Path) -> Path:
    return agent_dir(root) / "staging"


def trash_dir(root: Path) -> Path:
    """Folders renamed here are already gone for the user; deleting their contents may take a while."""
    return agent_dir(root) / "trash"


@dataclass(frozen=True, slots=True)
class StagingLayout:
    root: Path
    upload_id: str

    @property
    def folder(self) -> Path:
        return staging_dir(self.root) / self.upload_id

    @property
    def session_file(self) -> Path:
        return self.folder / "session.json"

    @property
    def activity_file(self) -> Path:
        return self.folder / "activity.json"

    @property
    def journal_file(self) -> Path:
        return self.folder / "chunks.log"

    @property
    def tree(self) -> Path:
        return self.folder / "tree"

    @property
    def previous(self) -> Path:
        return self.folder / "previous"

    @property
    def manifest_file(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def previous_manifest(self) -> Path:
        return self.folder / "previous-manifest.json"

    @property
    def kept_file(self) -> Path:
        return self.folder / "kept.json"


def _wire_entry(relative_path: str, size: int, sha256: str | None) -> dict[str, Any]:
    wire: dict[str, Any] = {"relativePath": relative_path, "size": size}
    if sha256 is not None:
        wire["sha256"] = sha256
    return wire


@dataclass(slots=True)
class SessionRecord:
    """What session.json holds: enough to match a resuming init_upload and to finish the install."""

    upload_id: str
    hub_id: str
    game_name: str
    executable: str | None
    # Columns as read from disk (a staged upload found after a restart may wait a long time to be
    # resumed: no object per file meanwhile); for a live upload, its FileTable (the same facts).
    # facts, and no second object per file).
    files: Sequence[ListedFile]
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "uploadId": self.upload_id,
            "hubId": self.hub_id,
            "gameName": self.game_name,
            "executable": self.executable,
            "createdAt": self.created_at,
            # Made as it is written (compact form): 20 000 dicts at once were 5 MB.
            "files": (_wire_entry(path, size, sha256) for path, size, sha256 in as_listing(self.files).triples()),
        }

    @classmethod
    def from_json(cls, raw: object, upload_id: str) -> SessionRecord:
        """Parse and re-validate (a damaged file must never lead a write outside the staging tree)."""
        if not isinstance(raw, dict) or raw.get("version") != RECORD_VERSION:
            raise ValueError("not a session record of a known version")
        if raw.get("uploadId") != upload_id:
            raise ValueError("session record belongs to another folder")
        hub_id = raw.get("hubId")
        game_name = raw.get("gameName")
        executable = raw.get("executable")
        created_at = raw.get("createdAt")
        files_raw = raw.get("files")
        if not isinstance(hub_id, str) or not hub_id:
            raise ValueError("hubId missing")
        if not isinstance(game_name, str):
            raise ValueError("gameName missing")
        if not isinstance(created_at, int | float):
            raise ValueError("createdAt missing")
        if not isinstance(files_raw, list):
            raise ValueError("files missing")
        try:
            validate_game_name(game_name)
            if executable is not None:
                if not isinstance(executable, str):
                    raise ValueError("executable is not a string")
                validate_relative_path(executable)
            validator = upload_file_adapter()
            files = FileListing.of(validator.validate_python(entry) for entry in files_raw)
        except (PathRuleError, ValidationError) as exc:
            raise ValueError(str(exc)) from None
        return cls(upload_id, hub_id, game_name, executable, files, float(created_at))


def write_session_record(layout: StagingLayout, record: SessionRecord) -> None:
    atomic_write_json(layout.session_file, record.to_json(), compact=True)


def read_session_record(layout: StagingLayout) -> SessionRecord | None:
    raw = read_json(layout.session_file, None, object_pairs_hook=decode_file_entries)
    if raw is None:
        return None
    try:
        return SessionRecord.from_json(raw, layout.upload_id)
    except ValueError:
        return None


def write_activity(layout: StagingLayout, when: float) -> None:
    atomic_write_json(layout.activity_file, {"touchedAt": when})


def read_activity(layout: StagingLayout) -> float | None:
    raw = read_json(layout.activity_file, None)
    if isinstance(raw, dict) and isinstance(raw.get("touchedAt"), int | float):
        return float(raw["touchedAt"])
    return None


def list_staged_ids(root: Path) -> list[str]:
    """Upload ids staged under `root` (folders with any other name are not ours to judge here)."""
    try:
        names = [entry.name for entry in staging_dir(root).iterdir() if entry.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(name for name in names if is_upload_id(name))
