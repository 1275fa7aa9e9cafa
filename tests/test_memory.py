"""The malloc tuning is applied on glibc Linux and is harmless to call again."""

from __future__ import annotations

import os
import sys

import pytest

from capydeploy.memory import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning only")
def test_tuning_applies_once_and_is_idempotent() -> None:
    first = keep_freed_memory()
    assert first is True
    assert keep_freed_memory() is True


_COUNT_ARENAS = """
import ctypes, os, sys, tempfile, threading
import capydeploy.memory as m
if sys.argv[1] == "tuned":
    assert m.keep_freed_memory()
alive = threading.Barrier(9)
def work():
    kept = [bytearray(200_000) for _ in range(4)]  # > 512 bytes: from malloc, not pymalloc
    alive.wait()  # every thread holds its memory at once
    alive.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
alive.wait()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
path = os.path.join(tempfile.mkdtemp(), "malloc.xml")
stream = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
libc.malloc_info(0, stream)
libc.fclose(stream)
alive.wait()
for thread in threads:
    thread.join()
print(open(path).read().count("<heap nr="))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning only")
def test_worker_threads_share_two_arenas() -> None:
    import subprocess

    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}

    def arenas(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", _COUNT_ARENAS, mode], capture_output=True, text=True, check=True, env=env
        )
        return int(run.stdout)

    assert arenas("default") > 2  # glibc's own choice: a heap per thread, here
    assert arenas("tuned") <= 2


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


def test_full_collections_wait_until_asked_for() -> None:
    import gc
    import weakref

    from capydeploy import memory

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic GC can free it

    usual = gc.get_threshold()
    memory.defer_full_collections()
    try:
        assert gc.get_threshold()[:2] == usual[:2]  # young generations as usual
        node = Node()
        gone = weakref.ref(node)
        gc.collect(1)  # survives two young collections: now in the oldest generation
        del node
        for _ in range(50):
            [Node() for _ in range(1000)]  # plenty of young collections
        assert gone() is not None, "a full collection ran by itself"
        assert memory.full_collection_due()
        memory.collect_full()
        assert gone() is None
        assert not memory.full_collection_due()
    finally:
        memory.resume_full_collections()
    assert gc.get_threshold() == usual


_MMAPPED_WHILE_HELD = """
import ctypes, sys
import capydeploy.memory as m
assert m.keep_freed_memory(getattr(m, sys.argv[1]))
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
held = bytearray(int(sys.argv[2]))
print(libc.mallinfo2().hblkhd >= len(held))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning only")
@pytest.mark.parametrize(
    ("tuning", "size", "from_mmap"),
    [
        # A large message or table of the Agent's comes from mmap, so freeing it gives it back...
        ("AGENT_TUNING", 4 * 1024 * 1024, True),
        # ...while a chunk-sized buffer stays in the heap for the next chunk, in both.
        ("AGENT_TUNING", 1024 * 1024 + 4096, False),
        ("HUB_TUNING", 4 * 1024 * 1024, False),
    ],
)
def test_which_allocations_go_back_to_the_system(tuning: str, size: int, from_mmap: bool) -> None:
    import subprocess

    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    run = subprocess.run(
        [sys.executable, "-c", _MMAPPED_WHILE_HELD, tuning, str(size)], capture_output=True, text=True, check=True, env=env
    )
    assert run.stdout.strip() == str(from_mmap)
