"""Payload models of every message of the seed protocol and of the decisions (D2-D8).

camelCase on the wire, snake_case in Python, unknown fields ignored. Optional fields default to
None and are left out when serialised, so a message round-trips to the JSON it came from.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StrictBool,
    StrictInt,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass
from pydantic_core import core_schema

from .constants import MAX_FILES, MAX_TAGS
from .listing import FileListing
from .types import (
    AbsolutePath,
    AppId,
    GameName,
    MessageId,
    Name,
    NonEmptyId,
    NonEmptyName,
    Percentage,
    RelativePath,
    Sha256Hex,
    Size,
    Text,
    Token,
    Url,
    UserId,
    account_id_of,
)


class WireModel(BaseModel):
    """Base of every payload: camelCase aliases, unknown keys ignored, values checked on assignment."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=False,
        # Validators are built on a model's first use, not at import: a CLI run needs only a few of
        # them (start-up time). Validation is the same either way.
        defer_build=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The JSON-ready dict sent on the wire."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Empty(WireModel):
    """A payload with no fields (ping, pong, get_info, ...)."""


# --- connection and authentication (D3) ---------------------------------------------------


class HubConnected(WireModel):
    name: Name
    version: Name
    hub_id: NonEmptyId
    token: Token
    platform: Name | None = None
    protocol_version: StrictInt | None = None


class PairingRequired(WireModel):
    code: Literal[""] = ""  # D3: the code never travels on the wire.
    expires_in: StrictInt = Field(ge=0)


class PairConfirm(WireModel):
    code: Token


class PairSuccess(WireModel):
    token: Token


class PairFailed(WireModel):
    reason: Text


class AgentStatus(WireModel):
    name: Name
    version: Name
    platform: Name
    accept_connections: StrictBool
    protocol_version: StrictInt | None = None
    capabilities: list[Name] | None = None


# --- information ----------------------------------------------------------------------------


class AgentInfo(WireModel):
    id: NonEmptyId
    name: Name
    platform: Name
    capabilities: list[Name]
    version: Name | None = None
    protocol_version: StrictInt | None = None


class InfoResponse(WireModel):
    agent: AgentInfo


class ConfigResponse(WireModel):
    install_path: Text


class SteamUser(WireModel):
    id: str
    name: Name
    account_id: StrictInt | None = None


class SteamUsersResponse(WireModel):
    users: list[SteamUser]


# --- shortcuts and artwork (D5, D7) ---------------------------------------------------------


class ArtworkKey(StrEnum):
    GRID = "grid"
    BANNER = "banner"
    HERO = "hero"
    LOGO = "logo"
    ICON = "icon"


class Artwork(WireModel):
    """Artwork URLs by slot; each is checked and downloaded by the Agent, failing per key."""

    grid: Url | None = None
    banner: Url | None = None
    hero: Url | None = None
    logo: Url | None = None
    icon: Url | None = None

    def items(self) -> list[tuple[ArtworkKey, str]]:
        return [(key, value) for key in ArtworkKey if (value := getattr(self, key.value)) is not None]


class UserRequest(WireModel):
    user_id: UserId

    @property
    def account_id(self) -> int:
        return account_id_of(self.user_id)


class ListShortcuts(UserRequest):
    pass


class ShortcutInfo(WireModel):
    app_id: AppId
    name: Text
    exe: Text
    start_dir: Text | None = None
    launch_options: Text | None = None
    tags: list[Text] | None = None


class ShortcutsResponse(WireModel):
    shortcuts: list[ShortcutInfo]


class ShortcutSpec(WireModel):
    name: NonEmptyName
    exe: AbsolutePath
    start_dir: AbsolutePath | None = None
    launch_options: Text | None = None
    tags: list[Name] | None = Field(default=None, max_length=MAX_TAGS)
    artwork: Artwork | None = None


class CreateShortcut(UserRequest):
    shortcut: ShortcutSpec
    restart_steam: StrictBool | None = None


class DeleteShortcut(UserRequest):
    app_id: AppId
    restart_steam: StrictBool | None = None


