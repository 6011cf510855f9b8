"""Capacity allocation as a job: prices the records of self-hosted pools once their hour has closed.

Records of an hourly pool land with ``cost_source = capacity`` and a NULL cost; this
job writes a new cost version for the days it covers (only days whose costs
changed), so the rollups and variance that run after it see allocated costs.
"""
from __future__ import annotations

from warehouse.jobs.runner import Job, JobContext, JobOutput, Metric, Window


def allocate(context: JobContext, windows: list[Window]) -> JobOutput:
    from warehouse.pricing import allocate_capacity

    if context.book is None or not context.book.pools:
        return JobOutput()
    first, last = windows[0][0].date(), windows[-1][0].date()
    result = allocate_capacity(context.data_dir, context.book, first, last, manifest=context.manifest,
                               closed_before=context.now)
    return JobOutput(metrics=[Metric(window, "capacity.cost_version", result.cost_version) for window in windows
                              if result.cost_version is not None])


CAPACITY_JOB = Job(
    name="capacity",
    description="Allocate the cost of self-hosted capacity pools to their inferences, hour by closed hour.",
    schedule="5 * * * *",
    granularity="day",
    tables={},
    compute=allocate,
)
