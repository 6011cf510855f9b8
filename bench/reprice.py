"""Benchmark: costing on the ingest path, and repricing 10 million stored records.

    .venv/bin/python bench/reprice.py [--records 10000000] [--days 10] [--data-dir DIR]

1. ``price_table`` per batch size, in microseconds per span, against the ingest
   budget: at 50,000 spans/s a span has 20 us, so costing may take 1 us (5%).
2. Writes ``--records`` synthetic inference records as Parquet under the
   warehouse layout (parquet/inferences/date=YYYY-MM-DD/), priced at landing with
   a user price file, then changes a price mid-period and times ``reprice`` over
   the whole period twice (first run: no earlier versions; second run: a second
   price change, compared against the first run's versions).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warehouse.pricing.book import load_book  # noqa: E402
from warehouse.pricing.cost import price_table  # noqa: E402
from warehouse.pricing.reprice import reprice  # noqa: E402
from warehouse.record import RECORD_SCHEMA  # noqa: E402

# (provider, model, compute_pool): list models, a tiered one, a time-of-day one, a user
# entry, a capacity pool and an unknown model, so every path of the costing runs.
MIX = [
    ("openai", "gpt-4o", None), ("openai", "gpt-4o-mini", None), ("openai", "o3", None),
    ("anthropic", "claude-sonnet-4-5", None), ("gcp.vertex_ai", "gemini-2.5-pro", None),
    ("deepseek", "deepseek-chat", None), ("openai", "ft:gpt-4o-mini:acme::bench", None),
    ("azure.ai.openai", "prod-gpt4o", None), ("self-hosted", "fraud-xgb", "fraud-gpu"),
    ("mystery", "unknown-model", None),
]
PRICES_V1 = """
[[model]]
id = "acme/ft-gpt-4o-mini"
provider = "openai"
patterns = ["^ft:gpt-4o-mini:acme:"]
effective_from = 2025-01-01
input_mtok = 0.30
output_mtok = 1.20

[[alias]]
provider = "azure.ai.openai"
name = "prod-gpt4o"
model = "gpt-4o"

[[pool]]
name = "fraud-gpu"
effective_from = 2025-01-01
gpus = 8
gpu_hour_usd = 2.85
"""
PRICES_V2_EXTRA = """
[[model]]
id = "acme/ft-gpt-4o-mini"
provider = "openai"
patterns = ["^ft:gpt-4o-mini:acme:"]
effective_from = {change}
input_mtok = 0.25
output_mtok = 1.00
"""
PRICES_V3_EXTRA = """
[[model]]
id = "acme/ft-gpt-4o-mini"
provider = "openai"
patterns = ["^ft:gpt-4o-mini:acme:"]
effective_from = {change}
input_mtok = 0.20
output_mtok = 0.80
"""


def synthetic(day: date, rows: int, offset: int, seed: int) -> pa.Table:
    """``rows`` records spread over one day, drawn from MIX, with plausible token counts."""
    index = pa.arange(offset, offset + rows)
    pick = pc.cast(pc.floor(pc.multiply(pc.random(rows, initializer=seed), len(MIX))), pa.int64())
    column = lambda i: pa.array([m[i] for m in MIX], pa.string()).take(pick)  # noqa: E731
    uniform = lambda k, scale: pc.cast(pc.floor(pc.multiply(pc.random(rows, initializer=seed + k), scale)),  # noqa: E731
                                       pa.int64())
    input_tokens = pc.add(uniform(1, 3000), 50)
    start_us = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp() * 1e6)
    start = pc.cast(pc.add(uniform(2, 86_400_000_000), start_us), pa.timestamp("us", tz="UTC"))
    values = {
        "trace_id": pc.utf8_lpad(pc.cast(index, pa.string()), 32, "0"),
        "span_id": pc.utf8_lpad(pc.cast(index, pa.string()), 16, "0"),
        "start_time": start, "ingest_time": start,
        "duration_ms": pc.multiply(pc.random(rows, initializer=seed + 3), 2000.0),
        "provider": column(0), "request_model": column(1), "response_model": column(1), "compute_pool": column(2),
        "input_tokens": input_tokens,
        "cache_read_tokens": pc.cast(pc.floor(pc.multiply(input_tokens, 0.3)), pa.int64()),
        "output_tokens": pc.add(uniform(4, 800), 1),
        "tenant": pa.repeat(pa.scalar("acme"), rows),
    }
    return pa.table({f.name: values.get(f.name, pa.nulls(rows, f.type)) for f in RECORD_SCHEMA},
                    schema=RECORD_SCHEMA)


def bench_costing(book) -> None:
    print("costing on the ingest path (price_table, warm cache)")
    budget_us = 1e6 / 50_000 * 0.05
    for size in (512, 2048, 8192, 65536):
        table = synthetic(date(2025, 6, 1), size, 0, 7)
        price_table(table, book)
        repeats = max(3, 200_000 // size)
        started = time.perf_counter()
        for _ in range(repeats):
            price_table(table, book)
        per_span = (time.perf_counter() - started) / (repeats * size) * 1e6
        print(f"  batch {size:>6}: {per_span:6.3f} us/span = {per_span / 20 * 100:5.2f}% of a span's time "
              f"at 50,000 spans/s (budget {budget_us:.1f} us = 5%)")


def write_records(data_dir: Path, book, records: int, days: int, first_day: date) -> float:
    per_day = records // days
    started = time.perf_counter()
    for n in range(days):
        day = first_day + timedelta(days=n)
        folder = data_dir / "parquet" / "inferences" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        for part in range(4):  # four segments a day, as landing would write several
            rows = per_day // 4
            table = price_table(synthetic(day, rows, n * per_day + part * rows, n * 100 + part), book)
            pq.write_table(table, folder / f"seg-{part:04d}.parquet", compression="zstd")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferledger-bench-"))
    data_dir = args.data_dir or work / "data"
    first_day, last_day = date(2025, 6, 1), date(2025, 6, 1) + timedelta(days=args.days - 1)
    v1, v2, v3 = work / "prices-v1.toml", work / "prices-v2.toml", work / "prices-v3.toml"
    v1.write_text(PRICES_V1)
    change = first_day + timedelta(days=args.days // 2)
    v2.write_text(PRICES_V1 + PRICES_V2_EXTRA.format(change=change.isoformat()))
    v3.write_text(v2.read_text() + PRICES_V3_EXTRA.format(change=(change + timedelta(days=1)).isoformat()))
    try:
        book = load_book(v1)
        bench_costing(book)
        seconds = write_records(data_dir, book, args.records, args.days, first_day)
        print(f"wrote {args.records:,} records over {args.days} days, priced at landing, in {seconds:.1f} s")
        for run, prices in ((1, v2), (2, v3)):
            new_book = load_book(prices)  # a fresh book: no warm lookup cache
            started = time.perf_counter()
            result = reprice(data_dir, new_book, first_day, last_day, actor="bench", reason=f"price change {run}",
                             closed_before=datetime(2100, 1, 1, tzinfo=UTC))
            seconds = time.perf_counter() - started
            print(f"reprice run {run}: {result.records:,} records in {seconds:.1f} s "
                  f"({result.records / seconds:,.0f} records/s), version {result.cost_version}, "
                  f"{result.changed:,} changed, ${result.total_before_usd:,.2f} -> ${result.total_after_usd:,.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
