"""The allocator tuning of the server process (inferledger/memory.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from warehouse.heap import glibc

# Frees a 20 MiB block (which raises glibc's dynamic mmap threshold), then allocates and frees
# 32 MiB in 4 MiB blocks and prints how many MiB stayed resident.
SCRIPT = """
import os, sys
def rss(): return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
if sys.argv[1] == 'tuned':
    from inferledger.memory import tune_allocators
    assert tune_allocators()
big = b"x" * (20 << 20); del big
before = rss()
blocks = [b"y" * (4 << 20) for _ in range(8)]; del blocks
print((rss() - before) >> 20)
"""


def retained_mib(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(glibc() is None, reason="allocator tuning is for glibc only")
def test_freed_buffers_go_back_to_the_os_once_tuned():
    assert retained_mib("plain") >= 24  # the default: glibc keeps them on its heap
    assert retained_mib("tuned") <= 4


def test_arrow_uses_the_system_allocator_after_tuning():
    script = ("import pyarrow as pa; from inferledger.memory import tune_allocators; tune_allocators(); "
              "print(pa.default_memory_pool().backend_name)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "system"


# Fills the heap with 64 MiB of 1 KiB blocks, frees all but one in 64 (holes glibc keeps),
# then prints the MiB that release_free_heap() gave back.
TRIM_SCRIPT = """
import os
from warehouse.heap import release_free_heap
def rss(): return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
blocks = [bytes(1024) for _ in range(64 * 1024)]
kept = blocks[::64]; del blocks
before = rss()
assert release_free_heap()
print((before - rss()) >> 20)
"""


@pytest.mark.skipif(glibc() is None, reason="malloc_trim is glibc's")
def test_free_holes_in_the_heap_go_back_to_the_os_after_release():
    done = subprocess.run([sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, check=True)
    assert int(done.stdout) >= 40


def test_arrows_own_allocations_use_the_system_allocator_once_inferledger_is_imported():
    """Arrow's C++ code picks its pool when pyarrow loads; mimalloc there kept freed memory."""
    script = ("import inferledger, pyarrow as pa, pyarrow.compute as pc\n"
              "table = pa.table({'id': pa.array([f'{n:016x}' for n in range(100_000)])})\n"
              "table.group_by('id', use_threads=False).aggregate([([], 'count_all')])\n"
              "print(pa.mimalloc_memory_pool().max_memory() if pa.mimalloc_memory_pool else 0)\n")
    env = {key: value for key, value in os.environ.items() if key != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "0"
