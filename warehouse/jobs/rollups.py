"""Rollups as jobs: per hour (``rollups``) and per day (``rollups_daily``), by the common dimensions.

One row per window and (service, environment, tenant, feature, provider, model,
model_version) in ``rollup_hourly`` / ``rollup_daily``, and one row per context
bucket beside it in ``rollup_context_hourly`` / ``rollup_context_daily``. Both
tables come from one query per compute call that reads every record of the chunk
once: the daily figures are computed from the records themselves (percentiles do
not add up from hourly rows). Formulas and the choices behind them are in
README.md next to this file.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from warehouse.jobs.evidence import EVIDENCE_CTES, HTTP_EXTRA, HTTP_JOIN, SUPERSEDED, evidence_params
from warehouse.jobs.results import with_window
from warehouse.jobs.runner import STEP, Job, JobContext, JobOutput, Window, connect
from warehouse.jobs.unpriced import rollup_metrics

DIMENSIONS = ["service", "environment", "tenant", "feature", "provider", "model", "model_version"]
_DIMENSION_SQL = {"service": "r.service_name", "model": "coalesce(r.response_model, r.request_model)"}
# Context buckets: [0, 256), then powers of two [2^k, 2^(k+1)) up to [2^20, open).
FIRST_EDGE_EXP, LAST_EDGE_EXP = 8, 20
BUCKET_SQL = (f"CASE WHEN r.input_tokens IS NULL THEN NULL WHEN r.input_tokens < {2 ** FIRST_EDGE_EXP} THEN 0 "
              f"ELSE least(floor(log2(r.input_tokens))::INTEGER - {FIRST_EDGE_EXP - 1}, "
              f"{LAST_EDGE_EXP - FIRST_EDGE_EXP + 1}) END")
TOKEN_CLASSES = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
COST_SOURCES = ["reported", "computed", "capacity", "human_review"]
LATENCY_QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
RATE_QUANTILE = 0.95
MINUTE_US = 60_000_000

_DIMENSION_FIELDS = [(name, pa.string()) for name in DIMENSIONS]
ROLLUP_SCHEMA = with_window(_DIMENSION_FIELDS + [
    ("requests", pa.int64()), ("logical_requests", pa.int64()), ("attempts", pa.int64()),
    ("errors", pa.int64()), ("failed_requests", pa.int64()),
    *[(name, pa.int64()) for name in TOKEN_CLASSES],
    ("cost_usd", pa.float64()), *[(f"cost_{source}_usd", pa.float64()) for source in COST_SOURCES],
    ("unpriced_requests", pa.int64()), ("unpriced_input_tokens", pa.int64()), ("unpriced_output_tokens", pa.int64()),
    *[(name, pa.float64()) for name in LATENCY_QUANTILES],
    ("request_rate_p95_per_min", pa.float64()), ("rate_minutes", pa.int32()),
    ("cache_hit_rate", pa.float64()),
])
CONTEXT_SCHEMA = with_window(_DIMENSION_FIELDS + [
    ("bucket", pa.int32()), ("bucket_low", pa.int64()), ("bucket_high", pa.int64()),
    ("requests", pa.int64()), ("input_tokens", pa.int64()), ("cost_usd", pa.float64()),
    ("unpriced_requests", pa.int64()),
])

_SUMS = {  # per (window, dimensions, bucket); the rollup adds them up over the buckets
    "requests": "count(*)",
    "logical_requests": "count(*) FILTER (is_final)",
    "attempts": "count(*) + sum(http_extra)",
    "errors": "count(*) FILTER (status = 'error')",
    "failed_requests": "count(*) FILTER (is_final AND status = 'error')",
    **{name: f"sum({name})" for name in TOKEN_CLASSES},
    "cost_usd": "sum(cost_usd)",
    **{f"cost_{source}_usd": f"coalesce(sum(cost_usd) FILTER (cost_source = '{source}'), 0)"
       for source in COST_SOURCES},
    "unpriced_requests": "count(*) FILTER (cost_usd IS NULL)",
    "unpriced_input_tokens": "coalesce(sum(input_tokens) FILTER (cost_usd IS NULL), 0)",
    "unpriced_output_tokens": "coalesce(sum(output_tokens) FILTER (cost_usd IS NULL), 0)",
    # for pricing.unpriced_share (unpriced.py); not stored
    "unpriced_tokenless": "count(*) FILTER (cost_usd IS NULL AND tokens IS NULL)",
    "priced_tokens": "sum(tokens) FILTER (cost_usd IS NOT NULL)",
    "priced_token_cost_usd": "sum(cost_usd) FILTER (tokens IS NOT NULL)",
}


def rollup_sql(granularity: str) -> str:
    """One statement: every record of the chunk read once; both tables come back, told apart by ``part``."""
    step_us = STEP[granularity] // timedelta(microseconds=1)
    dims = ", ".join(DIMENSIONS)
    return f"""
