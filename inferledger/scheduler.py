"""The jobs of `inferledger serve`, on APScheduler.

Every job of ``warehouse.jobs.registry`` runs on its cron schedule (UTC;
``[jobs.schedules]`` overrides the defaults) and once shortly after start: a run
computes the windows from its last success to now, so windows missed while the
server was down are caught up (``pending_windows``). Jobs run one at a time on a
single worker thread, which bounds memory and keeps the order of a full run
(capacity before rollups and variance). A failing job is recorded in ``job_runs``
and as a ``job.failed`` metric by the runner and never stops the scheduler.

After every job run the ``after_run`` callbacks run (alert evaluation); further
periodic tasks (signing the chain head, retention, the weekly report) are added
with ``add_task``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from warehouse.jobs.registry import all_jobs
from warehouse.jobs.runner import Job, JobContext, RunRecord, pending_windows, run_job
from warehouse.priority import lower_thread_priority

log = logging.getLogger(__name__)
START_DELAY_S = 5  # let the server answer its first requests before the catch-up runs


@dataclass
class JobEnvironment:
    """What every scheduled run needs, fixed for the life of the server."""

    data_dir: Path
    config: Any  # inferledger.config.Config
    book: Any = None
    manifest: Any = None
    after_run: list[Callable[[RunRecord], None]] = field(default_factory=list)

    def context(self, now: datetime | None = None) -> JobContext:
        return JobContext(self.data_dir, self.config.jobs, tuple(self.config.budgets),
                          now or datetime.now(UTC), self.book, self.manifest)


def effective_schedule(job: Job, config) -> str:
    return config.jobs.schedules.get(job.name, job.schedule)


def run_scheduled(job: Job, environment: JobEnvironment) -> RunRecord:
    """One scheduled run: pending windows, then the after-run callbacks; never raises."""
    context = environment.context()
    record = run_job(job, context, pending_windows(job, context), trigger="schedule")
    for callback in environment.after_run:
        try:
            callback(record)
        except Exception:  # an alert channel bug must not stop the jobs
            log.exception("after-run callback %s failed", getattr(callback, "__name__", callback))
    return record


def start_scheduler(environment: JobEnvironment, start_delay_s: float = START_DELAY_S) -> BackgroundScheduler:
    nicer = {"initializer": lower_thread_priority, "initargs": (environment.config.jobs.nice,)}
    scheduler = BackgroundScheduler(
        timezone="UTC", executors={"default": ThreadPoolExecutor(1, pool_kwargs=nicer),
                                   "tasks": ThreadPoolExecutor(2, pool_kwargs=nicer)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    if environment.config.jobs.enabled:
        first = datetime.now(UTC) + timedelta(seconds=start_delay_s)
        for order, job in enumerate(all_jobs()):
            if job.name in environment.config.jobs.disabled:
                continue
            scheduler.add_job(run_scheduled, CronTrigger.from_crontab(effective_schedule(job, environment.config),
                                                                      timezone="UTC"),
                              args=(job, environment), id=job.name, name=job.description,
                              next_run_time=first + timedelta(milliseconds=order))
    scheduler.start()
    return scheduler


def add_task(scheduler: BackgroundScheduler, task_id: str, function: Callable[[], Any], when: str | BaseTrigger,
             timezone: str = "UTC", run_at_start: bool = False) -> None:
    """A periodic task beside the jobs (signing, retention, reports, health); its errors are logged, never raised.

    Tasks run on their own threads, so a long job does not delay them.
    """
    def guarded() -> None:
        try:
            function()
        except Exception:
            log.exception("scheduled task %s failed", task_id)

    options = {"next_run_time": datetime.now(UTC) + timedelta(seconds=START_DELAY_S)} if run_at_start else {}
    trigger = CronTrigger.from_crontab(when, timezone=timezone) if isinstance(when, str) else when
    scheduler.add_job(guarded, trigger, id=task_id, name=task_id, executor="tasks", **options)
