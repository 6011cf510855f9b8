"""Give the C heap's free pages back to the operating system after a burst.

Under ingest the server allocates many blocks below glibc's mmap threshold
(request bodies, write-ahead log frames, pickles of the worker pool) from
the same few arenas. Freed, they leave holes between live blocks that glibc
keeps: `bench/ingest.py` showed 60 MB free inside the heaps against 28 MB in
use, all of it resident. ``malloc_trim(0)`` hands whole free pages back,
holes included; the lander calls it after each file and the compactor after
each merge, the moments a burst of work has just been freed.

Only glibc has it; elsewhere this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (which has mallopt and malloc_trim), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        return libc
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Return the heaps' free pages to the system; True if glibc released any."""
    libc = glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
