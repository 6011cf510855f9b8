"""Storage micro-benchmark: durable appends straight into warehouse.storage.Storage.

No HTTP, no decoding: several threads append synthetic GenAI-like 512-row batches
(each thread keeps a few appends in flight, as a server does with concurrent
requests), fsync on, for a fixed time. Then everything is flushed to Parquet and
the partitions are compacted. Reports:

- appends/s and rows/s acknowledged (= fsynced to the WAL), fsyncs and rows per fsync,
- seconds from the end of the run until every acknowledged row was in Parquet,
- WAL bytes per row, Parquet bytes per row as landed (1 s segments) and after compaction,
- peak RSS of the process.

Rows are unique per append (fresh trace/span ids and response ids) so neither
deduplication nor compression gets help from repeats.

Usage: python bench/storage_micro.py [--seconds 10] [--threads 4] [--in-flight 4] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from warehouse.catalog import query  # noqa: E402
from warehouse.compaction import CompactionSettings  # noqa: E402
from warehouse.record import to_batch  # noqa: E402
from warehouse.storage import Storage, StorageSettings  # noqa: E402

ROWS_PER_BATCH = 512
POOL_BATCHES = 64
SERVICES = ["checkout-assistant", "support-bot", "search-rerank", "fraud-scorer", "doc-summarizer"]
MODELS = [("openai", "gpt-4o", "gpt-4o-2024-08-06"), ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
          ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
          ("openai", "text-embedding-3-small", "text-embedding-3-small"),
          ("aws.bedrock", "anthropic.claude-3-haiku", "anthropic.claude-3-haiku-20240307-v1:0")]
TENANTS = [f"tenant-{i:03d}" for i in range(50)]
FEATURES = ["chat", "summarize", "classify", "search", "draft-reply", "extract", "translate", "qa", "agent", "triage"]
BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ATTRIBUTES_TEMPLATE = ('{{"gen_ai.response.id": "chatcmpl-{}", "gen_ai.request.temperature": 0.2, '
                       '"server.address": "api.openai.com"}}')


def synthetic_rows(n: int, rng: random.Random, t0: datetime, users: list[str]) -> list[dict]:
    """GenAI-like spans: 1-4 inference spans per trace, lognormal tokens and latency."""
    rows: list[dict] = []
    while len(rows) < n:
        trace, parent = os.urandom(16).hex(), os.urandom(8).hex()
        service, tenant, feature = rng.choice(SERVICES), rng.choice(TENANTS), rng.choice(FEATURES)
        conversation = str(uuid.UUID(int=rng.getrandbits(128))) if rng.random() < 0.5 else None
        user = rng.choice(users)
        for _ in range(min(rng.randint(1, 4), n - len(rows))):
            rows.append(_span(rng, t0, trace, parent, service, tenant, feature, conversation, user))
    return rows


def _span(rng, t0, trace, parent, service, tenant, feature, conversation, user) -> dict:
    provider, requested, served = rng.choice(MODELS)
    start = t0 + timedelta(microseconds=rng.randint(0, 999_999))
    end = start + timedelta(milliseconds=rng.lognormvariate(6.5, 0.8))
    input_tokens, output_tokens = int(rng.lognormvariate(7, 1)), int(rng.lognormvariate(5, 1))
    ok = rng.random() > 0.02
    return dict(
        trace_id=trace, span_id=os.urandom(8).hex(), parent_span_id=parent, start_time=start, end_time=end,
        duration_ms=(end - start).total_seconds() * 1000, span_name=f"chat {requested}",
        service_name=service, service_version="1.4.2", environment="production", tenant=tenant,
        feature=feature, operation="embeddings" if "embedding" in requested else "chat",
        provider=provider, request_model=requested, response_model=served, model_version=served,
        input_tokens=input_tokens, output_tokens=output_tokens,
        cache_read_tokens=int(input_tokens * rng.random()) if rng.random() < 0.3 else 0,
        cache_write_tokens=0, status="ok" if ok else "error", error_type=None if ok else "RateLimitError",
        finish_reasons=["stop"] if ok else None, attempt=0, user_id=user, conversation_id=conversation,
        pricing_tier="standard", cost_usd=round(input_tokens * 2.5e-6 + output_tokens * 1e-5, 8),
        cost_source="computed", price_ref=f"genai-prices:{provider}:{requested}@2025-01-01",
        convention="otel_genai", attributes=_attributes(rng),
        resource=json.dumps({"service.name": service, "service.version": "1.4.2",
                             "telemetry.sdk.language": "python"}),
        ingest_time=end + timedelta(milliseconds=rng.randint(50, 2000)))


def _attributes(rng: random.Random) -> str:
    return ATTRIBUTES_TEMPLATE.format("".join(rng.choice(BASE62) for _ in range(29)))


def build_pool(seed: int = 7) -> list[pa.RecordBatch]:
    rng = random.Random(seed)
    users = [rng.randbytes(32).hex() for _ in range(1000)]
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    return [to_batch(synthetic_rows(ROWS_PER_BATCH, rng, t0 + timedelta(seconds=i), users))
            for i in range(POOL_BATCHES)]


def fresh_copy(batch: pa.RecordBatch, shift: timedelta) -> pa.RecordBatch:
    """Same rows with new ids and response ids, times moved by ``shift``: nothing repeats."""
    n = batch.num_rows
    columns = dict(zip(batch.schema.names, batch.columns))
    traces = pc.dictionary_encode(columns["trace_id"])
    columns["trace_id"] = pc.take(_random_hex(len(traces.dictionary), 16), traces.indices)
    columns["parent_span_id"] = pc.take(_random_hex(len(traces.dictionary), 8), traces.indices)
    columns["span_id"] = _random_hex(n, 8)
    columns["attributes"] = _fresh_attributes(n)
    delta = pa.scalar(shift, pa.duration("us"))
    for name in ("start_time", "end_time", "ingest_time"):
        columns[name] = pc.add(columns[name], delta)
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=batch.schema)


def _fresh_attributes(count: int) -> pa.Array:
    """Like _attributes, with random response ids made in bulk (the bench must not be the bottleneck)."""
    ids = base64.b64encode(os.urandom(count * 22), altchars=b"xy").decode()
    return pa.array([ATTRIBUTES_TEMPLATE.format(ids[i * 29:(i + 1) * 29]) for i in range(count)], pa.string())


def _random_hex(count: int, nbytes: int) -> pa.Array:
    text = os.urandom(count * nbytes).hex()
    width = 2 * nbytes
    return pa.array([text[i:i + width] for i in range(0, count * width, width)], pa.string())


def run_appenders(storage: Storage, pool: list[pa.RecordBatch], seconds: float, threads: int,
                  in_flight: int) -> dict:
    """Append until time is up; like a server, wait (5 ms) whenever can_accept() says no."""
    acked = [0] * threads
    refused = [0] * threads
    stop_at = time.monotonic() + seconds
    pool_start = pool[0].column("start_time")[0].as_py()

    def worker(index: int) -> None:
        pending: deque = deque()
        turn = index
        while time.monotonic() < stop_at:
            ok, _ = storage.can_accept()
            if not ok:
                refused[index] += 1
                time.sleep(0.005)
                continue
            shift = datetime.now(timezone.utc) - pool_start - timedelta(seconds=turn % len(pool))
            batch = fresh_copy(pool[turn % len(pool)], shift)
            turn += threads
            pending.append(storage.append("inferences", batch))
            if len(pending) >= in_flight:
                pending.popleft().result()
                acked[index] += 1
        for future in pending:
            future.result()
            acked[index] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return {"appends": sum(acked), "refused": sum(refused), "seconds": time.monotonic() - started}


def parquet_bytes(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in (data_dir / "parquet" / "inferences").glob("*/*.parquet")
               if not path.name.endswith("-schema.parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=4, help="appends each thread keeps waiting")
    parser.add_argument("--wal-compression", default="none", choices=["none", "lz4", "zstd"])
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()

    print(f"building {POOL_BATCHES} synthetic batches of {ROWS_PER_BATCH} rows ...", flush=True)
    pool = build_pool()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="storage-micro-"))
    compression = None if args.wal_compression == "none" else args.wal_compression
    # Compaction is measured separately below, so it does not compete during the run.
    settings = StorageSettings(wal_compression=compression,
                               compaction=CompactionSettings(interval_s=3600, idle_s=0))
    storage = Storage(data_dir, settings)
    storage.start()
    try:
        result = run_appenders(storage, pool, args.seconds, args.threads, args.in_flight)
        end_of_run = time.monotonic()
        storage.flush()
        land_lag = time.monotonic() - end_of_run
        stats = storage.stats()
        rows = result["appends"] * ROWS_PER_BATCH
        landed_bytes = parquet_bytes(data_dir)
        segments = stats["segment_files"]
        compact_started = time.monotonic()
        while storage.compactor.run_once():
            pass
        compact_seconds = time.monotonic() - compact_started
        storage.compactor.delete_expired(force=True)
        compacted_bytes = parquet_bytes(data_dir)
        visible = query(data_dir, "SELECT count(*) AS n FROM inferences").column("n")[0].as_py()
    finally:
        storage.stop()
    report(args, result, rows, stats, land_lag, landed_bytes, segments, compacted_bytes,
           compact_seconds, visible)
    if args.data_dir is None:
        shutil.rmtree(data_dir)


def report(args, result, rows, stats, land_lag, landed_bytes, segments, compacted_bytes,
           compact_seconds, visible) -> None:
    seconds = result["seconds"]
    lines = [
        f"threads={args.threads} in_flight={args.in_flight} seconds={seconds:.1f} "
        f"wal_compression={args.wal_compression} cpus={os.cpu_count()}",
        f"appends/s          {result['appends'] / seconds:10.0f}",
        f"rows/s durable     {rows / seconds:10.0f}   (acknowledged after fsync; "
        f"{result['refused']} can_accept() refusals)",
        f"rows/s end to end  {rows / (seconds + land_lag):10.0f}   (until all rows are in Parquet)",
        f"fsyncs             {stats['wal_fsyncs']:10d}   ({rows / max(1, stats['wal_fsyncs']):.0f} rows per fsync)",
        f"landing lag        {land_lag:10.2f} s after the last ack",
        f"WAL bytes/row      {stats['wal_bytes_written'] / rows:10.1f}",
        f"Parquet bytes/row  {landed_bytes / rows:10.1f}   as landed ({segments} segments)",
        f"Parquet bytes/row  {compacted_bytes / rows:10.1f}   after compaction ({compact_seconds:.1f} s)",
        f"rows in view       {visible:10d}   (expected {rows})",
        f"peak RSS           {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:10.0f} MiB",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
