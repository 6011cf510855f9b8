"""Ingest benchmark: durable spans per second through a real `inferledger serve`.

Starts the collector as its own process (fsync on, default settings) on a
temporary data directory, pre-builds realistic OTLP protobuf payloads
(GenAI attributes, 512 spans per request), sends them from several keep-alive
connections for a fixed time, then waits until every acknowledged span is
present in the `inferences` view. Reports, per run and as the median of runs:

- durable spans/s: acknowledged spans / time from the first request until all
  of them were queryable in the warehouse,
- request latency p50/p99 (send to 200),
- collector peak RSS (sampled every 100 ms): the server process, which the target is about,
  and the whole collector (server, fork server, normalizer workers) as the peak of their
  summed PSS (proportional set size: shared pages counted once, split between sharers),
  sampled once a second since reading it costs CPU,

- Parquet bytes per span on disk (the files the warehouse reads, not those a compaction
  replaced and keeps for its grace period),
- calibration: µs per span of normalizing one payload in the benchmark's own process (best of
  5) just before the run. The machine's speed drifts (a shared VM measured the same build at
  55k and 39k spans/s three hours apart); this says how fast it was at the time.

The scheduled jobs are off in the measured server (``--with-jobs`` keeps them on):
this measures the collector; the jobs have their own benchmark (bench/jobs.py).

Usage: python bench/ingest.py [--runs 3] [--seconds 20] [--connections 4] [--spans-per-request 512] [--with-jobs]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span  # noqa: E402

MODELS = [
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("openai", "o3-mini", "o3-mini-2025-01-31"),
]
SERVICES = ["support-assistant", "fraud-screening", "trading-signals"]
TENANTS = [f"tenant-{n}" for n in range(20)]
FEATURES = ["reply", "summarize", "classify", "extract"]


def kv(key: str, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value])))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def typical_span(rng: random.Random, start_ns: int, trace_id: bytes | None = None,
                 parent: bytes | None = None) -> Span:
    """One GenAI chat span as OpenLLMetry and the OTel SDKs send it: 15 attributes, unique ids."""
    provider, model, served = rng.choice(MODELS)
    input_tokens = int(rng.lognormvariate(7, 1)) + 1
    attrs = [
        kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", provider),
        kv("gen_ai.request.model", model), kv("gen_ai.response.model", served),
        kv("gen_ai.request.temperature", 0.2), kv("gen_ai.request.max_tokens", 1024),
        kv("gen_ai.usage.input_tokens", input_tokens),
        kv("gen_ai.usage.output_tokens", int(rng.lognormvariate(5, 1)) + 1),
        kv("gen_ai.usage.cache_read.input_tokens", input_tokens // 2 if rng.random() < 0.4 else 0),
        kv("gen_ai.response.finish_reasons", ["stop"]),
        kv("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(64):016x}"),
        kv("server.address", "api.openai.com" if provider == "openai" else "api.anthropic.com"),
        kv("server.port", 443),
        kv("inferledger.tenant.id", rng.choice(TENANTS)),
        kv("inferledger.feature.name", rng.choice(FEATURES)),
    ]
    begin = start_ns + rng.randint(0, 10**9)
    return Span(
        trace_id=trace_id or rng.randbytes(16), span_id=rng.randbytes(8), parent_span_id=parent or rng.randbytes(8),
        name=f"chat {model}", kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=begin,
        end_time_unix_nano=begin + int(rng.lognormvariate(20, 0.5)), attributes=attrs,
    )


def build_payload(rng: random.Random, spans_per_request: int, start_ns: int) -> tuple[bytes, list[int], list[int]]:
    """One export request (traces of 1-3 inference spans, as a chat service emits them) and the
    byte offsets of every trace id and span id in it, so each send can stamp fresh ids without
    re-encoding."""
    service = rng.choice(SERVICES)
    spans = []
    while len(spans) < spans_per_request:
        trace_id, parent = rng.randbytes(16), rng.randbytes(8)
        for _ in range(min(rng.randint(1, 3), spans_per_request - len(spans))):
            spans.append(typical_span(rng, start_ns, trace_id, parent))
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])
    resource.resource.attributes.extend([kv("service.name", service), kv("service.version", "1.4.2"),
                                         kv("deployment.environment.name", "prod")])
    body = ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString()
    return body, _offsets(body, {span.trace_id for span in spans}), _offsets(body, {span.span_id for span in spans})


def _offsets(body: bytes, ids: set[bytes]) -> list[int]:
    found = []
    for value in ids:
        at = body.find(value)
        while at != -1:
            found.append(at)
            at = body.find(value, at + len(value))
    return found


def stamp(template: tuple[bytes, list[int], list[int]], send_number: int) -> bytes:
    """A copy of the payload whose trace ids start with ``send_number`` (6 bytes) and span ids
    with its connection (1 byte) and send (3 bytes): every send is new data, and span ids stay
    unique as real (random 64-bit) ones are. Before, span ids left the connection out and
    repeated across connections, which sent compaction down its path for colliding span ids."""
    body, trace_offsets, span_offsets = template
    buffer = bytearray(body)
    span_prefix = ((send_number >> 32) % 256).to_bytes(1, "big") + (send_number % 2**24).to_bytes(3, "big")
    for offsets, prefix in ((trace_offsets, send_number.to_bytes(6, "big")), (span_offsets, span_prefix)):
        for offset in offsets:
            buffer[offset:offset + len(prefix)] = prefix
    return bytes(buffer)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_collector(data_dir: Path, port: int, with_jobs: bool = False) -> subprocess.Popen:
    """``inferledger serve`` as deployed, but for the scheduled jobs unless ``with_jobs``: their
    catch-up at start and their rollups of the day being written share the two cores."""
    env = {**os.environ, "INFERLEDGER_SUBJECT_KEY": "ab" * 32,
           "INFERLEDGER_JOBS__ENABLED": "true" if with_jobs else "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "inferledger.cli", "serve", "--data-dir", str(data_dir), "--http-port", str(port),
         "--grpc-port", str(free_port())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"collector did not start: {process.stderr.read().decode()}")


def sender(port: int, payloads: list, spans: int, stop_at: float, results: dict, lock: threading.Lock,
           first_send: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-protobuf"}
    latencies, acked, index = [], 0, 0
    while time.monotonic() < stop_at:
        body = stamp(payloads[index % len(payloads)], first_send + index)
        index += 1
        began = time.perf_counter()
        conn.request("POST", "/v1/traces", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - began)
        if response.status == 200:
            acked += spans
        else:
            time.sleep(float(response.getheader("Retry-After") or 0.1))
    with lock:
        results["latencies"].extend(latencies)
        results["acked"] += acked


def pss_bytes(pid: int) -> int:
    """A process's proportional set size (Linux), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def live_parquet_bytes(data_dir: Path) -> int:
    """Bytes of the inferences files the warehouse reads: files a compaction replaced stay on
    disk for a grace period (60 s) and would be counted twice."""
    from warehouse.manifest import manifest_path, read_entries

    entries = list(read_entries(manifest_path(data_dir)))
    replaced = {name["file"] for e in entries if e.get("kind") == "compaction" for name in e["source"]["replaces"]}
    return sum((data_dir / e["file"]).stat().st_size for e in entries
               if e.get("dataset") == "inferences" and e.get("kind") in ("segment", "compaction")
               and e["file"] not in replaced)


