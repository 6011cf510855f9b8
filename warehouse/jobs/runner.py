"""Running a job over windows: results replaced per window, every run recorded.

A job is a plain function ``compute(context, windows) -> JobOutput`` over a list of
aligned windows (hours, days or ISO weeks, UTC). It reads the warehouse views and
returns result tables (rows carry ``window_start``/``window_end``) plus *metrics*:
the figures alerts watch (a value, its labels, and the job's own verdict where it
has one). The runner

* splits a long range into chunks so a backfill keeps memory bounded and can show
  progress,
* replaces the results of exactly the windows it computed (re-running is
  idempotent),
* records each run in ``job_runs`` (job, window range, start, end, rows, status,
  error, trigger) and a ``job.failed`` health metric (0 or 1) per job, so one
  failing job is visible to alerts and never stops the others.

Scheduled runs start from the last successful window (``pending_windows``): the
last window is recomputed for late data, windows missed while the server was down
are caught up (bounded by ``catchup_days``), and the current, partial window is
included so results are fresh.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Literal

import pyarrow as pa

from warehouse import duplicates
from warehouse.jobs.config import BudgetConfig, JobsConfig
from warehouse.jobs.results import append_rows, ensure_table, replace_windows, table_dir, with_window

log = logging.getLogger(__name__)

Granularity = Literal["hour", "day", "week"]
Window = tuple[datetime, datetime]
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
CHUNK = {"hour": 24, "day": 7, "week": 1}  # windows per compute call in a long range
INDEX_LOOKBACK = timedelta(days=35)  # the longest history a job reads: anomaly baseline (28 days) and more

METRICS_TABLE, RUNS_TABLE = "job_metrics", "job_runs"
METRICS_SCHEMA = with_window([
    ("job", pa.string()), ("metric", pa.string()), ("labels", pa.string()), ("value", pa.float64()),
    ("threshold", pa.float64()), ("verdict", pa.string()), ("detail", pa.string()),
    ("computed_at", pa.timestamp("us", tz="UTC")),
])
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("job", pa.string()), ("trigger", pa.string()),
    ("window_from", pa.timestamp("us", tz="UTC")), ("window_to", pa.timestamp("us", tz="UTC")),
    ("windows", pa.int64()), ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")), ("duration_s", pa.float64()),
    ("rows", pa.int64()), ("status", pa.string()), ("error", pa.string()),
])


@dataclass(frozen=True)
class Metric:
    """One figure for alerts: ``metric`` names it, ``labels`` say what it is about."""

    window: Window
    metric: str
    value: float | None
    labels: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    threshold: float | None = None
    detail: dict[str, Any] | None = None


@dataclass
class JobOutput:
    tables: dict[str, pa.Table] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)


@dataclass(frozen=True)
class JobContext:
    """What a job may use: the warehouse, its settings, and the time it runs at."""

    data_dir: Path
    settings: JobsConfig = field(default_factory=JobsConfig)
    budgets: tuple[BudgetConfig, ...] = ()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    book: Any = None  # warehouse.pricing.PriceBook, for jobs that price
    manifest: Any = None  # warehouse.manifest.Manifest of the running server, when there is one


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    schedule: str  # default cron (UTC); [jobs.schedules] overrides
    granularity: Granularity
    tables: dict[str, pa.Schema]
    compute: Callable[[JobContext, list[Window]], JobOutput]


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    job: str
    status: str
    windows: int
    rows: int
    error: str | None
    duration_s: float


def connect(context: JobContext):
    """A read-only warehouse connection with the jobs' memory and thread limits (spilling under spill/)."""
    from warehouse.catalog import connect as catalog_connect

    spill = Path(context.data_dir) / "spill" / "jobs"
    spill.mkdir(parents=True, exist_ok=True)
    return catalog_connect(context.data_dir, settings={
        **duckdb_limits(context.settings), "temp_directory": spill.resolve().as_posix()})


def duckdb_limits(settings: JobsConfig) -> dict[str, Any]:
    """The DuckDB settings every job-side connection runs with (``[jobs] memory_limit`` and ``threads``)."""
    return {"memory_limit": settings.memory_limit, "threads": settings.threads}


def floor_time(moment: datetime, granularity: Granularity) -> datetime:
    moment = moment.astimezone(UTC)
    if granularity == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if granularity == "day" else day - timedelta(days=day.weekday())


def windows_between(granularity: Granularity, start: datetime, end: datetime) -> list[Window]:
    """Aligned windows that overlap [start, end): the first contains ``start``."""
    step, cursor, windows = STEP[granularity], floor_time(start, granularity), []
    while cursor < end:
        windows.append((cursor, cursor + step))
        cursor += step
    return windows


def pending_windows(job: Job, context: JobContext) -> list[Window]:
    """The windows a scheduled run computes: from the last success (recomputed) to now."""
    step, now = STEP[job.granularity], context.now
    last = last_successful_window_end(context.data_dir, job.name)
    earliest = now - timedelta(days=context.settings.catchup_days)
    start = now - step if last is None else max(last - step, earliest)
    return windows_between(job.granularity, start, now + timedelta(microseconds=1))


