"""Process-wide malloc tuning for the transfer path (glibc only; a no-op elsewhere).

Every 1 MiB chunk allocates a few fresh buffers (the read, the frame, websockets' mask and
parse copies). With glibc's defaults those come from mmap and are handed back to the kernel as
soon as they are freed, so the next chunk faults them in again: about 500 000 page faults and
2 s of system time per GiB on the Hub (docs/performance.md). Keeping freed memory in the heap
removes that for a few MiB of resident memory.

glibc also gives each thread that mallocs an arena of its own, up to 8 per core, and each arena
keeps its own freed memory: with the transfer, hash and `to_thread` pools that is up to a dozen
heaps, each holding what its thread freed. Two arenas are plenty for a handful of worker threads
and lowered the Agent's peak for a game of 20 000 files by about 30 MB (docs/performance.md).

The Agent keeps less than the Hub: besides chunks it receives messages of up to 10 MiB (the file
list of a game of many files) and builds tables as large, which from the heap would stay resident
as scattered free space for the rest of its life; from mmap they go back when freed.
"""

from __future__ import annotations

import ctypes
import gc
from dataclasses import dataclass

from .libc import linux_libc_function

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MallocTuning:
    mmap_threshold: int  # allocations this large come from mmap, and go back to the system when freed
    trim_threshold: int  # freed heap kept at its top instead of returned
    arena_max: int = 2  # the main heap and one shared by the worker threads


# The Hub sends 1 MiB chunks and little else: it keeps what they free.
HUB_TUNING = MallocTuning(mmap_threshold=16 * MiB, trim_threshold=64 * MiB)
# The Agent keeps chunk-sized buffers too (up to 2 MiB), not its large messages and tables; a
# game of 50 000 files peaked 5-10 MB lower (docs/performance.md, seventh session).
AGENT_TUNING = MallocTuning(mmap_threshold=2 * MiB, trim_threshold=16 * MiB)

_applied: MallocTuning | None = None


def keep_freed_memory(tuning: MallocTuning = HUB_TUNING) -> bool:
    """Apply `tuning` once per process (the first call's wins); returns whether one is in effect."""
    global _applied  # noqa: PLW0603 - process-wide, applied once
    if _applied is not None:
        return True
    mallopt = linux_libc_function("mallopt", (ctypes.c_int, ctypes.c_int))
    if mallopt is None:  # not Linux, or not glibc (e.g. musl): nothing to tune
        return False
    if all(
        mallopt(option, value)
        for option, value in (
            (M_MMAP_THRESHOLD, tuning.mmap_threshold),
            (M_TRIM_THRESHOLD, tuning.trim_threshold),
            (M_ARENA_MAX, tuning.arena_max),
        )
    ):
        _applied = tuning
    return _applied is not None


_frozen = False


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, pydantic's schemas, websockets...) out of the cyclic
    GC's reach, once per process.

    A full (generation 2) collection scans every tracked object; with a game of 20 000 files that
    took up to 94 ms on the event loop, half of it spent on objects that live as long as the
    process. Frozen, they are never scanned again (and never freed, which they would not be anyway).
    """
    global _frozen  # noqa: PLW0603 - process-wide, applied once
    if _frozen:
        return
    gc.collect()
    gc.freeze()
    _frozen = True


# A generation-2 threshold no count reaches: full collections run only when asked for.
_NEVER = 1 << 30
_deferring = 0  # how many running Agents asked (tests run several in one process)
_usual_oldest_threshold = 0


def defer_full_collections() -> None:
    """Let the cyclic GC run its young generations as usual, but full collections only when
    `collect_full` is called (the Agent does so once its transfers have been idle a while).

    A full collection scans every tracked object, and holds the GIL, so the event loop, all
    along: with a game of 20 000 files in flight (its staged-file records, the manifest) that
    was 60-115 ms at a time, several times per deploy, the worst stalls of the Agent's loop
    (docs/performance.md). Young collections still free the short-lived cycles; what reaches
    the oldest generation lives through a deploy anyway.
    """
    global _deferring, _usual_oldest_threshold  # noqa: PLW0603 - process-wide, counted
    young, middle, oldest = gc.get_threshold()
    if _deferring == 0:
        _usual_oldest_threshold = oldest
    _deferring += 1
    gc.set_threshold(young, middle, _NEVER)


def resume_full_collections() -> None:
    """Undo one `defer_full_collections` (an Agent that stops); the last one restores the usual."""
    global _deferring  # noqa: PLW0603
    if _deferring == 0:
        return
    _deferring -= 1
    if _deferring == 0:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _usual_oldest_threshold)


def full_collection_due() -> bool:
    """Whether objects reached the oldest generation since the last full collection."""
    return gc.get_count()[2] > 0


def return_free_heap() -> None:
    """Hand the free pages of malloc's heap back to the system (glibc; elsewhere nothing)."""
    trim = linux_libc_function("malloc_trim", (ctypes.c_size_t,))
    if trim is not None:
        trim(0)


def collect_full() -> int:
    """A full collection now, then the freed heap handed back to the system (glibc); the number
    of unreachable objects found.

    `keep_freed_memory` keeps freed memory for the next chunk while a transfer runs; once idle,
    what a game of many files left behind (tens of MB of records) has no reason to stay resident.
    """
    found = gc.collect()
    return_free_heap()
    return found