def count_rows(data_dir: Path) -> int:
    from warehouse.catalog import query

    return query(data_dir, "select count(*) as n from inferences").to_pylist()[0]["n"]


def calibration_us_per_span(body: bytes, spans: int) -> float:
    """How fast the machine is right now: normalizing one payload here, best of 5."""
    from collector.normalize import NormalizeSettings, normalize_protobuf

    settings, now, best = NormalizeSettings(subject_key=b"calibration"), datetime.now(timezone.utc), float("inf")
    for _ in range(5):
        started = time.perf_counter()
        normalize_protobuf(body, settings, now)
        best = min(best, time.perf_counter() - started)
    return best / spans * 1e6


def run_once(args, payloads: list[bytes]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="inferledger-bench-"))
    calibration = calibration_us_per_span(payloads[0][0], args.spans_per_request)
    port = free_port()
    process = start_collector(work / "data", port, args.with_jobs)
    proc = psutil.Process(process.pid)
    peak_rss, peak_tree_pss, sampling = [0], [0], [True]

    def sample() -> None:
        ticks = 0
        while sampling[0]:
            peak_rss[0] = max(peak_rss[0], proc.memory_info().rss)
            if ticks % 10 == 0:  # reading a process's PSS costs ~4 ms of CPU: once a second
                peak_tree_pss[0] = max(peak_tree_pss[0],
                                       sum(pss_bytes(p.pid) for p in [proc, *proc.children(recursive=True)]))
            ticks += 1
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    results, lock = {"latencies": [], "acked": 0}, threading.Lock()
    began = time.monotonic()
    threads = [threading.Thread(target=sender, args=(port, payloads, args.spans_per_request,
                                                     began + args.seconds, results, lock, (i + 1) << 32))
               for i in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while count_rows(work / "data") < results["acked"]:
        if time.monotonic() - began > args.seconds + 120:
            raise SystemExit("acknowledged spans did not all land within 120 s")
        time.sleep(0.05)
    durable_after = time.monotonic() - began
    sampling[0] = False
    rows = count_rows(work / "data")
    parquet_bytes = live_parquet_bytes(work / "data")
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    shutil.rmtree(work, ignore_errors=True)
    latencies = sorted(results["latencies"])
    return {
        "acknowledged_spans": results["acked"],
        "rows_in_warehouse": rows,
        "durable_spans_per_s": results["acked"] / durable_after,
        "latency_p50_ms": 1000 * latencies[len(latencies) // 2],
        "latency_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "peak_rss_mb": peak_rss[0] / 2**20,
        "peak_collector_pss_mb": peak_tree_pss[0] / 2**20,
        "parquet_bytes_per_span": parquet_bytes / max(rows, 1),
        "calibration_us_per_span": calibration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--spans-per-request", type=int, default=512)
    parser.add_argument("--payloads", type=int, default=64, help="distinct pre-built payloads to cycle through")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--with-jobs", action="store_true",
                        help="keep the scheduled jobs on in the server (off by default: this measures the collector)")
    args = parser.parse_args()
    rng = random.Random(42)
    now_ns = time.time_ns()
    payloads = [build_payload(rng, args.spans_per_request, now_ns - i * 10**9) for i in range(args.payloads)]
    runs = []
    for run in range(args.runs):
        result = run_once(args, payloads)
        runs.append(result)
        print(f"run {run + 1}: " + ", ".join(f"{k}={v:,.1f}" for k, v in result.items()), flush=True)
    summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"median of {args.runs} runs on {machine}:")
    for key, value in summary.items():
        print(f"  {key:24s} {value:,.1f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "runs": runs, "median": summary}, indent=2))


if __name__ == "__main__":
    main()
