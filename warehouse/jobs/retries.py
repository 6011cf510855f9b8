"""Retry inflation as a job: what retried attempts add to tokens and cost, per day by provider, model and service.

Attempts are grouped into logical requests by the evidence in ``evidence.py``; a
logical request belongs to the day, provider, model and service of its *final*
attempt (the one whose answer counts), so a failed attempt on one model that was
retried on another, or just after midnight, adds to the row of the answer.

One query per compute call. Records that are requests of their own (nearly all)
are summed per key as they are read, the attempts of a retried request key per
key; the few found by links or siblings stay a row each and are summed per
logical request (``attempt_facts.logical_id``). Formulas: README.md next to this
file.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from warehouse.jobs.evidence import EVIDENCE_CTES, HTTP_EXTRA, HTTP_JOIN, IN_FACTS, KEYED, evidence_params
from warehouse.jobs.results import with_window
from warehouse.jobs.runner import Job, JobContext, JobOutput, Metric, Window, connect

DAY_US = timedelta(days=1) // timedelta(microseconds=1)

RETRY_SCHEMA = with_window([
    ("provider", pa.string()), ("model", pa.string()), ("service", pa.string()),
    ("logical_requests", pa.int64()), ("attempts", pa.int64()), ("attempt_spans", pa.int64()),
    ("http_extra_attempts", pa.int64()), ("retried_requests", pa.int64()), ("retry_share", pa.float64()),
    ("failed_requests", pa.int64()),
    ("tokens_all_attempts", pa.int64()), ("tokens_final_attempts", pa.int64()), ("wasted_tokens", pa.int64()),
    ("cost_all_attempts_usd", pa.float64()), ("cost_final_attempts_usd", pa.float64()),
    ("wasted_cost_usd", pa.float64()), ("unpriced_attempts", pa.int64()),
    ("inflation_tokens", pa.float64()), ("inflation_cost", pa.float64()),
    ("retried_by_request_key", pa.int64()), ("retried_by_retry_link", pa.int64()),
    ("retried_by_sibling_spans", pa.int64()), ("retried_by_http_attempts", pa.int64()),
])

_KEYS = ["day_id", "provider", "model", "service"]
_METRICS = [("retry.inflation_cost", "inflation_cost"), ("retry.inflation_tokens", "inflation_tokens"),
            ("retry.share", "retry_share"), ("retry.failed_requests", "failed_requests")]
_COUNTS = ["logical_requests", "attempts", "attempt_spans", "http_extra_attempts", "retried_requests",
           "failed_requests", "tokens_all_attempts", "tokens_final_attempts", "unpriced_attempts",
           "retried_by_request_key", "retried_by_retry_link", "retried_by_sibling_spans", "retried_by_http_attempts"]

RETRY_SQL = f"""
WITH RECURSIVE {EVIDENCE_CTES},
attempt_records AS (
    SELECT r.trace_id, r.span_id, r.start_time, r.status, coalesce(r.attempt, 0) AS attempt,
        epoch_us(r.start_time) // {DAY_US} AS day_id,
        r.provider, coalesce(r.response_model, r.request_model) AS model, r.service_name AS service,
        coalesce(r.input_tokens, 0) + coalesce(r.output_tokens, 0) AS tokens, r.cost_usd,
        r.request_key, {KEYED} AS keyed, {IN_FACTS} AS linked, {HTTP_EXTRA} AS http_extra
    FROM inferences r {HTTP_JOIN}
    WHERE r.date BETWEEN $ev_first_day AND $ev_last_day AND r.start_time >= $ev_start AND r.start_time < $ev_end),
level1 AS (
    -- a record of its own is a logical request: summed per key as read. The attempts of a request key are
    -- summed per key; an attempt found by links or siblings stays a row of its own until assembled below.
    SELECT {", ".join(f"CASE WHEN NOT (keyed OR linked) THEN {key} END AS {key}" for key in _KEYS)},
        CASE WHEN keyed THEN request_key END AS request_key,
        CASE WHEN linked THEN trace_id END AS own_trace, CASE WHEN linked THEN span_id END AS own_span,
        count(*) AS spans, max(attempt) AS last_attempt,
        sum(http_extra)::BIGINT AS http_extra, count(*) FILTER (http_extra > 0) AS http_retried,
        count(*) FILTER (status = 'error') AS failed,
        sum(tokens)::BIGINT AS tokens, coalesce(sum(tokens) FILTER (status = 'ok'), 0)::BIGINT AS tokens_ok,
        sum(cost_usd) AS cost, sum(cost_usd) FILTER (status = 'ok') AS cost_ok,
        count(*) FILTER (cost_usd IS NULL) AS unpriced,
        -- the final attempt: highest attempt number (keys), then latest start
        arg_max(CASE WHEN keyed OR linked THEN struct_pack({", ".join(_KEYS)}, status, tokens, cost_usd) END,
                CASE WHEN keyed OR linked THEN struct_pack(a := CASE WHEN keyed THEN attempt ELSE 0 END,
                                                           t := start_time, s := span_id) END) AS final,
        max(CASE WHEN linked THEN struct_pack(t := start_time, s := span_id) END) AS position
    FROM attempt_records
    WHERE keyed OR linked OR (start_time >= $start AND start_time < $end)
    GROUP BY ALL),
linked_requests AS (
    SELECT any_value(f.evidence) AS evidence, count(*) AS spans, sum(l.http_extra) AS http_extra,
        sum(l.tokens) AS tokens, sum(l.cost) AS cost, sum(l.unpriced) AS unpriced,
        arg_max(l.final, l.position) AS final
    FROM level1 l JOIN attempt_facts f ON l.own_trace = f.trace_id AND l.own_span = f.span_id
    GROUP BY f.logical_id),
