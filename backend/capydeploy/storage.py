"""Atomic, private file writes used by agent, steam and hub alike.

A write goes to a temp file in the same folder, is fsynced, then renamed over the target, so a
crash leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PRIVATE_FILE_MODE = 0o600


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
    data: bytes,
    mode: int = 0o644,
    verify: Callable[[Path], None] | None = None,
) -> None:
    """Replace `path` with `data` atomically; `verify(temp_path)` may raise to abort before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp_path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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


def atomic_write_json(path: Path, value: Any, private: bool = False) -> None:
    """Write `value` as JSON atomically; `private` files get mode 0600."""
    data = json.dumps(value, indent=2, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, data, mode=PRIVATE_FILE_MODE if private else 0o644)


def read_json(path: Path, default: Any) -> Any:
    """Read a JSON file, or return `default` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError):
        return default
