"""Reusable constrained field types for the message models."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt, StrictStr

from .constants import (
    MAX_FILE_SIZE,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TOKEN_LENGTH,
    MAX_URL_LENGTH,
    STEAMID64_BASE,
    UINT32_MAX,
)
from .paths import validate_absolute_path, validate_game_name, validate_relative_path

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_DIGITS = re.compile(r"[0-9]{1,20}")  # used with fullmatch


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _sha256(value: str) -> str:
    if not _SHA256_HEX.match(value):
        raise ValueError("must be 64 hexadecimal characters (SHA-256)")
    lowered = value.lower()
    return value if lowered == value else lowered  # one string, not two, per hash of a big list


def account_id_of(user_id: int | str) -> int:
    """Map any accepted `userId` form (D5) to the 32-bit account id (the userdata folder name).

    A JSON number or a string of 1-20 ASCII digits, whose value is an account id 1 ... 2^32-1 or the
    SteamID64 of an individual account (base + account id). Anything else raises ValueError: a bool
    (a JSON `true` is no id), other types, signs, spaces, non-ASCII digits, 0, out-of-range values.
    """
    if isinstance(user_id, bool) or not isinstance(user_id, int | str):
        raise ValueError("must be a SteamID64 or an account id, as a number or a string of digits")
    if isinstance(user_id, str) and not _DIGITS.fullmatch(user_id):
        raise ValueError("must be a SteamID64 or an account id, written in decimal digits")
    number = int(user_id)
    if 1 <= number <= UINT32_MAX:
        return number
    if STEAMID64_BASE + 1 <= number <= STEAMID64_BASE + UINT32_MAX:
        return number - STEAMID64_BASE
    raise ValueError("is neither a 32-bit account id nor a SteamID64 of an individual account")


def _user_id(value: int | str) -> int | str:
    account_id_of(value)  # raises for anything D5 does not accept
    return value


Text = Annotated[StrictStr, Field(max_length=MAX_TEXT_LENGTH), AfterValidator(_no_nul)]
Name = Annotated[StrictStr, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_no_nul)]
NonEmptyName = Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_no_nul)]
MessageId = Annotated[StrictStr, Field(max_length=MAX_ID_LENGTH)]
NonEmptyId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_no_nul)]
Token = Annotated[StrictStr, Field(max_length=MAX_TOKEN_LENGTH)]
Url = Annotated[StrictStr, Field(max_length=MAX_URL_LENGTH), AfterValidator(_no_nul)]
Sha256Hex = Annotated[StrictStr, AfterValidator(_sha256)]
Size = Annotated[StrictInt, Field(ge=0, le=MAX_FILE_SIZE)]
AppId = Annotated[StrictInt, Field(ge=0, le=UINT32_MAX)]
UserId = Annotated[StrictInt | StrictStr, AfterValidator(_user_id)]
GameName = Annotated[StrictStr, AfterValidator(validate_game_name)]
def _relative_path(value: str) -> str:
    # The error's location already names the field (relativePath, filePath, executable, exe).
    return validate_relative_path(value, "the path")


RelativePath = Annotated[StrictStr, AfterValidator(_relative_path)]
AbsolutePath = Annotated[StrictStr, AfterValidator(validate_absolute_path)]
Percentage = Annotated[float, Field(ge=0, le=100)]

__all__ = [
    "AbsolutePath",
    "AppId",
    "GameName",
    "MessageId",
    "Name",
    "NonEmptyId",
    "NonEmptyName",
    "Percentage",
    "RelativePath",
    "Sha256Hex",
    "Size",
    "Text",
    "Token",
    "Url",
    "UserId",
    "account_id_of",
]
