"""Rollup jobs on constructed records; every expected figure is worked out by hand below."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from inferledger.app import RunningServer
from tests.conftest import make_config, wait_for_rows
from tests.warehouse.jobs.records import land_records, record, utc
from warehouse.catalog import query
from warehouse.jobs.registry import all_jobs
from warehouse.jobs.rollups import ROLLUPS_DAILY_JOB, ROLLUPS_JOB
from warehouse.jobs.runner import JobContext, floor_time, run_job, windows_between
from warehouse.jobs.unpriced import Rates, Totals, unpriced_share

HOUR = (utc(2025, 3, 4, 10), utc(2025, 3, 4, 11))
AFTER = utc(2025, 3, 5)  # "now" well after the windows: they are complete
GROUP = dict(service_name="support", environment="prod", tenant="acme", feature="chat", provider="openai",
             request_model="gpt-4o", response_model="gpt-4o-2024-08-06", model_version="v7")


def at(minute: int, second: int = 0, hour: int = 10):
    return utc(2025, 3, 4, hour, minute) + timedelta(seconds=second)


def run(job, data_dir, windows, now=AFTER):
    result = run_job(job, JobContext(data_dir, now=now), windows)
    assert result.status == "ok", result.error
    return result


def rows(data_dir, table, order="window_start"):
    return query(data_dir, f"SELECT * FROM {table} ORDER BY {order}").to_pylist()


def metrics(data_dir, metric):
    found = query(data_dir, "SELECT labels, value, detail FROM job_metrics WHERE metric = ? ORDER BY labels",
                  [metric]).to_pylist()
    return {row["labels"]: (row["value"], json.loads(row["detail"])) for row in found}


@pytest.fixture
def one_hour(tmp_path):
    """Five records of one group in 10:00-11:00, one of each cost source."""
    data_dir = tmp_path / "data"
    land_records(data_dir, [
        record(at(0, 5), duration_ms=100.0, input_tokens=1000, output_tokens=200, cache_read_tokens=400,
               cache_write_tokens=0, reasoning_tokens=50, cost_usd=0.010, **GROUP),
        record(at(0, 30), duration_ms=200.0, input_tokens=3000, output_tokens=100, cache_read_tokens=0,
               cost_usd=0.020, cost_source="reported", reported_cost_usd=0.020, **GROUP),
        record(at(1, 10), duration_ms=300.0, input_tokens=100, output_tokens=10, cost_source="unpriced", **GROUP),
        record(at(1, 50), duration_ms=400.0, input_tokens=300_000, output_tokens=0, status="error",
               error_type="timeout", cost_usd=0.5, cost_source="capacity", **GROUP),
        record(at(59, 59), duration_ms=1000.0, cost_usd=0.25, cost_source="human_review", **GROUP),
    ])
    run(ROLLUPS_JOB, data_dir, [HOUR])
    return data_dir


def test_counts_tokens_and_cost_by_source(one_hour):
    [row] = rows(one_hour, "rollup_hourly")
    assert (row["window_start"], row["window_end"]) == HOUR
    assert {k: row[k] for k in ("service", "environment", "tenant", "feature", "provider", "model",
                                "model_version")} == {
        "service": "support", "environment": "prod", "tenant": "acme", "feature": "chat", "provider": "openai",
        "model": "gpt-4o-2024-08-06", "model_version": "v7"}  # model = response model, else the requested one
    assert (row["requests"], row["logical_requests"], row["attempts"], row["errors"], row["failed_requests"]) == (
        5, 5, 5, 1, 1)
    # input 1000 + 3000 + 100 + 300000 (the review reports none) = 304100; output 200 + 100 + 10 + 0 = 310
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"],
            row["reasoning_tokens"]) == (304_100, 310, 400, 0, 50)
    # priced: 0.010 computed + 0.020 reported + 0.5 capacity + 0.25 human review = 0.78; the unpriced one is not $0
    assert row["cost_usd"] == pytest.approx(0.78)
    assert (row["cost_reported_usd"], row["cost_computed_usd"], row["cost_capacity_usd"],
            row["cost_human_review_usd"]) == pytest.approx((0.020, 0.010, 0.5, 0.25))
    assert (row["unpriced_requests"], row["unpriced_input_tokens"], row["unpriced_output_tokens"]) == (1, 100, 10)
    # cache reads are inside input (OTel): 400 / 304100
    assert row["cache_hit_rate"] == pytest.approx(400 / 304_100)


def test_latency_percentiles(one_hour):
    [row] = rows(one_hour, "rollup_hourly")
    # sorted durations 100, 200, 300, 400, 1000 (n = 5), position q * (n - 1), linear interpolation:
    # p50: 0.5 * 4 = 2 -> 300; p95: 3.8 -> 400 + 0.8 * 600 = 880; p99: 3.96 -> 400 + 0.96 * 600 = 976
    assert (row["latency_p50_ms"], row["latency_p95_ms"], row["latency_p99_ms"]) == pytest.approx((300, 880, 976))


def test_request_rate_p95_counts_idle_minutes(one_hour):
    [row] = rows(one_hour, "rollup_hourly")
    # per-minute counts: minute 0 -> 2, minute 1 -> 2, minute 59 -> 1, the other 57 minutes -> 0.
    # sorted: 57 zeros, 1, 2, 2; position 0.95 * (60 - 1) = 56.05 between index 56 (0) and 57 (1):
    # 0 + 0.05 * (1 - 0) = 0.05 requests per minute
    assert row["rate_minutes"] == 60
    assert row["request_rate_p95_per_min"] == pytest.approx(0.05)


def test_context_buckets(one_hour):
    buckets = {r["bucket"]: r for r in rows(one_hour, "rollup_context_hourly", order="bucket")}
    assert set(buckets) == {0, 2, 4, 11, None}
    # 100 -> [0, 256); 1000 -> [512, 1024); 3000 -> [2048, 4096); 300000 -> [262144, 524288); no input -> NULL
    edges = {b: (r["bucket_low"], r["bucket_high"]) for b, r in buckets.items()}
    assert edges == {0: (0, 256), 2: (512, 1024), 4: (2048, 4096), 11: (262_144, 524_288), None: (None, None)}
    assert (buckets[0]["requests"], buckets[0]["input_tokens"], buckets[0]["cost_usd"],
            buckets[0]["unpriced_requests"]) == (1, 100, None, 1)
    assert (buckets[11]["requests"], buckets[11]["input_tokens"], buckets[11]["cost_usd"]) == (1, 300_000, 0.5)
    assert (buckets[None]["requests"], buckets[None]["input_tokens"], buckets[None]["cost_usd"]) == (1, None, 0.25)
    assert sum(r["requests"] for r in buckets.values()) == 5


def test_bucket_edges(tmp_path):
    data_dir = tmp_path / "data"
    tokens = [0, 255, 256, 511, 512, 1_048_575, 1_048_576, 5_000_000]
    land_records(data_dir, [record(at(i), input_tokens=n, cost_usd=0.001, **GROUP) for i, n in enumerate(tokens)])
    run(ROLLUPS_JOB, data_dir, [HOUR])
    found = [(r["bucket"], r["bucket_low"], r["bucket_high"], r["requests"])
             for r in rows(data_dir, "rollup_context_hourly", order="bucket")]
    # [0, 256) holds 0 and 255; 256 and 511 -> [256, 512); 512 -> [512, 1024);
    # 2^20 - 1 -> [2^19, 2^20); 2^20 and above -> [2^20, open)
    assert found == [(0, 0, 256, 2), (1, 256, 512, 2), (2, 512, 1024, 1), (12, 524_288, 1_048_576, 1),
                     (13, 1_048_576, None, 2)]


def test_group_with_only_unpriced_records_has_null_cost(tmp_path):
    data_dir = tmp_path / "data"
    unknown = {**GROUP, "provider": "mystery", "request_model": "model-x", "response_model": None}
    land_records(data_dir, [record(at(3), input_tokens=10, output_tokens=5, cost_source="unpriced", **unknown)])
    run(ROLLUPS_JOB, data_dir, [HOUR])
    [row] = rows(data_dir, "rollup_hourly")
    assert row["model"] == "model-x" and row["requests"] == 1
    assert row["cost_usd"] is None and row["unpriced_requests"] == 1
    assert (row["unpriced_input_tokens"], row["unpriced_output_tokens"]) == (10, 5)


def test_unpriced_share_metric(tmp_path):
    data_dir = tmp_path / "data"
    land_records(data_dir, [
        record(at(1), service_name="svc-a", provider="openai", request_model="gpt-4o", input_tokens=800,
               output_tokens=200, cost_usd=0.01),
        record(at(2), service_name="svc-a", provider="anthropic", request_model="claude", input_tokens=1500,
               output_tokens=500, cost_usd=0.05),
        record(at(3), service_name="svc-b", provider="fraud-gpu", request_model="fraud-gbm", operation="predict",
               cost_usd=0.03, cost_source="capacity"),
        record(at(4), service_name="svc-a", provider="mystery", request_model="model-x", input_tokens=900,
               output_tokens=100, cost_source="unpriced"),
        record(at(5), service_name="svc-c", provider="mystery", request_model="model-x", cost_source="unpriced"),
    ])
    run(ROLLUPS_JOB, data_dir, [HOUR])
    shares = metrics(data_dir, "pricing.unpriced_share")
    # per token: priced records with tokens cost 0.01 + 0.05 = 0.06 for 1000 + 2000 tokens = 0.00002 / token;
    # per record: all priced cost 0.09 / 3 priced records = 0.03.
    # estimate: 1000 unpriced tokens * 0.00002 + 1 tokenless unpriced record * 0.03 = 0.05
    # share = 0.05 / (0.09 + 0.05) = 0.357142...
    value, detail = shares["{}"]
    assert value == pytest.approx(0.05 / 0.14)
    assert detail["estimated_unpriced_usd"] == pytest.approx(0.05) and detail["unpriced_requests"] == 2
    assert detail["usd_per_token"] == pytest.approx(0.00002) and detail["usd_per_record"] == pytest.approx(0.03)
    # model-x has no priced spend of its own: 0.05 / (0 + 0.05) = 1; the priced models 0
    assert shares['{"model": "model-x", "provider": "mystery"}'][0] == pytest.approx(1.0)
    assert shares['{"model": "gpt-4o", "provider": "openai"}'][0] == 0.0
    totals = metrics(data_dir, "cost.total_usd")
    assert totals['{"service": "svc-a"}'][0] == pytest.approx(0.06)  # 0.01 + 0.05; model-x unpriced adds nothing
    assert totals['{"service": "svc-b"}'][0] == pytest.approx(0.03)
    value, detail = totals['{"service": "svc-c"}']
    assert value is None and detail == {"requests": 1, "unpriced_requests": 1}  # unknown, not $0


def test_unpriced_share_without_any_priced_record():
    nothing_priced = Totals(requests=2, unpriced_requests=2, unpriced_tokenless=0, cost_usd=None, priced_tokens=None,
                            priced_token_cost_usd=None, unpriced_input_tokens=10, unpriced_output_tokens=5)
    assert Rates.of(nothing_priced) == Rates(None, None)
    assert unpriced_share(nothing_priced, Rates.of(nothing_priced)) == 1.0  # all spend unknown
    nothing_unpriced = Totals(1, 0, 0, 0.2, 100, 0.2, 0, 0)
    assert unpriced_share(nothing_unpriced, Rates.of(nothing_unpriced)) == 0.0


def test_partial_current_window(tmp_path):
    data_dir = tmp_path / "data"
    minutes = [0, 3, 3, 5, 5, 5, 29]
    land_records(data_dir, [record(at(m, 10), duration_ms=float(100 * (i + 1)), cost_usd=0.001, **GROUP)
                            for i, m in enumerate(minutes)])
    now = at(30, 20)
    run(ROLLUPS_JOB, data_dir, windows_between("hour", HOUR[0], now), now=now)
    [row] = rows(data_dir, "rollup_hourly")
    assert row["requests"] == 7 and row["cost_usd"] == pytest.approx(0.007)
    # 30 min 20 s have passed: 31 minutes (the current one counts). Counts 1, 2, 3, 1 and 27 idle minutes;
    # sorted: 27 zeros, 1, 1, 2, 3; position 0.95 * 30 = 28.5 between index 28 (1) and 29 (2): 1.5
    assert row["rate_minutes"] == 31
    assert row["request_rate_p95_per_min"] == pytest.approx(1.5)


def test_rerun_replaces_rows(one_hour):
    run(ROLLUPS_JOB, one_hour, [HOUR])
    assert [r["requests"] for r in rows(one_hour, "rollup_hourly")] == [5]
    land_records(one_hour, [record(at(30), duration_ms=50.0, input_tokens=10, cost_usd=0.5, **GROUP)])
    run(ROLLUPS_JOB, one_hour, [HOUR])
    [row] = rows(one_hour, "rollup_hourly")
    assert row["requests"] == 6 and row["cost_usd"] == pytest.approx(1.28)
    assert len(rows(one_hour, "rollup_context_hourly")) == 5  # 10 tokens joined bucket 0, still five buckets
    assert len(metrics(one_hour, "cost.total_usd")) == 1


def test_daily_percentiles_come_from_records(tmp_path):
    data_dir = tmp_path / "data"
    durations = {10: [100.0, 200.0], 11: [300.0, 400.0, 1000.0]}
    land_records(data_dir, [record(at(i, hour=hour), duration_ms=d, input_tokens=1000, cost_usd=0.01, **GROUP)
                            for hour, values in durations.items() for i, d in enumerate(values)])
    day = windows_between("day", utc(2025, 3, 4), utc(2025, 3, 5))
    run(ROLLUPS_DAILY_JOB, data_dir, day)
    [row] = rows(data_dir, "rollup_daily")
    assert (row["window_start"], row["window_end"]) == (utc(2025, 3, 4), utc(2025, 3, 5))
    # all five durations: p50 at position 2 = 300 (the hourly medians 150 and 400 would not give it)
    assert row["requests"] == 5 and row["latency_p50_ms"] == pytest.approx(300)
    # five busy minutes of 1440: position 0.95 * 1439 = 1367.05 lies among the 1435 idle ones
    assert row["rate_minutes"] == 1440 and row["request_rate_p95_per_min"] == 0
    [bucket] = rows(data_dir, "rollup_context_daily")
    assert (bucket["bucket_low"], bucket["requests"], bucket["input_tokens"]) == (512, 5, 5000)
    assert metrics(data_dir, "cost.total_usd") == {}  # alerts watch the hourly series only


def test_jobs_are_registered_in_order():
    names = [job.name for job in all_jobs()]
    assert names.index("capacity") < names.index("rollups") < names.index("rollups_daily")


PRICES = """
[[model]]
id = "acme/acme-llm"
provider = "acme"
models = ["acme-llm"]
effective_from = 2025-01-01
input_mtok = 1.0
output_mtok = 4.0
"""


def _chat(tracer, parent, start, duration_ms: float, model: str = "acme-llm", usage=None, failed: bool = False):
    """One inference span with exact start and end times (nanoseconds), as an instrumentation would send it."""
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "acme", "gen_ai.request.model": model,
                  "inferledger.feature.name": "faq"}
    if usage:
        attributes["gen_ai.response.model"] = model
        for name, value in zip(("input_tokens", "output_tokens", "cache_read.input_tokens"), usage):
            attributes[f"gen_ai.usage.{name}"] = value
    started = int(start.timestamp() * 1e9)
    span = tracer.start_span(f"chat {model}", context=parent, kind=SpanKind.CLIENT, start_time=started,
                             attributes=attributes)
    if failed:
        span.set_attribute("error.type", "overloaded_error")
        span.set_status(Status(StatusCode.ERROR, "overloaded"))
    span.end(end_time=started + int(duration_ms * 1e6))


def test_spans_from_the_sdk_through_a_collector(tmp_path):
    """Real SDK, real OTLP/HTTP exporter, real collector (with a user price file), then the job."""
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    hour = floor_time(datetime.now(UTC), "hour") - timedelta(hours=2)
    config = make_config(tmp_path / "data", pricing__price_file=prices, jobs__enabled=False)
    with RunningServer(config) as server:
        provider = TracerProvider(resource=Resource.create({
            "service.name": "support-bot", "deployment.environment.name": "prod", "inferledger.tenant.id": "acme"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.http_url + "/v1/traces")))
        tracer = provider.get_tracer("app")
        minute = lambda m, s=0: hour + timedelta(minutes=m, seconds=s)  # noqa: E731
        handler = tracer.start_span("handle question", start_time=int(minute(1).timestamp() * 1e9))
        parent = trace.set_span_in_context(handler)
        _chat(tracer, parent, minute(1), 50, failed=True)  # retried by the next call
        _chat(tracer, parent, minute(1, 10), 100, usage=(1000, 100))
        _chat(tracer, parent, minute(2), 200, usage=(2000, 200, 500))
        _chat(tracer, parent, minute(2, 30), 300, usage=(500, 50))
        _chat(tracer, parent, minute(5), 120, model="mystery-1", usage=(100, 10))
        _chat(tracer, parent, minute(40), 1000, usage=(3000, 300))
        handler.end(end_time=int(minute(41).timestamp() * 1e9))
        provider.force_flush()
        wait_for_rows(server.data_dir, "SELECT * FROM inferences", 6)
        run(ROLLUPS_JOB, server.data_dir, [(hour, hour + timedelta(hours=1))], now=datetime.now(UTC))
        found = {r["model"]: r for r in rows(server.data_dir, "rollup_hourly")}
        provider.shutdown()
    acme = found["acme-llm"]
    assert (acme["service"], acme["environment"], acme["tenant"], acme["feature"], acme["provider"],
            acme["model_version"]) == ("support-bot", "prod", "acme", "faq", "acme", "acme-llm")
    assert (acme["requests"], acme["logical_requests"], acme["attempts"], acme["errors"]) == (5, 4, 5, 1)
    assert (acme["input_tokens"], acme["output_tokens"], acme["cache_read_tokens"]) == (6500, 650, 500)
    # $1 / M input, $4 / M output: 0.0014 + 0.0028 + 0.0007 + 0.0042; the failed call reports no tokens: unpriced
    assert acme["cost_usd"] == pytest.approx(0.0091) and acme["cost_computed_usd"] == pytest.approx(0.0091)
    assert acme["unpriced_requests"] == 1
    # durations 50, 100, 200, 300, 1000: p50 200, p95 300 + 0.8 * 700 = 860, p99 300 + 0.96 * 700 = 972
    assert (acme["latency_p50_ms"], acme["latency_p95_ms"], acme["latency_p99_ms"]) == pytest.approx((200, 860, 972))
    # minutes 1 -> 2 calls, 2 -> 2, 40 -> 1, 57 idle: position 56.05 -> 0.05
    assert acme["request_rate_p95_per_min"] == pytest.approx(0.05)
    assert acme["cache_hit_rate"] == pytest.approx(500 / 6500)
    mystery = found["mystery-1"]
    assert (mystery["requests"], mystery["cost_usd"], mystery["unpriced_requests"]) == (1, None, 1)
