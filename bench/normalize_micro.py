"""Micro-benchmark of the collector's pure stage: decode + normalize, in µs per span.

Builds one 512-span OTLP request of typical GenAI chat spans (15 attributes
each: OTel GenAI names as OpenLLMetry and the OTel SDKs send them, with unique
ids, response ids and token counts), then times, best of ``--repeat`` runs:

- ``decode_protobuf`` of the serialized body,
- the floor under normalization: reading each attribute's key and value from upb,
- ``normalize_request`` of the decoded request,
- decode + normalize from the bytes (``normalize_protobuf``), with the C
  extension (``collector/otlp_reader.py``: reader, records, columns; best and mean
  over ``--mean-of`` requests, as a busy collector sees it) and with the
  pure-Python path (upb), when the extension is built,
- ``decode_json`` of the same request as OTLP/JSON,

and reports the Parquet size of the normalized batch (zstd, as written in one
file; the landing stage's own settings may differ).

Usage: python bench/normalize_micro.py [--spans 512] [--repeat 30] [--mean-of 200]
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import json_format  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans  # noqa: E402

from collector import otlp_reader  # noqa: E402
from collector.normalize import NormalizeSettings, normalize_protobuf, normalize_request  # noqa: E402
from collector.otlp_decode import decode_json, decode_protobuf  # noqa: E402
from bench.ingest import kv, typical_span  # noqa: E402

def build_request(spans: int) -> ExportTraceServiceRequest:
    rng = random.Random(42)
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=[
        typical_span(rng, 1_763_900_000_000_000_000) for _ in range(spans)])])
    resource.resource.attributes.extend([kv("service.name", "support-assistant"),
                                         kv("service.version", "1.4.2"),
                                         kv("deployment.environment.name", "prod")])
    return ExportTraceServiceRequest(resource_spans=[resource])


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as an exporter writes it: hex ids (json_format would write base64)."""
    document = json_format.MessageToDict(request)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def read_every_attribute(request: ExportTraceServiceRequest) -> None:
    """The floor under normalize: only touch each attribute's key and value in upb."""
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for kv in span.attributes:
                    value = kv.value
                    kind = value.WhichOneof("value")
                    (kv.key, getattr(value, kind))


def best_us_per_span(function, spans: int, repeat: int) -> float:
    return min(_seconds_each(function, repeat)) / spans * 1e6


def mean_us_per_span(function, spans: int, repeat: int) -> float:
    return sum(_seconds_each(function, repeat)) / repeat / spans * 1e6


def _seconds_each(function, repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--mean-of", type=int, default=200)
    args = parser.parse_args()
    request = build_request(args.spans)
    body = request.SerializeToString()
    json_body = to_otlp_json(request)
    settings = NormalizeSettings(subject_key=b"bench-key-0123456789abcdef")
    now = datetime.now(timezone.utc)
    batch = normalize_request(request, settings, now)
    assert batch.inferences.num_rows == args.spans, batch.rejection_messages
    parquet = io.BytesIO()
    pq.write_table(pa.Table.from_batches([batch.inferences]), parquet, compression="zstd")
    timings = {
        "decode_protobuf": best_us_per_span(lambda: decode_protobuf(body), args.spans, args.repeat),
        "upb attribute floor": best_us_per_span(lambda: read_every_attribute(request), args.spans,
                                                args.repeat),
        "normalize_request": best_us_per_span(lambda: normalize_request(request, settings, now),
                                              args.spans, args.repeat),
        **bytes_to_batch_timings(body, settings, now, args.spans, args.repeat, args.mean_of),
        "decode_json": best_us_per_span(lambda: decode_json(json_body), args.spans,
                                        max(3, args.repeat // 5)),
    }
    print(f"python {platform.python_version()} on {platform.machine()}, {args.spans} spans, "
          f"{len(body) / args.spans:.0f} protobuf bytes/span, best of {args.repeat}")
    for name, microseconds in timings.items():
        print(f"{name:>19}: {microseconds:7.2f} µs/span")
    print(f"{'parquet (zstd)':>19}: {parquet.tell() / args.spans:7.1f} bytes/span "
          f"(attributes JSON {_mean_length(batch, 'attributes'):.0f} chars/span)")


def bytes_to_batch_timings(body: bytes, settings, now, spans: int, repeat: int, mean_of: int) -> dict:
    """decode + normalize from the bytes, C extension and pure Python (the same batch)."""
    def run():
        return normalize_protobuf(body, settings, now)

    timings = {}
    if otlp_reader.enabled():
        timings["bytes->batch, C"] = best_us_per_span(run, spans, repeat)
        timings[f"C, mean of {mean_of}"] = mean_us_per_span(run, spans, mean_of)
    os.environ[otlp_reader.PURE_PYTHON_ENV] = "1"
    try:
        timings["bytes->batch, upb"] = best_us_per_span(run, spans, repeat)
    finally:
        del os.environ[otlp_reader.PURE_PYTHON_ENV]
    return timings


def _mean_length(batch, column: str) -> float:
    values = [v for v in batch.inferences.column(column).to_pylist() if v]
    return sum(map(len, values)) / max(1, batch.inferences.num_rows)


if __name__ == "__main__":
    main()