assembled AS (
    SELECT 'request_key' AS evidence, greatest(spans, last_attempt + 1) AS numbered, spans, http_extra, tokens,
        cost, unpriced, final
    FROM level1 WHERE request_key IS NOT NULL
    UNION ALL
    SELECT evidence, spans, spans, http_extra, tokens, cost, unpriced, final FROM linked_requests),
per_request AS (
    SELECT {", ".join(_KEYS)}, spans AS logical_requests, spans + http_extra AS attempts,
        spans AS attempt_spans, http_extra AS http_extra_attempts, http_retried AS retried_requests,
        failed AS failed_requests, tokens AS tokens_all_attempts, tokens_ok AS tokens_final_attempts,
        cost AS cost_all, cost_ok AS cost_final, unpriced AS unpriced_attempts,
        0 AS retried_by_request_key, 0 AS retried_by_retry_link, 0 AS retried_by_sibling_spans,
        http_retried AS retried_by_http_attempts
    FROM level1 WHERE day_id IS NOT NULL
    UNION ALL
    -- explicit attempt numbers (numbered) also count attempts whose spans never arrived
    SELECT {", ".join("final." + key for key in _KEYS)}, 1, numbered + http_extra, spans, http_extra,
        (evidence = 'request_key' OR spans > 1 OR http_extra > 0)::INTEGER,
        (final.status = 'error')::INTEGER, tokens, CASE WHEN final.status = 'ok' THEN final.tokens ELSE 0 END,
        cost, CASE WHEN final.status = 'ok' THEN final.cost_usd END, unpriced,
        (evidence = 'request_key')::INTEGER, (evidence = 'retry_link' AND spans > 1)::INTEGER,
        (evidence = 'sibling_spans' AND spans > 1)::INTEGER, (http_extra > 0)::INTEGER
    FROM assembled)
SELECT make_timestamp(day_id * {DAY_US})::TIMESTAMPTZ AS window_start,
    make_timestamp((day_id + 1) * {DAY_US})::TIMESTAMPTZ AS window_end, provider, model, service,
    {", ".join(f"sum({name})::BIGINT AS {name}" for name in _COUNTS)},
    sum(cost_all) AS cost_all_attempts_usd, sum(cost_final) AS cost_final_attempts_usd
FROM per_request
WHERE day_id >= $first_day_id AND day_id < $end_day_id
GROUP BY ALL"""


def compute(context: JobContext, windows: list[Window]) -> JobOutput:
    start, end = windows[0][0], windows[-1][1]
    table = _derived(_query(context, start, end))
    return JobOutput(tables={"retry_inflation": table}, metrics=retry_metrics(table, windows))


def _query(context: JobContext, start: datetime, end: datetime) -> pa.Table:
    params = {"start": start, "end": end, "first_day_id": _day_id(start), "end_day_id": _day_id(end),
              **evidence_params(start, end)}
    con = connect(context)
    try:
        return con.sql(RETRY_SQL, params=params).to_arrow_table()
    finally:
        con.close()


def _day_id(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)) // timedelta(microseconds=1) // DAY_US


def _derived(table: pa.Table) -> pa.Table:
    """Shares, waste and inflation ratios from the summed figures (NULL where the ratio is undefined)."""
    rows = table.to_pylist()
    for row in rows:
        row["retry_share"] = _ratio(row["retried_requests"], row["logical_requests"])
        row["wasted_tokens"] = row["tokens_all_attempts"] - row["tokens_final_attempts"]
        all_cost, final_cost = row["cost_all_attempts_usd"], row["cost_final_attempts_usd"]
        row["wasted_cost_usd"] = None if all_cost is None else all_cost - (final_cost or 0.0)
        row["inflation_tokens"] = _inflation(row["tokens_all_attempts"], row["tokens_final_attempts"])
        row["inflation_cost"] = _inflation(all_cost, final_cost)
    return pa.Table.from_pylist(rows, schema=RETRY_SCHEMA)


def _ratio(part: float | None, whole: float | None) -> float | None:
    return part / whole if part is not None and whole else None


def _inflation(everything: float | None, final: float | None) -> float | None:
    """all / final - 1; undefined (None) when no successful final attempt carries any."""
    ratio = _ratio(everything, final)
    return None if ratio is None else ratio - 1


def retry_metrics(table: pa.Table, windows: list[Window]) -> list[Metric]:
    by_start = {window[0]: window for window in windows}
    metrics = []
    for row in table.to_pylist():
        window = by_start[row["window_start"]]
        labels = {"provider": row["provider"], "model": row["model"], "service": row["service"]}
        detail = {name: row[name] for name in ("logical_requests", "attempts", "retried_requests", "failed_requests",
                                               "cost_all_attempts_usd", "cost_final_attempts_usd",
                                               "retried_by_request_key", "retried_by_retry_link",
                                               "retried_by_sibling_spans", "retried_by_http_attempts")}
        for metric, column in _METRICS:
            metrics.append(Metric(window, metric, row[column], labels, detail=detail))
    return metrics


RETRIES_JOB = Job(
    name="retries",
    description="Retry inflation per day by provider, model and service: attempts per logical request, the share "
                "retried, requests failed after all attempts, and the tokens and cost every extra attempt added.",
    schedule="15 * * * *",
    granularity="day",
    tables={"retry_inflation": RETRY_SCHEMA},
    compute=compute,
)
