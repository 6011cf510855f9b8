"""Per-day index of the spans stored more than once, so reads can skip deduplication.

A span received twice (an exporter retry), or sitting both in a segment and in the
compaction that replaced it, must count once. The catalog's views deduplicate with a
window over every row (``DEDUP_WINDOW``), which costs a hash of every row's key *and*
of every column the query reads: about three CPU-seconds per day of 1.4M records, paid
again by every query. Yet nearly every day holds no duplicate at all, or a handful.

This module finds them once. For a day, the index lists the *later receipts*: for
every key (``DEDUP_KEY``) stored more than once in the day's data files, each copy
but the first (earliest ``ingest_time``, then file name), as (key, file). A file holds
a key at most once (landing and compaction deduplicate what they write), so (key,
file) names exactly one row. The catalog reads the day's other files as they are, and
the few files that hold a later receipt with an anti-join on the index.

An index is valid for exactly the files it was computed from: its name starts with a
fingerprint of the folder, their names, sizes and modification times, so a new
segment, a compaction, an erasure or a retention run makes it stale, and the catalog
falls back on the window for that day until the index is refreshed. The rest of the
name says how many receipts are dropped and which of the day's files (by position in
name order) hold them, so checking and using indexes opens no file.

Layout: ``cache/duplicates/<dataset>/date=<day>/<fingerprint>-<dropped>-<positions>.parquet``
(positions like ``3.4``; ``all`` when there are too many to name). The cache holds
only span keys and file names (no content, no personal data) and can be deleted at
any time. The jobs runner refreshes the days it reads (``refresh``), and ``inferledger serve``
every day every 15 minutes (``refresh_all``); readers only use what is there
(``valid_indexes``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.landing import DEDUP_KEY, NULL_PARTITION, tmp_dir, write_atomically
from warehouse.record import DATASETS

CACHE = Path("cache") / "duplicates"
DROPPED_FILE = "file"  # index column: the data file holding a later receipt of the key
ALL_FILES = "all"  # positions too many for a file name: every file of the day is filtered
MAX_POSITIONS_CHARS = 120
SETTLE_S = 30.0  # a day whose files changed more recently is still being written
_REFRESHING = threading.Lock()  # the jobs and the serve task share a process and its tmp file names
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayIndex:
    """A valid index: the day's data files (as fingerprinted), the index file, and which data
    files hold receipts to drop (``dirty``; none when the day holds no duplicate)."""

    day: date
    files: tuple[str, ...]
    index: str
    dropped: int
    dirty: tuple[str, ...]

    @property
    def clean(self) -> tuple[str, ...]:
        return tuple(path for path in self.files if path not in self.dirty)


def day_dirs(data_dir: Path, dataset: str) -> dict[date, Path]:
    """The ``date=`` folders of a dataset that hold a real day (not the NULL partition)."""
    root = Path(data_dir) / "parquet" / dataset
    days = {}
    if root.is_dir():
        for entry in os.scandir(root):
            name = entry.name
            if entry.is_dir() and name.startswith("date=") and name != f"date={NULL_PARTITION}":
                try:
                    days[date.fromisoformat(name[5:])] = Path(entry.path)
                except ValueError:
                    continue
    return days


def data_files(folder: Path) -> tuple[list[str], str]:
    """The folder's Parquet files (sorted absolute paths) and their fingerprint.

    The index names files by absolute path, so the folder's path is part of the fingerprint.
    A file deleted between the listing and its ``stat`` (a compaction's grace period ending)
    is left out, as a listing a moment later would: readers must not fail on it.
    """
    entries = sorted((e for e in os.scandir(folder) if e.name.endswith(".parquet") and e.is_file()),
                     key=lambda e: e.name)
    digest = hashlib.sha256(Path(folder).resolve().as_posix().encode() + b"\n")
    present = []
    for entry in entries:
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue
        present.append(entry)
        digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return [Path(e.path).resolve().as_posix() for e in present], digest.hexdigest()[:32]


def valid_indexes(data_dir: Path, dataset: str) -> list[DayIndex]:
    """The days whose index matches their current files; the others need the window.

    Cheap enough for every connection: a directory listing per day, no file is opened.
    """
    cache_root = Path(data_dir) / CACHE / dataset
    if not cache_root.is_dir():
        return []
    found = []
    for day, folder in sorted(day_dirs(data_dir, dataset).items()):
        cached = _cached(cache_root / f"date={day.isoformat()}")
        if not cached:
            continue
        files, fingerprint = data_files(folder)
        if files and fingerprint in cached:
            path, dropped, positions = cached[fingerprint]
            dirty = files if positions == ALL_FILES else [files[int(i)] for i in positions.split(".") if i]
            found.append(DayIndex(day, tuple(files), path, dropped, tuple(dirty)))
    return found


def _cached(folder: Path) -> dict[str, tuple[str, int, str]]:
    """fingerprint -> (index path, receipts dropped, positions of the files holding them)."""
    if not folder.is_dir():
        return {}
    cached = {}
    for entry in os.scandir(folder):
        parts = entry.name.removesuffix(".parquet").split("-")
        if not entry.name.endswith(".parquet") or len(parts) != 3 or not parts[1].isdigit():
            continue
        fingerprint, dropped, positions = parts
        if positions == ALL_FILES or all(i.isdigit() for i in positions.split(".") if i):
            cached[fingerprint] = (Path(entry.path).resolve().as_posix(), int(dropped), positions)
    return cached


def refresh(data_dir: Path, dataset: str, first_day: date, last_day: date,
            con: duckdb.DuckDBPyConnection | None = None, settle_s: float | None = None) -> int:
    """Index the days in ``[first_day, last_day]`` whose index is missing or stale; returns how many.

    A day whose newest file is younger than ``settle_s`` is still being written (segments
    land every few seconds under load) and is left to the window. Stale indexes of the
    refreshed days, and the indexes of days that no longer exist (retention), are deleted.
    """
    data_dir = Path(data_dir)
    settle_s = SETTLE_S if settle_s is None else settle_s
    own = con is None
    con = con or duckdb.connect(":memory:")
    written = 0
    try:
        with _REFRESHING:
            days = day_dirs(data_dir, dataset)
            _drop_vanished_days(data_dir, dataset, set(days))
            for day, folder in sorted(days.items()):
                if first_day <= day <= last_day:
                    written += _refresh_day(con, data_dir, dataset, day, folder, settle_s)
    finally:
        if own:
            con.close()
    return written


def _refresh_day(con: duckdb.DuckDBPyConnection, data_dir: Path, dataset: str, day: date, folder: Path,
                 settle_s: float) -> int:
    """1 if the day was indexed. A file that vanishes meanwhile (a compaction ending its grace
    period, an erasure) only postpones the day to the next refresh: it must not fail the caller."""
    cache_folder = data_dir / CACHE / dataset / f"date={day.isoformat()}"
    try:
        files, fingerprint = data_files(folder)
        cached = _cached(cache_folder)
        if not files or fingerprint in cached or _newest_mtime(files) > time.time() - settle_s:
            return 0
        _write_index(con, data_dir, files, cache_folder, fingerprint)
    except (OSError, duckdb.IOException) as error:
        log.info("duplicate index of %s %s postponed: %s", dataset, day, error)
        return 0
    for stale, *_ in cached.values():
        Path(stale).unlink(missing_ok=True)
    return 1


def refresh_all(data_dir: Path, settings: dict | None = None, first_day: date = date.min,
                last_day: date = date.max) -> int:
    """Refresh the days in ``[first_day, last_day]`` of every dataset (cheap when nothing changed).

    ``settings``: DuckDB settings of the indexing connection (memory limit, threads)."""
    con = duckdb.connect(":memory:", config=settings or {})
    try:
        return sum(refresh(data_dir, dataset, first_day, last_day, con) for dataset in DATASETS)
    finally:
        con.close()


def _write_index(con: duckdb.DuckDBPyConnection, data_dir: Path, files: list[str], folder: Path,
                 fingerprint: str) -> None:
    """Every receipt but the first of each key stored more than once, as (key, file)."""
    key = ", ".join(DEDUP_KEY)
    source = "read_parquet($files, union_by_name = true, filename = true)"
    # Two passes: finding the keys reads three columns; only their rows need the file names.
    dropped = con.sql(f"""
        WITH repeated AS (SELECT {key} FROM {source} GROUP BY ALL HAVING count(*) > 1)
        SELECT {key}, filename AS {DROPPED_FILE} FROM {source}
        WHERE ({key}) IN (SELECT {key} FROM repeated)
        QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY ingest_time, filename) > 1""",
        params={"files": files}).to_arrow_table()
    dirty = set(dropped[DROPPED_FILE].to_pylist())
    positions = ".".join(str(i) for i, path in enumerate(files) if path in dirty)
    if len(positions) > MAX_POSITIONS_CHARS:
        positions = ALL_FILES
    buffer = pa.BufferOutputStream()
    pq.write_table(dropped, buffer)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fingerprint}-{dropped.num_rows}-{positions}.parquet"
    write_atomically(buffer.getvalue(), path, tmp_dir(data_dir), fsync=False)


def _newest_mtime(files: list[str]) -> float:
    return max(os.stat(path).st_mtime for path in files)


def _drop_vanished_days(data_dir: Path, dataset: str, days: set[date]) -> None:
    cache_root = Path(data_dir) / CACHE / dataset
    if not cache_root.is_dir():
        return
    for entry in os.scandir(cache_root):
        try:
            day = date.fromisoformat(entry.name.removeprefix("date="))
        except ValueError:
            continue
        if day not in days:
            shutil.rmtree(entry.path, ignore_errors=True)