class ApplyArtwork(UserRequest):
    app_id: AppId
    artwork: Artwork
    restart_steam: StrictBool | None = None


class ArtworkFailure(WireModel):
    type: Name
    error: Text


class ArtworkResponse(WireModel):
    applied: list[Name]
    failed: list[ArtworkFailure]


class OperationResult(WireModel):
    success: StrictBool
    app_id: AppId | None = None
    path: Text | None = None
    shortcut_error: Text | None = None
    message: Text | None = None
    # Extension `result_sha256` (complete_upload only): the whole-file hashes the Agent computed
    # for files whose hash neither init_upload nor complete_upload gave. Validated into a dict;
    # the Agent's own is a lighter Mapping (its hex digests made as the reply is written).
    sha256: Mapping[RelativePath, Sha256Hex] | None = Field(default=None, max_length=MAX_FILES)


class SteamResponse(WireModel):
    success: StrictBool
    message: Text


class DeleteGame(WireModel):
    """D8 extension: remove a game's shortcut, artwork and folder, by name or by app id."""

    game_name: GameName | None = None
    app_id: AppId | None = None
    user_id: UserId | None = None
    restart_steam: StrictBool | None = None

    @model_validator(mode="after")
    def _name_or_app_id(self) -> DeleteGame:
        if self.game_name is None and self.app_id is None:
            raise ValueError("gameName or appId is required")
        return self


# --- uploads (D6) ---------------------------------------------------------------------------


class UploadConfig(WireModel):
    game_name: GameName
    install_path: AbsolutePath | None = None
    executable: RelativePath | None = None


@dataclass(
    slots=True,
    config=ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", defer_build=True),
)
class UploadFile:
    """One entry of `init_upload.files`. A slotted (pydantic) dataclass rather than a model: a
    list may hold 100 000 of them, and this costs about 64 bytes an entry against 480. Validated
    and serialised like the models (camelCase, unknown keys ignored) as part of `InitUpload`."""

    relative_path: RelativePath
    size: Size
    sha256: Sha256Hex | None = None

    @classmethod
    def unchecked(cls, relative_path: str, size: int, sha256: str | None) -> UploadFile:
        """An entry from values already checked (the Hub's own scan and cache), without
        validation (about 25 us an entry; over 0.5 s for 20 000)."""
        entry = object.__new__(cls)
        entry.relative_path, entry.size, entry.sha256 = relative_path, size, sha256
        return entry


def _listed(sorted_paths: list[str], path: str) -> bool:
    index = bisect.bisect_left(sorted_paths, path)
    return index < len(sorted_paths) and sorted_paths[index] == path


def _first_repeat(files: list[UploadFile]) -> tuple[int, str]:
    """The first entry whose path an earlier entry has (there is one)."""
    seen: set[str] = set()
    for index, entry in enumerate(files):
        if entry.relative_path in seen:
            return index, entry.relative_path
        seen.add(entry.relative_path)
    raise AssertionError("no path is listed twice")


