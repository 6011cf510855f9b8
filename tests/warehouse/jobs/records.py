"""Constructed inference records for the job tests, landed through the real write-ahead log and lander.

Costs are landed as given (no pricing hook), so every figure a test expects can be
worked out by hand from the rows it wrote.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from warehouse.landing import Lander
from warehouse.manifest import Manifest, manifest_path
from warehouse.record import to_batch
from warehouse.wal import WriteAheadLog

_counter = iter(range(1, 10**9))


def record(start_time: datetime, **fields) -> dict:
    """One inference record with unique ids; ``cost_usd`` given means ``cost_source = computed``."""
    number = next(_counter)
    values = {"trace_id": f"{number:032x}", "span_id": f"{number:016x}", "start_time": start_time,
              "ingest_time": start_time, "duration_ms": 100.0, "status": "ok", "service_name": "svc",
              "operation": "chat"}
    if fields.get("cost_usd") is not None:
        values["cost_source"] = "computed"
        values["computed_cost_usd"] = fields["cost_usd"]
    values.update(fields)
    return values


def land_records(data_dir: Path, rows: list[dict]) -> None:
    """Land ``rows`` (dicts of RECORD_SCHEMA columns; missing ones NULL) as the server would."""
    land_batch(Path(data_dir), "inferences", to_batch(rows))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def land_http_attempts(data_dir: Path, rows: list[dict]) -> None:
    """Land ``rows`` (dicts of HTTP_ATTEMPT_SCHEMA columns) as the ``http_attempts`` dataset, as the server would."""
    from warehouse.record import HTTP_ATTEMPT_SCHEMA

    land_batch(Path(data_dir), "http_attempts", to_batch(rows, HTTP_ATTEMPT_SCHEMA))


def http_attempt(parent: dict, start_time: datetime, status_code: int | None, resend_count: int = 0,
                 **fields) -> dict:
    """One HTTP client span under the inference record ``parent`` (same trace), with a unique span id."""
    number = next(_counter)
    values = {"trace_id": parent["trace_id"], "span_id": f"{number:016x}", "parent_span_id": parent["span_id"],
              "start_time": start_time, "ingest_time": start_time, "duration_ms": 50.0,
              "status_code": status_code, "resend_count": resend_count}
    values.update(fields)
    return values


def land_batch(data_dir: Path, dataset: str, batch, transform=None) -> None:
    """Land one batch through the real write-ahead log and lander (with the landing ``transform``, if any)."""
    wal = WriteAheadLog(data_dir / "wal", fsync=False)
    wal.open()
    try:
        wal.append(dataset, batch).result()
        wal.flush().result()
        manifest = Manifest(manifest_path(data_dir), fsync=False)
        try:
            (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
            lander = Lander(data_dir, wal, manifest, transform=transform, fsync=False)
            for path in wal.sealed_files():
                lander.land_file(path)
        finally:
            manifest.close()
    finally:
        wal.close()