def last_successful_window_end(data_dir: Path, job_name: str) -> datetime | None:
    """End of the newest window a successful run of ``job_name`` covered, or None."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    directory = table_dir(data_dir, RUNS_TABLE)
    latest = None
    for path in directory.glob("*.parquet"):
        if path.name.startswith("_"):
            continue
        runs = pq.read_table(path, columns=["job", "status", "window_to"])
        mask = pc.and_(pc.equal(runs["job"], job_name), pc.equal(runs["status"], "ok"))
        newest = pc.max(runs.filter(mask)["window_to"]).as_py()
        if newest is not None and (latest is None or newest > latest):
            latest = newest
    return latest


def run_job(job: Job, context: JobContext, windows: list[Window], trigger: str = "schedule",
            progress: Callable[[int], None] | None = None) -> RunRecord:
    """Compute ``windows`` in chunks, replace their results, record the run; never raises."""
    run_id, started, rows, error = uuid.uuid4().hex[:16], time.monotonic(), 0, None
    started_at = datetime.now(UTC)
    ensure_tables(context.data_dir, job)
    try:
        if windows:
            index_duplicates(context, windows[0][0], windows[-1][1])
        for chunk in _chunks(windows, CHUNK[job.granularity]):
            rows += _run_chunk(job, context, chunk)
            if progress:
                progress(len(chunk))
    except Exception as exc:  # isolate: the failure is recorded, the scheduler goes on
        log.exception("job %s failed", job.name)
        error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-3))
    record = RunRecord(run_id, job.name, "failed" if error else "ok", len(windows), rows, error,
                       round(time.monotonic() - started, 3))
    _record_run(context, job, record, windows, trigger, started_at)
    return record


def index_duplicates(context: JobContext, start: datetime, end: datetime) -> None:
    """Refresh the duplicate indexes of the days the jobs read (``warehouse/duplicates.py``).

    Reaches back ``INDEX_LOOKBACK`` before ``start``, as far as the drift and anomaly
    baselines read, so every job reads settled days without the deduplication window.
    """
    duplicates.refresh_all(context.data_dir, duckdb_limits(context.settings),
                           (start - INDEX_LOOKBACK).date(), end.date())


def _run_chunk(job: Job, context: JobContext, chunk: list[Window]) -> int:
    output = job.compute(context, chunk)
    written = 0
    for table, schema in job.tables.items():
        rows = output.tables.get(table, schema.empty_table())
        written += replace_windows(context.data_dir, table, job.name, schema, chunk, rows)
    metrics = metrics_table(job.name, output.metrics, context.now)
    replace_windows(context.data_dir, METRICS_TABLE, job.name, METRICS_SCHEMA, chunk, metrics)
    return written


def metrics_table(job_name: str, metrics: list[Metric], computed_at: datetime) -> pa.Table:
    rows = [{
        "window_start": m.window[0], "window_end": m.window[1], "job": job_name, "metric": m.metric,
        "labels": json.dumps(m.labels, sort_keys=True, default=str), "value": _finite(m.value),
        "threshold": m.threshold, "verdict": m.verdict,
        "detail": json.dumps(m.detail, sort_keys=True, default=str) if m.detail is not None else None,
        "computed_at": computed_at,
    } for m in metrics]
    return pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def _record_run(context: JobContext, job: Job, record: RunRecord, windows: list[Window], trigger: str,
                started_at: datetime) -> None:
    finished_at = datetime.now(UTC)
    run = pa.Table.from_pylist([{
        "run_id": record.run_id, "job": job.name, "trigger": trigger,
        "window_from": windows[0][0] if windows else None, "window_to": windows[-1][1] if windows else None,
        "windows": record.windows, "started_at": started_at, "finished_at": finished_at,
        "duration_s": record.duration_s, "rows": record.rows, "status": record.status, "error": record.error,
    }], schema=RUNS_SCHEMA)
    append_rows(context.data_dir, RUNS_TABLE, started_at.date().isoformat(), RUNS_SCHEMA, run)
    hour = floor_time(finished_at, "hour")
    health = Metric((hour, hour + STEP["hour"]), "job.failed", 1.0 if record.error else 0.0, {"job": job.name},
                    verdict="failed" if record.error else "ok",
                    detail={"run_id": record.run_id, "error": (record.error or "").split("\n")[0] or None})
    replace_windows(context.data_dir, METRICS_TABLE, f"{job.name}.health", METRICS_SCHEMA,
                    [health.window], metrics_table(job.name, [health], finished_at))


def ensure_tables(data_dir: Path, job: Job) -> None:
    for table, schema in job.tables.items():
        ensure_table(data_dir, table, schema)
    ensure_table(data_dir, METRICS_TABLE, METRICS_SCHEMA)
    ensure_table(data_dir, RUNS_TABLE, RUNS_SCHEMA)


def _chunks(windows: list[Window], size: int):
    for index in range(0, len(windows), size):
        yield windows[index:index + size]
