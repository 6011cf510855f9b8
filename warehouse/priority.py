"""Background threads that yield the CPU to ingest.

The collector's critical path is HTTP, the normalizer workers, the write-ahead log
writer and the lander: a span is acknowledged and queryable only once they are done.
Compaction, the scheduled jobs and periodic tasks can run later without anyone
waiting, so on a busy machine they should get what is left. Linux schedules threads
as tasks with their own nice value, which threads they start (DuckDB's) inherit.
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer than the process (Linux: per thread)."""
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + nice)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), target)
    except (AttributeError, OSError):  # not Linux, or not permitted: the thread keeps its priority
        log.debug("could not lower the thread's priority", exc_info=True)
