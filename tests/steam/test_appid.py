"""App ids: the guide's test vectors, signed/unsigned forms, rungameid."""

from __future__ import annotations

import pytest
import vdf

from capydeploy.steam.appid import rungameid, shortcut_app_id, to_signed_int32, to_unsigned_int32

# (Exe field exactly as stored, AppName, unsigned id, stored int32) from guides/steam.md.
VECTORS = [
    ('"/home/deck/Games/Celeste/Celeste.exe"', "Celeste", 3672303389, -622663907),
    ("/home/deck/Games/Celeste/Celeste.exe", "Celeste", 3012112805, -1282854491),
    ("/path/to/Celeste.exe", "Celeste", 3790693748, -504273548),
    ('"/home/deck/Games/Ōkami HD/okami.exe"', "Ōkami HD", 4083350720, -211616576),
    ("B", "A", 2186104446, -2108862850),
    ("A", "A", 2841648573, -1453318723),
    ("", "", 2147483648, -2147483648),
    ("/usr/bin/game", "My Test Game", 3058382522, -1236584774),
]


@pytest.mark.parametrize(("exe", "name", "unsigned", "signed"), VECTORS)
def test_guide_vectors(exe: str, name: str, unsigned: int, signed: int) -> None:
    assert shortcut_app_id(exe, name) == unsigned
    assert to_signed_int32(unsigned) == signed
    assert to_unsigned_int32(signed) == unsigned


@pytest.mark.parametrize(("exe", "name", "unsigned", "signed"), VECTORS)
def test_the_signed_form_is_what_vdf_can_store(exe: str, name: str, unsigned: int, signed: int) -> None:
    stored = vdf.binary_loads(vdf.binary_dumps({"s": {"appid": to_signed_int32(unsigned)}}))
    assert to_unsigned_int32(stored["s"]["appid"]) == unsigned


def test_vdf_refuses_the_unsigned_form() -> None:
    import struct

    with pytest.raises(struct.error):
        vdf.binary_dumps({"s": {"appid": 3672303389}})


def test_ids_always_have_the_high_bit() -> None:
    assert shortcut_app_id("x", "y") & 0x80000000


def test_small_ids_are_unchanged() -> None:
    assert to_signed_int32(7) == 7
    assert to_unsigned_int32(7) == 7


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_to_signed_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="unsigned 32-bit"):
        to_signed_int32(bad)


@pytest.mark.parametrize("bad", [-(2**31) - 1, 2**32])
def test_to_unsigned_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="32-bit"):
        to_unsigned_int32(bad)


def test_rungameid() -> None:
    assert rungameid(3672303389) == 15772422956778520576
    # The stored (negative) form gives the same URL id.
    assert rungameid(-622663907) == 15772422956778520576
