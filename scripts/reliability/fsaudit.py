"""Watch every file-system change and every outgoing connection this process makes (PEP 578 audit hooks).

    with FsAudit() as audit:
        ... the Agent serves hostile requests ...
    outside = audit.writes_outside([install_dir])
    connects = audit.connections

A hook cannot be removed, so one process-wide hook is installed on first use and does nothing
while no `FsAudit` is active. It records, with the path made absolute and its symlinks resolved at
the moment of the call: opens for writing (`open` with a write mode or O_WRONLY/O_RDWR/O_CREAT/
O_TRUNC/O_APPEND), mkdir, rename/replace, remove/unlink, rmdir, symlink, link, chmod, chown, utime,
truncate and rmtree; and every `socket.connect` address. Worker threads are seen too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.symlink": (1,),  # (src, dst, dir_fd): the link is created at dst
    "os.link": (1,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.truncate": (0,),
    "shutil.rmtree": (0,),
}
_DIR_FD_POSITION = {"os.mkdir": 2, "os.remove": 1, "os.rmdir": 1, "os.chmod": 2, "os.chown": 3, "os.utime": 4}


@dataclass(frozen=True)
class Change:
    event: str
    path: str  # absolute, symlinks resolved at the time of the call
    thread: str


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: list[FsAudit] = field(default_factory=list)
    installed: bool = False


_STATE = _State()


# These follow a symlink in the last component; the others act on the link itself.
_FOLLOWING = frozenset({"open", "os.chmod", "os.chown", "os.utime", "os.truncate"})


def _absolute(path: Any, dir_fd: Any = None, follow: bool = True) -> str | None:
    if isinstance(path, int):
        with contextlib.suppress(OSError):
            return os.readlink(f"/proc/self/fd/{path}")
        return None
    if not isinstance(path, str | bytes | os.PathLike):
        return None
    text = os.fsdecode(path)
    if not os.path.isabs(text):
        base = None
        if isinstance(dir_fd, int):
            with contextlib.suppress(OSError):
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
        text = os.path.join(base or os.getcwd(), text)
    try:
        if follow:
            return os.path.realpath(text)
        head, tail = os.path.split(text.rstrip("/") or "/")
        return os.path.join(os.path.realpath(head), tail)
    except (OSError, ValueError):
        return text


def _hook(event: str, args: tuple[Any, ...]) -> None:
    active = _STATE.active
    if not active:
        return
    if event == "socket.connect":
        address = args[1] if len(args) > 1 else None
        for audit in list(active):
            audit.connections.append(address)
        return
    if event == "open":
        path, mode, flags = (*args, None, None, None)[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and mode is None and flags & _WRITE_FLAGS
        )
        if not writing or path is None:
            return
        paths = [path]
        dir_fd = None
    elif event in _PATH_EVENTS:
        paths = [args[i] for i in _PATH_EVENTS[event] if i < len(args)]
        position = _DIR_FD_POSITION.get(event)
        dir_fd = args[position] if position is not None and position < len(args) else None
        if event == "shutil.rmtree" and len(args) > 1:
            dir_fd = args[1]
    else:
        return
    thread = threading.current_thread().name
    for raw in paths:
        absolute = _absolute(raw, dir_fd, follow=event in _FOLLOWING)
        if absolute is None:
            continue
        for audit in list(active):
            audit.changes.append(Change(event, absolute, thread))


class FsAudit:
    """Records file-system changes and connections while active (a context manager)."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.connections: list[Any] = []

    def __enter__(self) -> FsAudit:
        with _STATE.lock:
            if not _STATE.installed:
                sys.addaudithook(_hook)
                _STATE.installed = True
            _STATE.active.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with _STATE.lock, contextlib.suppress(ValueError):
            _STATE.active.remove(self)

    def writes_outside(self, allowed: Iterable[Path]) -> list[Change]:
        """Changes whose path is not inside one of `allowed` (resolved); compiled bytecode is ignored."""
        roots = [os.path.realpath(root) for root in allowed]
        outside = []
        for change in self.changes:
            if "__pycache__" in change.path or change.path.startswith("/dev/"):
                continue
            if not any(change.path == root or change.path.startswith(root.rstrip("/") + "/") for root in roots):
                outside.append(change)
        return outside
