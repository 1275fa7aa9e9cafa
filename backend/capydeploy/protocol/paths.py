"""The one validator for names and paths that arrive from the network (D6).

Every `gameName`, `relativePath`, chunk `filePath` and relative shortcut `exe` goes through here,
so that no accepted string can, once joined to a folder, point outside that folder.
"""

from __future__ import annotations

import re

from .constants import MAX_GAME_NAME_BYTES, MAX_PATH_COMPONENT_BYTES, MAX_RELATIVE_PATH_BYTES

# Folders the Agent keeps for itself inside an install root; a game may not take their name.
RESERVED_NAMES = frozenset({".capydeploy"})

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


class PathRuleError(ValueError):
    """A name or path that breaks a rule of D6; the message says which rule."""


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates would become raw bytes through os.fsencode's surrogateescape.
        raise PathRuleError(f"{what} is not valid Unicode (lone surrogate)") from None


def _first_control_character(value: str) -> str | None:
    for char in value:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return char
    return None


def _check_component(component: str, what: str) -> None:
    if component == "":
        raise PathRuleError(f"{what} has an empty component")
    if component in (".", ".."):
        raise PathRuleError(f"{what} has a '{component}' component")
    if len(component.encode("utf-8")) > MAX_PATH_COMPONENT_BYTES:
        raise PathRuleError(f"{what} has a component longer than {MAX_PATH_COMPONENT_BYTES} bytes")


def _check_characters(value: str, what: str) -> None:
    if "\x00" in value:
        raise PathRuleError(f"{what} contains a NUL character")
    if "\\" in value:
        raise PathRuleError(f"{what} contains a backslash")
    bad = _first_control_character(value)
    if bad is not None:
        raise PathRuleError(f"{what} contains the control character U+{ord(bad):04X}")


def validate_game_name(value: str, what: str = "gameName") -> str:
    """Return `value` if it is one safe path component, else raise PathRuleError."""
    if value == "":
        raise PathRuleError(f"{what} is empty")
    raw = _utf8(value, what)
    if len(raw) > MAX_GAME_NAME_BYTES:
        raise PathRuleError(f"{what} is longer than {MAX_GAME_NAME_BYTES} bytes")
    _check_characters(value, what)
    if "/" in value:
        raise PathRuleError(f"{what} contains '/'")
    _check_component(value, what)
    if value in RESERVED_NAMES:
        raise PathRuleError(f"{what} {value!r} is reserved by the Agent")
    return value


def validate_relative_path(value: str, what: str = "relativePath") -> str:
    """Return `value` if it is a safe relative POSIX path, else raise PathRuleError."""
    if value == "":
        raise PathRuleError(f"{what} is empty")
    raw = _utf8(value, what)
    if len(raw) > MAX_RELATIVE_PATH_BYTES:
        raise PathRuleError(f"{what} is longer than {MAX_RELATIVE_PATH_BYTES} bytes")
    _check_characters(value, what)
    if value.startswith("/"):
        raise PathRuleError(f"{what} is absolute (leading '/')")
    if _DRIVE_LETTER.match(value):
        raise PathRuleError(f"{what} starts with a drive letter")
    for component in value.split("/"):
        _check_component(component, what)
    return value


def validate_absolute_path(value: str, what: str = "path") -> str:
    """Shape check for absolute paths on the device (installPath); resolution is the Agent's job."""
    _utf8(value, what)
    if "\x00" in value:
        raise PathRuleError(f"{what} contains a NUL character")
    if not value.startswith("/"):
        raise PathRuleError(f"{what} must be an absolute path")
    if len(value.encode("utf-8")) > MAX_RELATIVE_PATH_BYTES:
        raise PathRuleError(f"{what} is longer than {MAX_RELATIVE_PATH_BYTES} bytes")
    return value
