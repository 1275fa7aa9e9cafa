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
