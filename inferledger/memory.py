"""Make the server give freed memory back to the operating system.

The collector's working set comes in waves: the lander decodes a write-ahead
log file of up to 64 MiB, sorts a copy, writes Parquet and drops it all; the
compactor does the same with its keys. Two allocator defaults keep those
waves resident long after they are freed:

* Arrow's default pool (mimalloc) keeps freed pages for reuse; the system
  allocator gives them back (~90 MB less resident under steady ingest, no
  measurable speed loss in ``bench/ingest.py``). Two defaults, in fact: the
  pool pyarrow's Python calls use (``pa.set_memory_pool``), and the one Arrow's
  C++ code takes for itself (Parquet reading, ``group_by``), which is chosen
  once from ``ARROW_DEFAULT_MEMORY_POOL`` when pyarrow loads. Left on mimalloc,
  the latter kept 67 MB after compaction's span-id count over a million rows
  had freed everything (14 MB on the system allocator), so importing
  ``inferledger`` sets the variable unless the environment already has it;
* glibc serves blocks below a *dynamic* mmap threshold from its heaps, and
  raises that threshold every time a large block is freed, so after the first
  wave a 20 MB buffer lands on a heap that cannot shrink past live data above
  it. Pinning the threshold at 1 MiB maps every big buffer on its own and
  unmaps it on free; two arenas instead of eight per core stop each thread
  from holding its own free memory. Together: peak RSS 770 -> 590 MB in
  ``bench/ingest.py --seconds 30``.

Only glibc is tuned; elsewhere (musl, macOS) nothing changes.
"""
from __future__ import annotations

import gc
import os

from warehouse.heap import glibc

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1024 * 1024
ARENAS = 2


def arrow_on_the_system_allocator() -> None:
    """Make Arrow's C++ default pool the system allocator, if pyarrow is not loaded yet
    (the worker processes inherit the variable)."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def tune_allocators() -> bool:
    """Arrow on the system allocator, and glibc tuned as above; True if glibc was tuned."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    libc = glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(libc.mallopt(M_ARENA_MAX, ARENAS))


def freeze_startup_objects() -> None:
    """Move what the process holds once started (modules, the app, settings: over 100,000 objects)
    out of the cyclic collector's sight, so its full collections under load walk only
    the objects of requests in flight (p99 request latency 104 -> 74 ms in bench/ingest.py,
    with the same in the normalizer workers). For a process that serves until it exits:
    frozen objects that become garbage later are never collected."""
    gc.collect()
    gc.freeze()
