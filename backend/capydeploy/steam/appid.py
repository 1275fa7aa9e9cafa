"""App ids of non-Steam shortcuts: the CRC id, signed/unsigned int32 forms and the rungameid."""

from __future__ import annotations

import zlib

_HIGH_BIT = 0x80000000
_UINT32 = 0xFFFFFFFF
# The 64-bit "game id" Steam uses in steam://rungameid/ URLs for a shortcut.
_SHORTCUT_GAMEID_TYPE = 0x02000000


def shortcut_app_id(exe_field: str, app_name: str) -> int:
    """The unsigned 32-bit id of a shortcut the Agent writes itself.

    `exe_field` is the exact stored `Exe` string, quotes included. Never use this for a shortcut
    that already exists: Steam assigns its own ids, so an existing id is read, not recomputed.
    """
    return zlib.crc32((exe_field + app_name).encode("utf-8")) | _HIGH_BIT


def to_signed_int32(app_id: int) -> int:
    """The form `vdf.binary_dump` can store (it packs every int32 as signed)."""
    if not 0 <= app_id <= _UINT32:
        raise ValueError(f"app id {app_id} is not an unsigned 32-bit number")
    return app_id - 2**32 if app_id >= 2**31 else app_id


def to_unsigned_int32(stored: int) -> int:
    """The unsigned id reported on the wire (D5) for a stored, possibly negative, int32."""
    if not -(2**31) <= stored <= _UINT32:
        raise ValueError(f"{stored} is not a 32-bit number")
    return stored & _UINT32


def rungameid(app_id: int) -> int:
    """The 64-bit id of `steam://rungameid/<id>` (the type bits go in the low word, not into the app id)."""
    return (to_unsigned_int32(app_id) << 32) | _SHORTCUT_GAMEID_TYPE