class _ListedFilesSchema:
    """`init_upload.files`: validated as a list of at most MAX_FILES `UploadFile`s (errors name
    `files[i]` as for any list), except a `FileListing`, which passes as it is."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        entries = core_schema.list_schema(handler.generate_schema(UploadFile), max_length=MAX_FILES)
        return core_schema.no_info_wrap_validator_function(_listing_as_it_is, entries)


def _listing_as_it_is(value: Any, validate: core_schema.ValidatorFunctionWrapHandler) -> Any:
    return value if isinstance(value, FileListing) else validate(value)


class InitUpload(WireModel):
    config: UploadConfig
    total_size: Size
    # A list of entries, or on the Agent the columns a long list is read into (see
    # envelope.parse_request_text; each entry was validated as an `UploadFile` on the way).
    files: Annotated[list[UploadFile] | FileListing, _ListedFilesSchema]

    @model_validator(mode="after")
    def _consistent(self) -> InitUpload:
        listing = self.files
        if isinstance(listing, FileListing):
            _check_listing(listing, self.config.executable)
            total = sum(listing.sizes)
        else:
            _check_entries(listing, self.config.executable)
            total = sum(f.size for f in listing)
        if total != self.total_size:
            raise ValueError(f"totalSize {self.total_size} does not equal the sum of file sizes {total}")
        return self


def _check_entries(files: list[UploadFile], executable: str | None) -> None:
    """No path twice, no file that is also a folder, the executable listed: on the sorted paths,
    not in a set (for 100 000 files a set is 6 MB, the list 0.8 MB)."""
    paths = sorted(f.relative_path for f in files)
    if any(path == following for path, following in itertools.pairwise(paths)):
        index, path = _first_repeat(files)
        raise ValueError(f"files[{index}].relativePath {path!r} is listed twice")
    # A file and a folder of the same name cannot both exist ("a" and "a/b").
    for path in paths:
        slash = path.find("/")
        while slash != -1:
            if _listed(paths, path[:slash]):
                raise ValueError(f"relativePath {path[:slash]!r} is both a file and a folder")
            slash = path.find("/", slash + 1)
    if executable is not None and not _listed(paths, executable):
        raise ValueError(f"config.executable {executable!r} is not one of the listed files")


def _check_listing(listing: FileListing, executable: str | None) -> None:
    """The same rules for a list read into columns, through its lookup by path: no sorted copy
    of 100 000 paths (9 MB) beside the list while it is validated. (A list that breaks one is
    parsed again the plain way, whose message is the one reported: envelope.parse_request_text.)"""
    if len(listing) > MAX_FILES:  # (a list of entries is held to it by its schema)
        raise ValueError(f"files: at most {MAX_FILES} files")
    paths = listing.paths
    for row, path in enumerate(paths):
        if paths.index_of(path) != row:  # an earlier row has it
            raise ValueError(f"files[{row}].relativePath {path!r} is listed twice")
        slash = path.find("/")
        while slash != -1:
            if paths.index_of(path[:slash]) is not None:
                raise ValueError(f"relativePath {path[:slash]!r} is both a file and a folder")
            slash = path.find("/", slash + 1)
    if executable is not None and paths.index_of(executable) is None:
        raise ValueError(f"config.executable {executable!r} is not one of the listed files")


class UploadInitResponse(WireModel):
    upload_id: NonEmptyId
    chunk_size: StrictInt = Field(gt=0)
    resume_from: dict[str, Size] | None = None


class ChunkHeader(WireModel):
    id: MessageId
    upload_id: NonEmptyId
    file_path: RelativePath
    offset: Size
    checksum: Sha256Hex | None = None


class UploadChunkResponse(WireModel):
    upload_id: NonEmptyId
    bytes_written: Size
    total_written: Size


class CompleteShortcut(WireModel):
    """The shortcut part of `complete_upload`; `exe` is relative to the installed game folder."""

    name: Name | None = None
    exe: RelativePath | None = None
    launch_options: Text | None = None
    tags: list[Name] | None = Field(default=None, max_length=MAX_TAGS)
    artwork: Artwork | None = None


class CompleteUpload(WireModel):
    upload_id: NonEmptyId
    create_shortcut: StrictBool | None = None
    shortcut: CompleteShortcut | None = None
    user_id: UserId | None = None
    restart_steam: StrictBool | None = None
    # Extension `complete_sha256`: whole-file hashes the Hub computed while sending, for files its
    # init_upload listed without `sha256`; checked like init_upload's and kept in the manifest.
    sha256: dict[RelativePath, Sha256Hex] | None = Field(default=None, max_length=MAX_FILES)


class CancelUpload(WireModel):
    upload_id: NonEmptyId


class UploadProgress(WireModel):
    upload_id: NonEmptyId
    transferred_bytes: Size
    total_bytes: Size
    current_file: Text
    percentage: Percentage


class OperationStatus(StrEnum):
    START = "start"
    PROGRESS = "progress"
    COMPLETE = "complete"
    ERROR = "error"


class OperationEvent(WireModel):
    type: Name
    status: OperationStatus
    game_name: Text
    progress: Percentage
    message: Text


# --- the error object -----------------------------------------------------------------------


class ErrorBody(WireModel):
    code: StrictInt
    message: Text
