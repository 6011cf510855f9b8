"""Every job inferledger knows, in the order a full run executes them.

Order matters for ``inferledger jobs run all`` and for the demo: capacity
allocation prices pool records before rollups and variance read costs.
"""
from __future__ import annotations

from warehouse.jobs.capacity import CAPACITY_JOB
from warehouse.jobs.runner import Job


def all_jobs() -> list[Job]:
    return [CAPACITY_JOB]


def find_job(name: str) -> Job:
    jobs = {job.name: job for job in all_jobs()}
    if name not in jobs:
        raise KeyError(f"unknown job {name!r}; known jobs: {', '.join(jobs)}")
    return jobs[name]
