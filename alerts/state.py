"""Alert state kept in the warehouse, so it survives restarts and the dashboard can read it.

Four result tables (``<data_dir>/results/<table>/``, views of the same name):

* ``alert_states``: the current state of every (rule, series), one snapshot file
  rewritten atomically after each evaluation;
* ``alert_events``: every transition (ok -> pending -> firing -> resolved), reminder
  and late notification, appended per day;
* ``alert_deliveries``: every delivery attempt and its outcome, appended per day;
* ``alert_silences``: silences created from the command line (the newest row per
  ``silence_id`` wins, so expiring early is one more row).

One evaluation at a time per data directory: ``evaluation_lock`` serializes the
scheduler's runs and a command-line ``inferledger alerts run``, so no notification
is sent twice.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.jobs.results import append_rows, ensure_table, table_dir
from warehouse.landing import tmp_dir, write_atomically

STATES_TABLE, EVENTS_TABLE = "alert_states", "alert_events"
DELIVERIES_TABLE, SILENCES_TABLE = "alert_deliveries", "alert_silences"
STATES_FILE = "current.parquet"
TS = pa.timestamp("us", tz="UTC")

STATES_SCHEMA = pa.schema([
    ("alert_id", pa.string()), ("rule", pa.string()), ("metric", pa.string()), ("labels", pa.string()),
    ("state", pa.string()), ("severity", pa.string()), ("since", TS), ("active_since", TS), ("fired_at", TS), ("resolved_at", TS),
    ("last_notified_at", TS), ("notified", pa.bool_()), ("muted", pa.string()), ("value", pa.float64()), ("threshold", pa.float64()),
    ("verdict", pa.string()), ("reason", pa.string()), ("job", pa.string()), ("window_start", TS),
    ("window_end", TS), ("detail", pa.string()), ("evaluated_at", TS),
])
EVENTS_SCHEMA = pa.schema([
    ("event_time", TS), ("alert_id", pa.string()), ("rule", pa.string()), ("metric", pa.string()),
    ("labels", pa.string()), ("severity", pa.string()), ("event", pa.string()), ("from_state", pa.string()),
    ("to_state", pa.string()), ("value", pa.float64()), ("threshold", pa.float64()), ("verdict", pa.string()),
    ("reason", pa.string()), ("notification", pa.string()), ("notification_id", pa.string()),
    ("silence_id", pa.string()), ("window_end", TS),
])
DELIVERIES_SCHEMA = pa.schema([
    ("attempted_at", TS), ("notification_id", pa.string()), ("alert_id", pa.string()), ("rule", pa.string()),
    ("kind", pa.string()), ("channel", pa.string()), ("target", pa.string()), ("attempt", pa.int64()),
    ("outcome", pa.string()), ("error", pa.string()), ("duration_ms", pa.float64()),
])
SILENCES_SCHEMA = pa.schema([
    ("silence_id", pa.string()), ("rule", pa.string()), ("labels", pa.string()), ("starts_at", TS),
    ("ends_at", TS), ("comment", pa.string()), ("created_by", pa.string()), ("created_at", TS),
])


@dataclass
class AlertState:
    """Where one (rule, series) stands; one row of ``alert_states``."""

    alert_id: str
    rule: str
    metric: str
    labels: str
    state: str  # ok | pending | firing | resolved
    severity: str
    since: datetime  # entered the current state
    active_since: datetime | None = None  # the condition has held since (pending or firing)
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    notified: bool = False
    muted: str | None = None  # "silenced" or "inhibited" at the last evaluation
    value: float | None = None
    threshold: float | None = None
    verdict: str | None = None
    reason: str | None = None
    job: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    detail: str | None = None
    evaluated_at: datetime | None = None


def ensure_alert_tables(data_dir: Path) -> None:
    """Create the views' schema files so the dashboard and `alerts list` work before any alert."""
    for table, schema in ((STATES_TABLE, STATES_SCHEMA), (EVENTS_TABLE, EVENTS_SCHEMA),
                          (DELIVERIES_TABLE, DELIVERIES_SCHEMA), (SILENCES_TABLE, SILENCES_SCHEMA)):
        ensure_table(data_dir, table, schema)


def load_states(data_dir: Path) -> dict[str, AlertState]:
    path = table_dir(data_dir, STATES_TABLE) / STATES_FILE
    if not path.exists():
        return {}
    names = {f.name for f in fields(AlertState)}
    rows = pq.read_table(path).to_pylist()
    return {row["alert_id"]: AlertState(**{k: v for k, v in row.items() if k in names}) for row in rows}


def save_states(data_dir: Path, states: dict[str, AlertState]) -> None:
    """Replace the snapshot atomically: a reader sees the old or the new states, never half."""
    ensure_alert_tables(data_dir)
    table = pa.Table.from_pylist([asdict(state) for state in states.values()], schema=STATES_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_atomically(sink.getvalue(), table_dir(data_dir, STATES_TABLE) / STATES_FILE, tmp_dir(data_dir), fsync=True)


def append_log(data_dir: Path, table: str, schema: pa.Schema, rows: list[dict], day: datetime) -> None:
    """Append rows to a log table's file of ``day`` (events, deliveries, silences)."""
    if rows:
        append_rows(data_dir, table, day.date().isoformat(), schema, pa.Table.from_pylist(rows, schema=schema))


def read_log(data_dir: Path, table: str, schema: pa.Schema) -> list[dict]:
    """Every row of a (small) log table, oldest file first."""
    directory = table_dir(data_dir, table)
    parts = [pq.read_table(path).cast(schema) for path in sorted(directory.glob("*.parquet"))
             if not path.name.startswith("_")] if directory.exists() else []
    return pa.concat_tables(parts).to_pylist() if parts else []


class EvaluationBusy(Exception):
    """Another process or thread is evaluating this data directory's alerts."""


@contextmanager
def evaluation_lock(data_dir: Path, timeout_s: float = 120.0):
    """Hold ``<data_dir>/alerts/evaluation.lock``; raise ``EvaluationBusy`` after ``timeout_s``."""
    path = Path(data_dir) / "alerts" / "evaluation.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EvaluationBusy(f"alerts of {data_dir} are being evaluated elsewhere") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock
