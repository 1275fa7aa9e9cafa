"""C library functions the os module does not expose (Linux only), through ctypes."""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable
from typing import Any


@functools.cache
def linux_libc_function(
    name: str, argtypes: tuple[type[ctypes._SimpleCData[Any]], ...]
) -> Callable[..., int] | None:
    """`name` from the C library (int result, errno kept), or None off Linux or where the C
    library lacks it (musl has no mallopt, for one). Looked up once per name."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]
