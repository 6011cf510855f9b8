"""Retention: delete whole days of data older than each dataset's limit, in the chain.

A daily job. For each dataset under ``parquet/`` with a retention limit, every
``date=`` partition older than ``today - days`` is removed: a ``retention``
manifest entry per partition lists the files and their hashes (so ``verify``
accepts their absence), then the files are deleted, and the action is recorded
in the ``retention_actions`` dataset (one file per run, with its own manifest
entry). Whole days only: a partition is the unit the catalog prunes by.

Limits: ``inferences``, ``http_attempts`` and ``cost_versions`` (the data) follow
the default (400 days); other datasets (audit logs such as ``repricings``,
``erasures``, ``retention_actions``) are kept unless configured per dataset. No
limit may be below 183 days: the EU AI Act (Art. 19 and 26(6)) asks deployers and
providers of high-risk systems to keep automatically generated logs at least six
months.

A partition whose files no longer match the manifest (modified or missing) is
skipped and reported, not deleted: deleting it would destroy the evidence.
"""
from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.compaction import rewrite_lock
from warehouse.maintenance import (append_entries, finish_removals, new_action_id, remove_files, utc_now,
                                   write_log_table)
from warehouse.manifest import LiveFiles, Manifest, file_sha256, replay
from warehouse.wal import fsync_dir

MIN_RETENTION_DAYS = 183
DEFAULT_RETENTION_DAYS = 400
DEFAULT_DATASETS = ("inferences", "http_attempts", "cost_versions")
RETENTION_ACTIONS = "retention_actions"
RETENTION_SCHEMA = pa.schema([
    ("action_id", pa.string()), ("applied_at", pa.timestamp("us", tz="UTC")), ("actor", pa.string()),
    ("dataset", pa.string()), ("partition_date", pa.date32()), ("retention_days", pa.int32()),
    ("cutoff", pa.date32()), ("files", pa.list_(pa.string())), ("rows", pa.int64()), ("bytes", pa.int64()),
    ("chain_seq", pa.int64()), ("chain_entry_hash", pa.string()),
])
_PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})")