WITH RECURSIVE {EVIDENCE_CTES},
records AS ({_records_sql(step_us)}),
fine AS MATERIALIZED (
    SELECT window_id, {dims}, bucket,
        {", ".join(f"({expr})::{_sql_type(name)} AS {name}" for name, expr in _SUMS.items())},
        list(duration_ms) FILTER (duration_ms IS NOT NULL) AS durations, list(minute) AS minutes
    FROM records GROUP BY ALL),
coarse AS (
    SELECT window_id, {dims}, {", ".join(f"sum({name})::{_sql_type(name)} AS {name}" for name in _SUMS)},
        list_aggregate(flatten(list(durations)), 'quantile_cont', {list(LATENCY_QUANTILES.values())}) AS latency,
        list_sort(map_values(list_aggregate(flatten(list(minutes)), 'histogram'))) AS minute_counts
    FROM fine GROUP BY window_id, {dims}),
rated AS (
    -- the window's minutes, up to now in the current window (a started minute counts)
    SELECT *, greatest(1, len(minute_counts), ceil((least((window_id + 1) * {step_us}, epoch_us($now::TIMESTAMPTZ))
                                                   - window_id * {step_us}) / {MINUTE_US}))::INTEGER AS rate_minutes
    FROM coarse)
SELECT 'rollup' AS part, {_window_sql(step_us)}, * EXCLUDE (window_id, latency, minute_counts),
    {", ".join(f"latency[{i + 1}] AS {name}" for i, name in enumerate(LATENCY_QUANTILES))},
    {_rate_sql()} AS request_rate_p95_per_min,
    coalesce(cache_read_tokens, 0) / nullif(input_tokens, 0) AS cache_hit_rate
FROM rated
UNION ALL BY NAME
SELECT 'context' AS part, {_window_sql(step_us)}, {dims}, bucket, {_bucket_edges_sql()},
    requests, input_tokens, cost_usd, unpriced_requests
FROM fine"""


def _records_sql(step_us: int) -> str:
    """The chunk's records with their window, dimensions, bucket, minute and retry facts."""
    dimensions = ", ".join(f"{_DIMENSION_SQL.get(name, 'r.' + name)} AS {name}" for name in DIMENSIONS)
    return f"""
    SELECT epoch_us(r.start_time) // {step_us} AS window_id, {dimensions},
        r.status, r.duration_ms, {", ".join("r." + name for name in TOKEN_CLASSES)},
        CASE WHEN r.input_tokens IS NULL AND r.output_tokens IS NULL THEN NULL
            ELSE coalesce(r.input_tokens, 0) + coalesce(r.output_tokens, 0) END AS tokens,
        r.cost_usd, r.cost_source, {BUCKET_SQL} AS bucket,
        (epoch_us(r.start_time) // {MINUTE_US} % {step_us // MINUTE_US})::SMALLINT AS minute,
        NOT {SUPERSEDED} AS is_final, {HTTP_EXTRA} AS http_extra
    FROM inferences r {HTTP_JOIN}
    WHERE r.date BETWEEN $first_day AND $last_day AND r.start_time >= $start AND r.start_time < $end"""


