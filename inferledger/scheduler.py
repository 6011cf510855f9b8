"""Background jobs of `inferledger serve`, on APScheduler.

For now one job: hourly capacity allocation, which prices the inferences of
self-hosted pools (``[[pool]]`` in the price file) once their hour has closed.
Records of an hourly pool land with ``cost_source = capacity`` and a NULL cost
until then. The job covers the last two days, so an hour missed while the
server was down is allocated on the next run (each run writes a new cost
version only for days whose costs changed).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)


def allocate_recent_capacity(data_dir: Path, book, manifest) -> None:
    """Allocate every closed pool hour of yesterday and today; failures are logged, never raised."""
    from warehouse.pricing import allocate_capacity

    today = datetime.now(timezone.utc).date()
    try:
        allocate_capacity(data_dir, book, today - timedelta(days=1), today, manifest=manifest)
    except Exception:  # the scheduler must keep running; the next hour retries
        log.exception("capacity allocation failed")


def start_scheduler(data_dir: Path, book, manifest) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(allocate_recent_capacity, CronTrigger(minute=5), args=(data_dir, book, manifest),
                      id="capacity_allocation", name="capacity allocation (hourly pools)",
                      next_run_time=datetime.now(timezone.utc) + timedelta(seconds=30))
    scheduler.start()
    return scheduler
