"""Aggregates a job keeps of its own past windows, so a run reads the warehouse only where it changed.

A forecast's run rate and an anomaly baseline need weeks of history, but reading
weeks of raw records every hour would cost minutes. Such a job keeps its
per-window aggregates in a result table of its own (a *cache table*, one row per
window at least, every row stamped ``computed_at``). A run reads the warehouse
for its own windows and for the past days whose aggregate is missing or stale,
and takes every other past day from the cache table.

A cached day is stale when the warehouse changed that day after the aggregate was
computed: a segment landed (late data, compaction) or a cost version was written
(repricing, capacity allocation). Every such file is renamed into the day's
partition directory, so the directory's modification time says when the day last
changed. ``STALE_MARGIN_S`` covers what the directory time cannot show at once: a
repricing writes its files first and commits them (in the repricing log) up to
minutes later.
"""
from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from warehouse.jobs.results import replace_windows

STALE_MARGIN_S = 600.0
CHANGING_DATASETS = ("inferences", "cost_versions")  # parquet/<dataset>/date=YYYY-MM-DD/


def wall_clock() -> datetime:
    """The real time a computation starts (``context.now`` may be a simulated one)."""
    return datetime.fromtimestamp(time.time(), UTC)


def day_changed_at(data_dir: Path, day: date) -> float:
    """When the warehouse last changed ``day`` (seconds since the epoch; 0 if it never had it)."""
    latest = 0.0
    for dataset in CHANGING_DATASETS:
        try:
            latest = max(latest, (Path(data_dir) / "parquet" / dataset / f"date={day.isoformat()}").stat().st_mtime)
        except FileNotFoundError:
            continue
    return latest


def has_records(data_dir: Path, day: date) -> bool:
    """Whether any inference was ever landed for ``day`` (no partition: nothing to read)."""
    return (Path(data_dir) / "parquet" / "inferences" / f"date={day.isoformat()}").is_dir()


def midnight(day: date) -> datetime:
    """The start of a UTC day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def days_of(start: datetime, end: datetime) -> list[date]:
    """The UTC days that [start, end) touches."""
    days, cursor = [], start.date()
    while midnight(cursor) < end:
        days.append(cursor)
        cursor += timedelta(days=1)
    return days


def cached_history(con, data_dir: Path, table: str, start: datetime, end: datetime,
                   step: timedelta) -> tuple[pa.Table, list[date]]:
    """The cache table's rows for windows in [start, end) that are still valid, and the days to recompute.

    A day is valid when every window of it inside [start, end) has rows (each window
    writes at least one marker row) and the day did not change after the oldest of them
    was computed. Days that are not valid are returned for the caller to read from the
    warehouse; their cached rows are dropped.
    """
    cached = con.sql(f"SELECT * FROM {table} WHERE window_start >= ? AND window_start < ?",
                     params=[start, end]).to_arrow_table()
    computed: dict[datetime, datetime] = {}
    for row in cached.group_by("window_start").aggregate([("computed_at", "min")]).to_pylist():
        computed[row["window_start"]] = row["computed_at_min"]
    valid, stale = [], []
    for day in days_of(start, end):
        first, last = max(start, midnight(day)), min(end, midnight(day) + timedelta(days=1))
        windows = [first + step * i for i in range(int((last - first) / step))]
        stamps = [computed.get(window) for window in windows]
        fresh = all(stamps) and day_changed_at(data_dir, day) < min(stamps).timestamp() - STALE_MARGIN_S
        (valid if fresh else stale).append(day)
    keep = pc.is_in(pc.cast(cached["window_start"], pa.date32()), value_set=pa.array(valid, pa.date32()))
    return cached.filter(keep), stale


def refresh_history(data_dir: Path, table: str, job: str, schema: pa.Schema,
                    windows: list[tuple[datetime, datetime]], rows: pa.Table) -> None:
    """Replace the cache rows of past windows a run recomputed, so the next run can reuse them."""
    if windows:
        replace_windows(data_dir, table, job, schema, windows, rows)
