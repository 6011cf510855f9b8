"""The access log: who read what through the auditor API, kept as Parquet in the manifest's hash chain.

Every entry is first appended to a journal (``<data_dir>/access_log/journal.jsonl``,
one JSON line, no fsync: it survives a crash of the process, not of the machine).
Every ``flush_interval_s`` seconds, or sooner once ``flush_entries`` are waiting,
the journal is sealed (renamed ``journal-<ns>.sealed``) and landed: one Parquet file
per UTC day under ``parquet/access_log/date=<day>/access-<ns>.parquet``, written
atomically and fsynced, then one manifest append for the files, then the sealed
journal is deleted. An export of a million rows is one entry, so nothing costs an
fsync per row.

Landing a sealed journal is idempotent, which makes recovery the same code as a
normal flush: a journal left by a crash or a failed flush (disk full) is landed by
the next flush or the next start. A file already recorded in the manifest since
the journal was sealed is not recorded twice. Entries are never dropped silently:
a failed landing keeps the journal and logs the error, and ``record`` raises
``AccessLogUnavailable`` when the journal cannot be written, so the API refuses
the request instead of serving it unlogged.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.maintenance import create_log_view, write_log_table
from warehouse.manifest import Manifest, manifest_path, read_entries_reversed

log = logging.getLogger(__name__)

ACCESS_LOG = "access_log"
SCHEMA_VERSION = 1
TIMESTAMP = pa.timestamp("us", tz="UTC")
ACCESS_LOG_SCHEMA = pa.schema([
    ("entry_id", pa.string()), ("logged_at", TIMESTAMP),
    ("key_id", pa.string()), ("key_name", pa.string()), ("role", pa.string()),
    ("tenant", pa.string()),  # the key's tenant scope; NULL = all tenants
    ("client", pa.string()), ("method", pa.string()), ("endpoint", pa.string()),
    ("parameters", pa.string()),  # JSON: filters, SQL text, body of an admin call
    ("rows", pa.int64()), ("status", pa.int64()), ("outcome", pa.string()), ("duration_ms", pa.float64()),
])
_RECOVERY_MARGIN_S = 300  # clocks step; a longer look back at the manifest costs little


class AccessLogUnavailable(Exception):
    """The entry could not be written: the request must not be served unlogged."""


class AccessLog:
    def __init__(self, data_dir: Path, flush_interval_s: float = 5.0, flush_entries: int = 200,
                 fsync: bool = True):
        self.data_dir = Path(data_dir)
        self.folder = self.data_dir / ACCESS_LOG
        self.flush_interval_s = flush_interval_s
        self.flush_entries = flush_entries
        self.fsync = fsync
        self._manifest: Manifest | None = None
        self._own_manifest = False
        self._fd: int | None = None
        self._waiting = 0
        self._lock = threading.Lock()        # journal appends and rotation
        self._flush_lock = threading.Lock()  # one landing at a time
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, manifest: Manifest | None = None) -> None:
        """Land what a previous run left, open the journal and start the flusher thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._manifest = manifest or Manifest(manifest_path(self.data_dir), fsync=self.fsync)
        self._own_manifest = manifest is None
        self._open_journal()
        self.flush()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Flush everything and stop; entries that cannot be landed stay in the journal for the next start."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.flush()
        finally:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            if self._own_manifest and self._manifest is not None:
                self._manifest.close()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep the journal; the next round retries (and the error is visible)
                log.exception("access log: landing failed; entries stay in %s", self.folder)

    # ------------------------------------------------------------------ writing

    def record(self, **fields: Any) -> dict:
        """Append one entry (columns of ACCESS_LOG_SCHEMA; ``parameters`` may be a dict)."""
        entry = {name: fields.get(name) for name in ACCESS_LOG_SCHEMA.names}
        entry["entry_id"] = uuid.uuid4().hex
        entry["logged_at"] = _iso(fields.get("logged_at") or datetime.now(timezone.utc))
        if not isinstance(entry["parameters"], (str, type(None))):
            entry["parameters"] = json.dumps(entry["parameters"], sort_keys=True, default=str)
        line = (json.dumps(entry, default=str) + "\n").encode()
        with self._lock:
            if self._fd is None:
                raise AccessLogUnavailable("the access log is not running")
            try:
                _write_all(self._fd, line)
            except OSError as exc:
                raise AccessLogUnavailable(f"cannot write the access log journal: {exc}") from exc
            self._waiting += 1
            if self._waiting >= self.flush_entries:
                self._wake.set()
        return entry

    def flush(self) -> list[str]:
        """Seal the journal and land every sealed journal; returns the files written."""
        with self._flush_lock:
            self._seal()
            written = []
            for sealed in sorted(self.folder.glob("journal-*.sealed")):
                written += self._land(sealed)
            return written

    def _open_journal(self) -> None:
        self._fd = os.open(self.folder / "journal.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _seal(self) -> None:
        with self._lock:
            active = self.folder / "journal.jsonl"
            if not active.exists() or active.stat().st_size == 0:
                return
            if self._fd is not None:
                os.close(self._fd)
            os.replace(active, self.folder / f"journal-{time.time_ns():020d}.sealed")
            self._waiting = 0
            if self._fd is not None:
                self._open_journal()

    def _land(self, sealed: Path) -> list[str]:
        table = _read_journal(sealed)
        sealed_ns = int(sealed.stem.split("-", 1)[1])
        recorded = self._recorded_since(sealed_ns)
        facts = []
        days = pc.unique(pc.cast(table["logged_at"], pa.date32())).to_pylist() if table.num_rows else []
        for day in sorted(days):
            name = f"access-{sealed_ns:020d}"
            if f"parquet/{ACCESS_LOG}/date={day.isoformat()}/{name}.parquet" in recorded:
                continue
            rows = table.filter(pc.equal(pc.cast(table["logged_at"], pa.date32()), pa.scalar(day, pa.date32())))
            facts.append(self._write(name, rows.sort_by("logged_at"), day))
        if facts:
            self._manifest.append(facts)
        sealed.unlink()
        return [fact["file"] for fact in facts]

    def _write(self, name: str, rows: pa.Table, day) -> dict:
        facts = write_log_table(self.data_dir, ACCESS_LOG, name, rows, day)
        times = rows["logged_at"]
        return {"kind": ACCESS_LOG, **facts, "schema_version": SCHEMA_VERSION,
                "min_time": _iso(pc.min(times).as_py()), "max_time": _iso(pc.max(times).as_py())}

    def _recorded_since(self, sealed_ns: int) -> set[str]:
        """Access log files the manifest recorded after the journal was sealed (a landing that
        crashed between the manifest append and deleting the journal)."""
        since = datetime.fromtimestamp(sealed_ns / 1e9 - _RECOVERY_MARGIN_S, timezone.utc)
        recorded = set()
        for entry in read_entries_reversed(self._manifest.path):
            if datetime.fromisoformat(entry["created_at"].replace("Z", "+00:00")) < since:
                break
            if entry.get("kind") == ACCESS_LOG:
                recorded.add(entry["file"])
        return recorded


def _read_journal(path: Path) -> pa.Table:
    """Entries of a journal; a torn last line (crash mid-write) was never acknowledged and is skipped."""
    rows = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                log.warning("access log: %s line %d is torn (crash mid-write); skipped", path, number)
                break
            try:
                rows.append(json.loads(line))
            except ValueError:
                log.error("access log: %s line %d is not JSON; skipped", path, number)
    for row in rows:
        row["logged_at"] = datetime.fromisoformat(row["logged_at"].replace("Z", "+00:00"))
    return pa.Table.from_pylist(rows, schema=ACCESS_LOG_SCHEMA)


def create_access_log_view(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    """The ``access_log`` view for the catalog: every landed file, or no rows with the right columns."""
    create_log_view(con, data_dir, ACCESS_LOG, ACCESS_LOG_SCHEMA)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
