"""Every job inferledger knows, in the order a full run executes them.

Order matters for ``inferledger jobs run all`` and for the demo: capacity
allocation prices pool records before rollups and variance read costs.
"""
from __future__ import annotations

from warehouse.jobs.anomalies import ANOMALIES_JOB
from warehouse.jobs.capacity import CAPACITY_JOB
from warehouse.jobs.drift import DRIFT_JOB
from warehouse.jobs.retries import RETRIES_JOB
from warehouse.jobs.rollups import ROLLUPS_DAILY_JOB, ROLLUPS_JOB
from warehouse.jobs.runner import Job
from warehouse.jobs.variance import VARIANCE_JOB


def all_jobs() -> list[Job]:
    return [CAPACITY_JOB, ROLLUPS_JOB, ROLLUPS_DAILY_JOB, RETRIES_JOB, VARIANCE_JOB, DRIFT_JOB, ANOMALIES_JOB]


def find_job(name: str) -> Job:
    jobs = {job.name: job for job in all_jobs()}
    if name not in jobs:
        raise KeyError(f"unknown job {name!r}; known jobs: {', '.join(jobs)}")
    return jobs[name]
