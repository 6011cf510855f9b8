"""Retry inflation on a constructed scenario with every kind of evidence; expected values worked out by hand."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.warehouse.jobs.records import http_attempt, land_http_attempts, land_records, record, utc
from warehouse.catalog import query
from warehouse.jobs.registry import all_jobs
from warehouse.jobs.retries import RETRIES_JOB
from warehouse.jobs.rollups import ROLLUPS_JOB
from warehouse.jobs.runner import JobContext, run_job, windows_between

DAY = (utc(2025, 3, 4), utc(2025, 3, 5))
AFTER = utc(2025, 3, 6)
CHECKOUT = dict(service_name="checkout", provider="openai", operation="chat")
SERVED = "gpt-4o-2024-08-06"


def at(hour: int, minute: int = 0, second: int = 0, day: int = 4):
    return utc(2025, 3, day, hour, minute) + timedelta(seconds=second)


def attempt(start, model="gpt-4o", served=None, status="ok", input_tokens=None, output_tokens=None, cost=None,
            **fields):
    """An inference record of the checkout service; ``cost`` None means unpriced."""
    values = dict(CHECKOUT, request_model=model, response_model=served, status=status,
                  input_tokens=input_tokens, output_tokens=output_tokens, **fields)
    if cost is None:
        values["cost_source"] = "unpriced"
    return record(start, cost_usd=cost, **values)


def scenario() -> tuple[list[dict], list[dict]]:
    """(inference records, HTTP attempts) of 2025-03-04; the figures they should give are in the tests."""
    app = dict(trace_id="a" * 32, parent_span_id="a" * 16)  # (a) three attempts, then an unrelated call
    retried = [
        attempt(at(10, 0, 0), status="error", input_tokens=1000, output_tokens=50, cost=0.003, **app),
        attempt(at(10, 0, 5), status="error", input_tokens=1000, output_tokens=0, cost=0.0025, **app),
        attempt(at(10, 0, 10), served=SERVED, input_tokens=1000, output_tokens=200, cost=0.0045, **app),
        attempt(at(10, 1, 0), served=SERVED, input_tokens=500, output_tokens=100, cost=0.002, **app),
    ]
    resent = attempt(at(11), served=SERVED, input_tokens=2000, output_tokens=300, cost=0.008)  # (b)
    counted = attempt(at(11, 5), served=SERVED, input_tokens=400, output_tokens=100, cost=0.001)
    plain = attempt(at(11, 10), served=SERVED, input_tokens=100, output_tokens=20, cost=0.0003)
    http = [
        http_attempt(resent, at(11, 0, 1), 429, resend_count=0),
        http_attempt(resent, at(11, 0, 2), 503, resend_count=1),
        http_attempt(resent, at(11, 0, 3), 200, resend_count=2),
        http_attempt(counted, at(11, 5, 1), 500),  # no resend counts: two spans are two attempts
        http_attempt(counted, at(11, 5, 2), 200),
        http_attempt(plain, at(11, 10, 1), 200),
    ]
    keyed = [  # (c) a queue retry in another trace, falling back to gpt-4o-mini
        attempt(at(12), status="error", input_tokens=1500, output_tokens=0, cost=0.00375, request_key="order-42",
                attempt=0, parent_span_id="b" * 16),
        attempt(at(12, 0, 30), model="gpt-4o-mini", served="gpt-4o-mini", input_tokens=1500, output_tokens=250,
                cost=0.000375, request_key="order-42", attempt=1),
        attempt(at(12, 5), model="gpt-4o-mini", served="gpt-4o-mini", input_tokens=500, output_tokens=100,
                cost=0.0001, request_key="order-44", attempt=0),
    ]
    first = attempt(at(13), status="error", input_tokens=700, output_tokens=0, cost=0.00175)
    linked = [first, attempt(at(13, 0, 20), served=SERVED, input_tokens=700, output_tokens=100, cost=0.00275,
                             retry_of_span_id=first["span_id"])]
    doomed = dict(trace_id="d" * 32, parent_span_id="d" * 16)  # failed after all attempts
    failed = [attempt(at(14, 0, s), status="error", input_tokens=800, output_tokens=0, cost=0.002, **doomed)
              for s in (0, 5, 10)]
    failed.append(attempt(at(14, 30), status="error"))  # one attempt, no tokens, unpriced
    return retried + [resent, counted, plain] + keyed + linked + failed, http


@pytest.fixture
def landed(tmp_path):
    data_dir = tmp_path / "data"
    records, http = scenario()
    land_records(data_dir, records)
    land_http_attempts(data_dir, http)
    return data_dir


def run(job, data_dir, windows, now=AFTER):
    result = run_job(job, JobContext(data_dir, now=now), windows)
    assert result.status == "ok", result.error
    return result


def inflation(data_dir) -> dict[str, dict]:
    return {row["model"]: row for row in query(data_dir, "SELECT * FROM retry_inflation").to_pylist()}


def test_app_http_link_retries_share_a_row(landed):
    run(RETRIES_JOB, landed, [DAY])
    row = inflation(landed)[SERVED]
    assert (row["window_start"], row["window_end"], row["provider"], row["service"]) == (*DAY, "openai", "checkout")
    # logical requests: the three app attempts (final: the third), the unrelated call under the same parent,
    # the resent call, the counted call, the plain call, the linked pair (final: the second) = 6
    assert row["logical_requests"] == 6
    # spans 3 + 1 + 1 + 1 + 1 + 2 = 9; hidden HTTP attempts: max resend count 2, and 2 spans - 1 = 1
    assert (row["attempt_spans"], row["http_extra_attempts"], row["attempts"]) == (9, 3, 12)
    assert row["retried_requests"] == 4 and row["retry_share"] == pytest.approx(4 / 6)
    assert row["failed_requests"] == 0
    # tokens (input + output): all = 1050 + 1000 + 1200 + 600 + 2300 + 500 + 120 + 700 + 800 = 8270;
    # finals = 1200 + 600 + 2300 + 500 + 120 + 800 = 5520; 8270 / 5520 - 1
    assert (row["tokens_all_attempts"], row["tokens_final_attempts"], row["wasted_tokens"]) == (8270, 5520, 2750)
    assert row["inflation_tokens"] == pytest.approx(8270 / 5520 - 1)
    # cost: all = 0.003 + 0.0025 + 0.0045 + 0.002 + 0.008 + 0.001 + 0.0003 + 0.00175 + 0.00275 = 0.0258;
    # finals = 0.0045 + 0.002 + 0.008 + 0.001 + 0.0003 + 0.00275 = 0.01855; 0.0258 / 0.01855 - 1 = 0.3908...
    assert row["cost_all_attempts_usd"] == pytest.approx(0.0258)
    assert row["cost_final_attempts_usd"] == pytest.approx(0.01855)
    assert row["wasted_cost_usd"] == pytest.approx(0.00725)
    assert row["inflation_cost"] == pytest.approx(0.0258 / 0.01855 - 1)
    assert (row["retried_by_request_key"], row["retried_by_retry_link"], row["retried_by_sibling_spans"],
            row["retried_by_http_attempts"]) == (0, 1, 1, 2)


def test_explicit_key_counts_the_fallback_under_the_final_model(landed):
    run(RETRIES_JOB, landed, [DAY])
    row = inflation(landed)["gpt-4o-mini"]
    # order-42 (gpt-4o failed, then gpt-4o-mini) and order-44 (attempt 0 only: not retried)
    assert (row["logical_requests"], row["attempts"], row["retried_requests"], row["failed_requests"]) == (2, 3, 1, 0)
    # tokens: all = 1500 + 1750 + 600 = 3850, finals = 1750 + 600 = 2350
    assert (row["tokens_all_attempts"], row["tokens_final_attempts"]) == (3850, 2350)
    assert row["inflation_tokens"] == pytest.approx(3850 / 2350 - 1)
    # cost: all = 0.00375 + 0.000375 + 0.0001 = 0.004225, finals = 0.000375 + 0.0001 = 0.000475
    assert row["inflation_cost"] == pytest.approx(0.004225 / 0.000475 - 1)
    assert row["retried_by_request_key"] == 1 and row["retried_by_sibling_spans"] == 0


def test_failed_after_all_attempts_is_pure_waste(landed):
    run(RETRIES_JOB, landed, [DAY])
    row = inflation(landed)["gpt-4o"]
    # three failed siblings (one logical request, retried) and one lone failure: both failed after all attempts
    assert (row["logical_requests"], row["attempts"], row["retried_requests"], row["failed_requests"]) == (2, 4, 1, 2)
    assert row["retry_share"] == 0.5
    # 3 * 800 tokens and 3 * 0.002 spent, no successful final attempt: waste, and no ratio to take
    assert (row["tokens_all_attempts"], row["tokens_final_attempts"], row["wasted_tokens"]) == (2400, 0, 2400)
    assert row["cost_all_attempts_usd"] == pytest.approx(0.006) and row["cost_final_attempts_usd"] is None
    assert row["wasted_cost_usd"] == pytest.approx(0.006)
    assert row["inflation_cost"] is None and row["inflation_tokens"] is None
    assert row["unpriced_attempts"] == 1 and row["retried_by_sibling_spans"] == 1


def test_metrics(landed):
    run(RETRIES_JOB, landed, [DAY])
    found = query(landed, "SELECT metric, labels, value FROM job_metrics WHERE metric LIKE 'retry.%'").to_pylist()
    values = {(r["metric"], json.loads(r["labels"])["model"]): r["value"] for r in found}
    assert values[("retry.inflation_cost", SERVED)] == pytest.approx(0.0258 / 0.01855 - 1)
    assert values[("retry.inflation_tokens", SERVED)] == pytest.approx(8270 / 5520 - 1)
    assert values[("retry.share", SERVED)] == pytest.approx(4 / 6)
    assert values[("retry.failed_requests", "gpt-4o")] == 2
    assert values[("retry.inflation_cost", "gpt-4o")] is None
    assert json.loads(found[0]["labels"]).keys() == {"provider", "model", "service"}


def test_rollups_count_logical_requests_and_attempts_the_same_way(landed):
    run(ROLLUPS_JOB, landed, windows_between("hour", *DAY))
    found = query(landed, "SELECT hour(window_start) AS hour, model, requests, logical_requests, attempts, errors, "
                          "failed_requests FROM rollup_hourly ORDER BY hour, model").to_pylist()
    figures = {(r["hour"], r["model"]): (r["requests"], r["logical_requests"], r["attempts"], r["errors"],
                                         r["failed_requests"]) for r in found}
    assert figures == {
        (10, "gpt-4o"): (2, 0, 2, 2, 0),  # the two failed app attempts were retried
        (10, SERVED): (2, 2, 2, 0, 0),
        (11, SERVED): (3, 3, 6, 0, 0),  # 3 spans + 3 hidden HTTP attempts
        (12, "gpt-4o"): (1, 0, 1, 1, 0),  # order-42 attempt 0
        (12, "gpt-4o-mini"): (2, 2, 2, 0, 0),
        (13, "gpt-4o"): (1, 0, 1, 1, 0),  # retried through the link
        (13, SERVED): (1, 1, 1, 0, 0),
        (14, "gpt-4o"): (4, 2, 4, 4, 2),
    }


def test_retry_across_midnight_belongs_to_the_day_of_its_answer(tmp_path):
    data_dir = tmp_path / "data"
    parent = dict(trace_id="e" * 32, parent_span_id="e" * 16)
    land_records(data_dir, [
        attempt(at(23, 59, 58), status="error", input_tokens=100, output_tokens=0, cost=0.001, **parent),
        attempt(at(0, 0, 3, day=5), served=SERVED, input_tokens=100, output_tokens=100, cost=0.002, **parent),
    ])
    run(RETRIES_JOB, data_dir, windows_between("day", utc(2025, 3, 4), utc(2025, 3, 6)))
    [row] = query(data_dir, "SELECT * FROM retry_inflation").to_pylist()
    assert row["window_start"] == utc(2025, 3, 5)
    assert (row["logical_requests"], row["attempts"], row["retried_requests"]) == (1, 2, 1)
    assert row["inflation_cost"] == pytest.approx(0.003 / 0.002 - 1)
    run(ROLLUPS_JOB, data_dir, windows_between("hour", *DAY))  # the chunk of March 4 sees the retry after it
    [hour] = query(data_dir, "SELECT * FROM rollup_hourly").to_pylist()
    assert (hour["requests"], hour["logical_requests"]) == (1, 0)


def test_explicit_attempt_numbers_count_attempts_without_spans(tmp_path):
    data_dir = tmp_path / "data"
    land_records(data_dir, [attempt(at(9), served=SERVED, input_tokens=10, output_tokens=10, cost=0.001,
                                    request_key="job-7", attempt=2)])
    run(RETRIES_JOB, data_dir, [DAY])
    [row] = query(data_dir, "SELECT * FROM retry_inflation").to_pylist()
    # attempt 2 says attempts 0 and 1 happened: 3 attempts, one span; their tokens and cost are unknown
    assert (row["logical_requests"], row["attempts"], row["attempt_spans"], row["retried_requests"]) == (1, 3, 1, 1)
    assert row["inflation_cost"] == 0.0


def test_partial_day_then_rerun_replaces(tmp_path):
    data_dir = tmp_path / "data"
    parent = dict(trace_id="f" * 32, parent_span_id="f" * 16)
    land_records(data_dir, [attempt(at(8), status="error", input_tokens=100, output_tokens=0, cost=0.001, **parent)])
    now = at(8, 0, 30)
    windows = windows_between("day", DAY[0], now)
    run(RETRIES_JOB, data_dir, windows, now=now)
    [row] = query(data_dir, "SELECT * FROM retry_inflation").to_pylist()
    assert (row["logical_requests"], row["failed_requests"]) == (1, 1)  # not retried (yet)
    land_records(data_dir, [attempt(at(8, 0, 40), served=SERVED, input_tokens=100, output_tokens=50, cost=0.0015,
                                    **parent)])
    run(RETRIES_JOB, data_dir, windows, now=at(9))
    found = query(data_dir, "SELECT * FROM retry_inflation").to_pylist()
    assert len(found) == 1  # the row of the failed-looking request was replaced, not kept beside
    [row] = found
    assert (row["model"], row["logical_requests"], row["attempts"], row["failed_requests"]) == (SERVED, 1, 2, 0)
    assert row["inflation_cost"] == pytest.approx(0.0025 / 0.0015 - 1)


def test_registered_after_rollups():
    names = [job.name for job in all_jobs()]
    assert names.index("rollups") < names.index("retries")