def check_retention_days(name: str, days: int) -> None:
    if days < MIN_RETENTION_DAYS:
        raise ValueError(f"{name} = {days} days is below the minimum of {MIN_RETENTION_DAYS} days: logs of "
                         "high-risk AI systems must be kept at least six months (EU AI Act, Art. 19 and 26(6))")


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep: ``default_days`` for the data datasets, ``days_by_dataset`` overrides and extends."""

    default_days: int = DEFAULT_RETENTION_DAYS
    days_by_dataset: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self):
        check_retention_days("retention_days", self.default_days)
        for dataset, days in self.days_by_dataset.items():
            check_retention_days(f"retention_days_by_dataset.{dataset}", days)

    def days_for(self, dataset: str) -> int | None:
        if dataset in self.days_by_dataset:
            return self.days_by_dataset[dataset]
        return self.default_days if dataset in DEFAULT_DATASETS else None


@dataclass
class _Partition:
    dataset: str
    day: date
    days: int
    files: dict[str, str]                 # live file -> sha256 in the manifest
    lingering: list[str] = field(default_factory=list)  # replaced by a compaction, still in its grace period


def apply_retention(data_dir: str | Path, policy: RetentionPolicy, today: date, manifest: Manifest | None = None,
                    actor: str | None = None) -> dict:
    """Delete every partition older than its dataset's limit; returns what was done.

    ``{"action_id", "partitions": [{"dataset", "date", "files", "rows", "bytes", "chain_seq"}],
    "files_removed", "rows_removed", "skipped": [{"dataset", "date", "reason"}], "receipt_file"}``.
    Inside the server pass its ``manifest``. Runs under the compactor's rewrite lock.
    """
    data_dir = Path(data_dir)
    actor = actor or _login_name()
    with rewrite_lock(data_dir):
        files = replay(data_dir)
        finish_removals(data_dir, files)
        partitions, skipped = _plan(data_dir, policy, today, files)
        result = {"action_id": None, "partitions": [], "files_removed": 0, "rows_removed": 0,
                  "skipped": skipped, "receipt_file": None}
        if not partitions:
            return result
        return _remove(data_dir, partitions, today, manifest, actor, result)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _plan(data_dir: Path, policy: RetentionPolicy, today: date, files: LiveFiles):
    """Partitions past their limit whose files all still match the manifest, and the ones that do not."""
    partitions, skipped = [], []
    for dataset_dir in sorted((data_dir / "parquet").glob("*")):
        days = policy.days_for(dataset_dir.name)
        if days is None or not dataset_dir.is_dir():
            continue
        cutoff = today - timedelta(days=days)
        for partition_dir in sorted(dataset_dir.glob("date=*")):
            match = _PARTITION.fullmatch(partition_dir.name)
            if match is None or date.fromisoformat(match.group(1)) >= cutoff:
                continue
            partition = _partition(data_dir, dataset_dir.name, date.fromisoformat(match.group(1)), days, files)
            problem = _mismatch(data_dir, partition)
            if problem:
                skipped.append({"dataset": partition.dataset, "date": partition.day.isoformat(), "reason": problem})
            elif partition.files or partition.lingering:
                partitions.append(partition)
    return partitions, skipped


def _partition(data_dir: Path, dataset: str, day: date, days: int, files: LiveFiles) -> _Partition:
    prefix = f"parquet/{dataset}/date={day.isoformat()}/"
    live = {name: sha for name, sha in files.live.items() if name.startswith(prefix)}
    lingering = [name for name in files.replaced if name.startswith(prefix) and (data_dir / name).exists()]
    return _Partition(dataset, day, days, live, lingering)


def _mismatch(data_dir: Path, partition: _Partition) -> str | None:
    for name, sha in sorted(partition.files.items()):
        path = data_dir / name
        if not path.exists():
            return f"{name} is listed in the manifest but missing; run `inferledger verify`"
        if file_sha256(path) != sha:
            return f"{name} does not match its manifest hash; run `inferledger verify`"
    return None


def _remove(data_dir: Path, partitions: list[_Partition], today: date, manifest, actor: str, result: dict) -> dict:
    now = utc_now()
    action_id = new_action_id("retention", now)
    facts = [_facts(data_dir, p) for p in partitions]
    entries = append_entries(data_dir, manifest, [
        {"kind": "retention", "dataset": p.dataset,
         "source": {"action_id": action_id, "partition": f"date={p.day.isoformat()}", "retention_days": p.days,
                    "cutoff": (today - timedelta(days=p.days)).isoformat(),
                    "removes": [{"file": name, "sha256": sha} for name, sha in sorted(p.files.items())]}}
        for p in partitions])
    for partition in partitions:
        remove_files(data_dir, sorted(partition.files) + partition.lingering)
        _remove_empty_dir(data_dir / "parquet" / partition.dataset / f"date={partition.day.isoformat()}")
    rows = [{"action_id": action_id, "applied_at": now, "actor": actor, "dataset": p.dataset,
             "partition_date": p.day, "retention_days": p.days, "cutoff": today - timedelta(days=p.days),
             "files": sorted(p.files), "rows": rows, "bytes": size, "chain_seq": entry["seq"],
             "chain_entry_hash": entry["entry_hash"]}
            for p, (rows, size), entry in zip(partitions, facts, entries)]
    receipt = write_log_table(data_dir, RETENTION_ACTIONS, action_id,
                              pa.Table.from_pylist(rows, schema=RETENTION_SCHEMA), now.date())
    append_entries(data_dir, manifest, [{"kind": "retention_receipt", **receipt, "source": {"action_id": action_id}}])
    result.update(action_id=action_id, receipt_file=receipt["file"],
                  files_removed=sum(len(p.files) for p in partitions),
                  rows_removed=sum(rows for rows, _ in facts),
                  partitions=[{"dataset": r["dataset"], "date": r["partition_date"].isoformat(), "files": r["files"],
                               "rows": r["rows"], "bytes": r["bytes"], "chain_seq": r["chain_seq"]} for r in rows])
    return result


def _facts(data_dir: Path, partition: _Partition) -> tuple[int, int]:
    """(rows, bytes) of a partition's live files, read from the Parquet footers."""
    rows = size = 0
    for name in partition.files:
        path = data_dir / name
        size += path.stat().st_size
        if path.suffix == ".parquet":
            rows += pq.read_metadata(path).num_rows
    return rows, size


def _remove_empty_dir(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:  # not empty: a file the manifest does not list stays for verify to report
        return
    fsync_dir(directory.parent)
