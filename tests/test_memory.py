"""The malloc tuning is applied on glibc Linux and is harmless to call again."""

from __future__ import annotations

import sys

import pytest

from capydeploy.memory import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning only")
def test_tuning_applies_once_and_is_idempotent() -> None:
    first = keep_freed_memory()
    assert first is True
    assert keep_freed_memory() is True


def test_startup_objects_are_frozen_once_by_a_fresh_process() -> None:
    import subprocess

    code = (
        "import gc, capydeploy.memory as m\n"
        "assert gc.get_freeze_count() == 0\n"
        "m.freeze_startup_objects(); first = gc.get_freeze_count()\n"
        "junk = [[] for _ in range(1000)]\n"
        "m.freeze_startup_objects()\n"
        "print(first, gc.get_freeze_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    first, second = int(out[0]), int(out[1])
    assert first > 1000  # the modules' objects, at least
    assert second == first  # a second call freezes nothing new (objects made later stay collectable)
