"""Benchmark: every scheduled job over 7 days and 10 million inference records.

    .venv/bin/python bench/jobs.py [--records 10000000] [--days 7] [--runs 3] [--data-dir DIR] [--keep]

Writes ``--records`` synthetic inference records (three services, ten models with
versions, tenants, features, decisions with scores, app-level retries with
request keys, errors, cache reads, a batch tier, an unpriced model) straight into
the warehouse layout (0.1% of the spans twice, as exporter retries leave them), then runs every job of the registry over all windows of the
period, as ``inferledger jobs run all --from --to`` does, ``--runs`` times as a first
run (results, duplicate indexes and caches cleared before each; each run in its own
process), and reports wall time per job, the median total and the peak resident memory
of the process (DuckDB's memory included; jobs
run with the default ``[jobs]`` memory limit).
Target (issue 4): under 60 s in total and under 2 GB peak.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferledger.config import load_config  # noqa: E402
from warehouse.catalog import ensure_schema_files  # noqa: E402
from warehouse.jobs.config import BudgetConfig  # noqa: E402
from warehouse.jobs.registry import all_jobs  # noqa: E402
from warehouse.jobs.runner import JobContext, run_job, windows_between  # noqa: E402
from warehouse.pricing.book import load_book  # noqa: E402
from warehouse.pricing.cost import price_table  # noqa: E402
from warehouse.record import RECORD_SCHEMA, SCHEMA_VERSION  # noqa: E402

# (service, provider, model, model_version, decision labels or None, tier)
MIX = [
    ("fraud-screening", "self-hosted", "fraud-xgb", "v3", ("approve", "review", "decline"), None),
    ("fraud-screening", "self-hosted", "fraud-xgb", "v4", ("approve", "review", "decline"), None),
    ("fraud-screening", "openai", "gpt-4o-mini", None, ("approve", "decline"), None),
    ("support-assistant", "openai", "gpt-4o", None, None, None),
    ("support-assistant", "anthropic", "claude-sonnet-4-5", None, None, None),
    ("support-assistant", "openai", "gpt-4o-mini", None, None, None),
    ("trading-signals", "openai", "gpt-4o-mini", None, ("buy", "hold", "sell"), "batch"),
    ("trading-signals", "openai", "o3", None, ("buy", "hold", "sell"), None),
    ("trading-signals", "deepseek", "deepseek-chat", None, ("buy", "hold", "sell"), None),
    ("trading-signals", "mystery", "unknown-model", None, None, None),
]
TENANTS = ["acme", "globex", "initech", "umbrella"]
FEATURES = ["chat", "screening", "signals", "summaries"]


RESENT_EVERY = 1000  # one span in a thousand arrives twice


def synthetic(day: date, rows: int, offset: int, seed: int) -> pa.Table:
    """``rows`` records over one day; every 10th logical request has a failed first attempt."""
    index = pa.arange(offset, offset + rows)
    random = lambda k: pc.random(rows, initializer=seed * 31 + k)  # noqa: E731
    pick = pc.cast(pc.floor(pc.multiply(random(0), len(MIX))), pa.int64())
    column = lambda i: pa.array([m[i] for m in MIX], pa.string()).take(pick)  # noqa: E731
    integer = lambda k, scale: pc.cast(pc.floor(pc.multiply(random(k), scale)), pa.int64())  # noqa: E731
    input_tokens = pc.add(pc.cast(pc.floor(pc.power(2.0, pc.multiply(random(1), 14.0))), pa.int64()), 20)
    start_us = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp() * 1e6)
    start = pc.cast(pc.add(integer(2, 86_400_000_000), start_us), pa.timestamp("us", tz="UTC"))
    labels = pa.array([m[4][0] if m[4] else None for m in MIX], pa.string()).take(pick)
    label_pick = integer(5, 3)
    decision = pc.if_else(pc.is_null(labels), pa.nulls(rows, pa.string()),
                          pc.choose(label_pick, pa.repeat(pa.scalar("approve"), rows),
                                    pa.repeat(pa.scalar("review"), rows), pa.repeat(pa.scalar("decline"), rows)))
    # records 16k and 16k+1 are attempts 0 (failed) and 1 of one logical request; the rest are single
    paired = pc.less(pc.bit_wise_and(index, 15), 2)
    retried = pc.and_(paired, pc.equal(pc.bit_wise_and(index, 1), 0))
    request_key = pc.if_else(paired, pc.binary_join_element_wise("p-", pc.cast(pc.divide(index, 2), pa.string()), ""),
                             pc.binary_join_element_wise("s-", pc.cast(index, pa.string()), ""))
    values = {
        "trace_id": pc.utf8_lpad(pc.cast(index, pa.string()), 32, "0"),
        "span_id": pc.utf8_lpad(pc.cast(index, pa.string()), 16, "0"),
        "start_time": start, "ingest_time": start, "end_time": start,
        "duration_ms": pc.multiply(pc.power(2.0, pc.multiply(random(3), 11.0)), 1.0),
        "service_name": column(0), "provider": column(1), "request_model": column(2), "response_model": column(2),
        "model_version": column(3), "pricing_tier": column(5), "operation": pa.repeat(pa.scalar("chat"), rows),
        "deployment_environment": pa.repeat(pa.scalar("production"), rows),
        "tenant": pa.array(TENANTS).take(integer(6, len(TENANTS))),
        "feature": pa.array(FEATURES).take(integer(7, len(FEATURES))),
        "input_tokens": input_tokens,
        "cache_read_tokens": pc.cast(pc.floor(pc.multiply(input_tokens, pc.multiply(random(8), 0.5))), pa.int64()),
        "output_tokens": pc.add(integer(4, 800), 1),
        "decision_label": decision, "decision_score": pc.if_else(pc.is_null(decision), None, random(9)),
        "status": pc.if_else(retried, pa.scalar("error"), pa.scalar("ok")),
        "error_type": pc.if_else(retried, pa.scalar("RateLimitError"), pa.nulls(rows, pa.string())),
        "request_key": request_key,
        "attempt": pc.if_else(paired, pc.bit_wise_and(index, 1), 0),
    }
    return pa.table({f.name: values.get(f.name, pa.nulls(rows, f.type)) for f in RECORD_SCHEMA},
                    schema=RECORD_SCHEMA)


def write_records(data_dir: Path, book, records: int, days: int, first_day: date) -> None:
    """Four segments a day, as compaction leaves them, and a fifth with 0.1% of the day's spans
    received a second time (exporter retries). File times are the end of their day, as if landed
    then: the jobs find settled days, as a backfill or a weekly run does."""
    ensure_schema_files(data_dir, fsync=False)
    per_day = records // days
    for n in range(days):
        day = first_day + timedelta(days=n)
        folder = data_dir / "parquet" / "inferences" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = per_day // 4
        for part in range(4):
            table = price_table(synthetic(day, rows, n * per_day + part * rows, n * 100 + part), book)
            write_segment(table, folder / f"v{SCHEMA_VERSION}-bench-{part:04d}.parquet")
            if part == 0:
                resent = table.take(pa.arange(0, rows, RESENT_EVERY))
                later = pc.add(resent["ingest_time"], pa.scalar(5_000_000, pa.duration("us")))
                resent = resent.set_column(resent.schema.get_field_index("ingest_time"), "ingest_time", later)
        write_segment(resent, folder / f"v{SCHEMA_VERSION}-bench-0004.parquet")
        landed = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp()
        for path in [*folder.iterdir(), folder]:
            os.utime(path, (landed, landed))


def write_segment(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", row_group_size=256 * 1024)


def run_all(data_dir: Path, book, first_day: date, days: int) -> float:
    config = load_config(None, environ={}, data_dir=data_dir)
    budgets = (BudgetConfig(name="all", amount_usd=50_000.0),
               BudgetConfig(name="fraud", service="fraud-screening", amount_usd=5_000.0, unit_cost_usd=0.002,
                            unit="decision"),
               BudgetConfig(name="acme", tenant="acme", period="week", amount_usd=3_000.0))
    start = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
    end = start + timedelta(days=days)
    context = JobContext(data_dir, config.jobs, budgets, end, book)
    total = 0.0
    for job in all_jobs():
        windows = windows_between(job.granularity, start, end)
        started = time.perf_counter()
        record = run_job(job, context, windows, trigger="bench")
        seconds = time.perf_counter() - started
        total += seconds
        print(f"  {job.name:<14} {len(windows):>4} windows  {record.rows:>9,} rows  {seconds:6.1f} s  {record.status}"
              + (f"  {record.error.splitlines()[0]}" if record.error else ""))
    return total


def first_run_in_child(data_dir: Path, book, first_day: date, days: int) -> tuple[float, float]:
    """Every job over the period as on a first run: no results, no duplicate indexes, no caches.

    In a child process, so each run's peak memory is its own."""
    shutil.rmtree(data_dir / "results", ignore_errors=True)
    shutil.rmtree(data_dir / "cache", ignore_errors=True)
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)

    def child() -> None:
        total = run_all(data_dir, book, first_day, days)
        send.send((total, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    result = receive.recv()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None, help="Reuse or keep data here (implies --keep).")
    parser.add_argument("--keep", action="store_true", help="Keep the generated data directory.")
    parser.add_argument("--runs", type=int, default=3, help="First runs of every job (results cleared before each).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferledger-bench-jobs-"))
    data_dir = args.data_dir or work / "data"
    first_day = date(2026, 11, 2)
    try:
        book = load_book(None)
        if not (data_dir / "parquet" / "inferences").exists():  # in a child, so its memory is not counted
            started = time.perf_counter()
            writer = multiprocessing.get_context("fork").Process(
                target=write_records, args=(data_dir, book, args.records, args.days, first_day))
            writer.start()
            writer.join()
            print(f"wrote {args.records:,} records over {args.days} days in {time.perf_counter() - started:.1f} s")
        totals, peaks = [], []
        for run in range(1, args.runs + 1):
            total, peak_mb = first_run_in_child(data_dir, book, first_day, args.days)
            totals.append(total)
            peaks.append(peak_mb)
            print(f"run {run}: all jobs {total:.1f} s, peak RSS {peak_mb:,.0f} MB")
        print(f"median of {args.runs} runs on {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}: all jobs {statistics.median(totals):.1f} s (target < 60 s), "
              f"peak RSS {statistics.median(peaks):,.0f} MB (target < 2,048 MB)")
    finally:
        if not (args.keep or args.data_dir):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