def _window_sql(step_us: int) -> str:
    return (f"make_timestamp(window_id * {step_us})::TIMESTAMPTZ AS window_start, "
            f"make_timestamp((window_id + 1) * {step_us})::TIMESTAMPTZ AS window_end")


def _sql_type(column: str) -> str:
    """Sums of integers are HUGEINT in DuckDB (decimals in Arrow): cast them back."""
    return "DOUBLE" if column.endswith("_usd") else "BIGINT"


def _rate_sql() -> str:
    """quantile_cont over the window's minutes, idle ones included: sorted, the zeros come first."""
    rank = f"({RATE_QUANTILE} * (rate_minutes - 1))"
    zeros = "(rate_minutes - len(minute_counts))"

    def at(position: str) -> str:
        return f"(CASE WHEN {position} < {zeros} THEN 0 ELSE minute_counts[{position} - {zeros} + 1] END)"

    low, high = f"floor({rank})::INTEGER", f"ceil({rank})::INTEGER"
    return f"({at(low)} + ({rank} - floor({rank})) * ({at(high)} - {at(low)}))"


def _bucket_edges_sql() -> str:
    """bucket_low (inclusive) and bucket_high (exclusive, NULL for the open last bucket)."""
    last = LAST_EDGE_EXP - FIRST_EDGE_EXP + 1
    low = f"CASE WHEN bucket = 0 THEN 0 ELSE (2::BIGINT ** (bucket + {FIRST_EDGE_EXP - 1}))::BIGINT END"
    high = f"CASE WHEN bucket < {last} THEN (2::BIGINT ** (bucket + {FIRST_EDGE_EXP}))::BIGINT END"
    return f"{low} AS bucket_low, {high} AS bucket_high"


def make_compute(granularity: str, hourly_table: str, context_table: str, with_metrics: bool):
    def compute(context: JobContext, windows: list[Window]) -> JobOutput:
        start, end = windows[0][0], windows[-1][1]
        result = _query(context, granularity, start, end)
        part = result["part"]
        rollup = result.filter(pc.equal(part, "rollup"))
        contexts = result.filter(pc.equal(part, "context"))
        metrics = rollup_metrics(rollup, windows) if with_metrics else []
        return JobOutput(tables={hourly_table: rollup, context_table: contexts}, metrics=metrics)

    return compute


def _query(context: JobContext, granularity: str, start: datetime, end: datetime) -> pa.Table:
    params = {"start": start, "end": end, "first_day": start.date(), "last_day": (end - STEP["hour"]).date(),
              "now": context.now, **evidence_params(start, end, horizon_before=False)}
    con = connect(context)
    try:
        return con.sql(rollup_sql(granularity), params=params).to_arrow_table()
    finally:
        con.close()


ROLLUPS_JOB = Job(
    name="rollups",
    description="Hourly rollups by service, environment, tenant, feature, provider, model and version: requests, "
                "attempts, tokens, cost by source, latency and request-rate percentiles, context buckets.",
    schedule="*/5 * * * *",
    granularity="hour",
    tables={"rollup_hourly": ROLLUP_SCHEMA, "rollup_context_hourly": CONTEXT_SCHEMA},
    compute=make_compute("hour", "rollup_hourly", "rollup_context_hourly", with_metrics=True),
)

ROLLUPS_DAILY_JOB = Job(
    name="rollups_daily",
    description="Daily rollups (same figures as `rollups`, percentiles from the day's records).",
    schedule="*/30 * * * *",
    granularity="day",
    tables={"rollup_daily": ROLLUP_SCHEMA, "rollup_context_daily": CONTEXT_SCHEMA},
    compute=make_compute("day", "rollup_daily", "rollup_context_daily", with_metrics=False),
)
