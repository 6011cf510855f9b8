"""Warehouses with people in them, for the erasure, retention, signing and verify tests.

Rows are landed by the real storage (WAL -> Parquet -> manifest); pseudonyms are made
with the collector's HMAC and the key tests/conftest.py gives the test servers.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from collector.pseudonymize import pseudonymize
from warehouse.compaction import CompactionSettings, Compactor
from warehouse.manifest import Manifest, manifest_path
from warehouse.record import to_batch
from warehouse.storage import Storage, StorageSettings

KEY = bytes(32)  # tests/conftest.py: INFERLEDGER_SUBJECT_KEY = "00" * 32
DAY = datetime(2026, 5, 1, 12, tzinfo=UTC)
NO_COMPACTION = StorageSettings(fsync=False, compaction=CompactionSettings(enabled=False))
_serial = iter(range(1, 10**9))


def pseudonym(raw_id: str) -> str:
    return pseudonymize(raw_id, KEY)


def decisions(subject: str, count: int, day: datetime = DAY, **extra) -> list[dict]:
    """``count`` decision records about ``subject`` (also the calling user), with personal attributes."""
    rows = []
    for _ in range(count):
        n = next(_serial)
        rows.append({
            "trace_id": f"{n:032x}", "span_id": f"{n:016x}", "start_time": day + timedelta(seconds=n),
            "ingest_time": day, "service_name": "credit", "operation": "predict", "provider": "internal",
            "request_model": "scorer", "decision_label": "approve" if n % 2 else "decline",
            "decision_score": n / 1000, "decision_reasons": ["income", "history"],
            "subject_id": pseudonym(subject), "user_id": pseudonym(subject), "conversation_id": f"conv-{subject}-{n}",
            "attributes": json.dumps({"user.email": pseudonym(f"{subject}@example.com"),
                                      "gen_ai.input.messages": f"my name is {subject}", "app.step": n}),
            "cost_usd": 0.01, "cost_source": "reported", **extra})
    return rows


def review(of: dict, reviewer: str, seconds: float = 90.0) -> dict:
    """A human review (by ``reviewer``) of the decision ``of``."""
    n = next(_serial)
    return {"trace_id": of["trace_id"], "span_id": f"{n:016x}", "start_time": of["start_time"] + timedelta(minutes=5),
            "ingest_time": of["ingest_time"], "service_name": "credit", "operation": "review",
            "review_outcome": "upheld", "review_override": False, "reviewer_id": pseudonym(reviewer),
            "review_duration_s": seconds, "reviewed_span_id": of["span_id"]}


def land(data_dir: Path, *batches: list[dict], settings: StorageSettings = NO_COMPACTION) -> None:
    """Each batch becomes its own WAL file and so its own segment(s)."""
    with Storage(data_dir, settings) as storage:
        for rows in batches:
            storage.append("inferences", to_batch(rows)).result()
            storage.flush()


def compact_all(data_dir: Path) -> int:
    """Merge every partition's segments now and delete the inputs (no grace period)."""
    manifest = Manifest(manifest_path(data_dir), fsync=False)
    try:
        compactor = Compactor(data_dir, manifest, CompactionSettings(min_files=2, idle_s=0, grace_s=0), fsync=False)
        compactor.recover()
        merged = compactor.run_once()
        compactor.delete_expired(force=True)
        return merged
    finally:
        manifest.close()


def data_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file())


def files_mentioning(data_dir: Path, text: str) -> list[str]:
    """Files whose raw bytes contain ``text``, or whose Parquet rows do once decompressed."""
    needle = text.encode()
    found = []
    for path in data_files(data_dir):
        raw = path.read_bytes()
        decoded = b""
        if path.suffix == ".parquet":
            decoded = json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
        if needle in raw or needle in decoded:
            found.append(path.relative_to(data_dir).as_posix())
    return found


def all_rows(data_dir: Path, where: str = "true") -> list[dict]:
    from warehouse.catalog import query

    return query(data_dir, f"SELECT * EXCLUDE (date) FROM inferences_all WHERE {where} ORDER BY span_id").to_pylist()


def table_of(rows: list[dict]) -> pa.Table:
    return pa.Table.from_batches([to_batch(rows)])
