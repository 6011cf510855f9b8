"""Benchmark: the weekly email and the compliance audit report over 10 million records.

    .venv/bin/python bench/reports.py [--records 10000000] [--days 7] [--data-dir DIR]

Uses bench/jobs.py's generator and its jobs run (the weekly email reads the daily
rollups and the variance results, as it does in production, where the scheduler
has run them long before Monday 08:00). The synthetic segments are entered in the
manifest so the audit report's hash-chain check and reconciliation do real work.
Times only the two reports; target (issue 6): both under 30 s.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.jobs import run_all, write_records  # noqa: E402
from inferledger.config import load_config  # noqa: E402
from reports.audit_files import write_audit  # noqa: E402
from reports.decisions import Scope  # noqa: E402
from reports.weekly import IsoWeek, build_weekly  # noqa: E402
from reports.weekly_email import build_message  # noqa: E402
from warehouse.manifest import Manifest, file_sha256, manifest_path  # noqa: E402
from warehouse.pricing.book import load_book  # noqa: E402

FIRST_DAY = date(2026, 11, 2)  # Monday of 2026-W45


def enter_in_manifest(data_dir: Path) -> None:
    """Chain every synthetic segment, as the lander would have."""
    manifest = Manifest(manifest_path(data_dir), fsync=False)
    try:
        files = sorted((data_dir / "parquet" / "inferences").glob("date=2*/*.parquet"))
        manifest.append([{"kind": "segment", "dataset": "inferences", "file": path.relative_to(data_dir).as_posix(),
                          "rows": pq.read_metadata(path).num_rows, "bytes": path.stat().st_size,
                          "sha256": file_sha256(path), "source": {"wal": f"{i:020d}-bench", "part": 0, "parts": 1}}
                         for i, path in enumerate(files)])
    finally:
        manifest.close()


def prepare(data_dir: Path, records: int, days: int) -> None:
    book = load_book(None)
    if not (data_dir / "parquet" / "inferences").exists():
        writer = multiprocessing.get_context("fork").Process(target=write_records,
                                                             args=(data_dir, book, records, days, FIRST_DAY))
        writer.start()
        writer.join()
    if not manifest_path(data_dir).exists() or not manifest_path(data_dir).stat().st_size:
        enter_in_manifest(data_dir)
    if not (data_dir / "results" / "rollup_daily").exists():
        run_all(data_dir, book, FIRST_DAY, days)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None, help="Reuse or keep data here.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferledger-bench-reports-"))
    data_dir = args.data_dir or work / "data"
    try:
        preparing = multiprocessing.get_context("fork").Process(target=prepare,  # its memory is not counted
                                                                args=(data_dir, args.records, args.days))
        preparing.start()
        preparing.join()
        config = load_config(None, environ={}, data_dir=data_dir, budgets=[{"name": "all", "amount_usd": 50000.0}])
        now = datetime.combine(FIRST_DAY + timedelta(days=args.days), datetime.min.time(), tzinfo=UTC) \
            + timedelta(hours=8)
        started = time.perf_counter()
        report = build_weekly(data_dir, config.reports, list(config.budgets), IsoWeek.containing(FIRST_DAY), now)
        message = build_message(report, config.reports, ["lead@example.com"])
        weekly_s = time.perf_counter() - started
        print(f"weekly email: {weekly_s:.1f} s  \"{report.subject}\"  ({len(message.as_bytes()):,} bytes)")
        started = time.perf_counter()
        audit = write_audit(data_dir, Scope(FIRST_DAY, FIRST_DAY + timedelta(days=args.days - 1)), config.reports,
                            work / "audit", seed=1)
        audit_s = time.perf_counter() - started
        print(f"audit report: {audit_s:.1f} s  {audit.totals['records']:,} records, {audit.population_rows:,} "
              f"decisions exported, chain {'intact' if audit.chain.intact else 'NOT intact'}")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"both reports: {weekly_s + audit_s:.1f} s (target < 30 s), peak RSS {peak_mb:,.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
