"""The variance job: budget variance and forecasts, unit cost, the cost change decomposition, savings.

Every expected figure is worked out by hand from the records each test lands.
November 2026: the 1st is a Sunday, the 2nd a Monday; the month has 30 days.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.warehouse.jobs.records import land_records, record, utc
from warehouse.catalog import query
from warehouse.jobs.config import BudgetConfig
from warehouse.jobs.decompose import Cell, decompose, shapley_product
from warehouse.jobs.runner import JobContext, run_job, windows_between
from warehouse.jobs.variance import VARIANCE_JOB
from warehouse.pricing import load_book

PRICES = Path(__file__).resolve().parents[2] / "data" / "prices"


def day_windows(first, last):
    return windows_between("day", first, last + timedelta(days=1))


def run(data_dir, now, first, last, budgets=(), book=None):
    context = JobContext(data_dir, budgets=tuple(budgets), now=now, book=book)
    result = run_job(VARIANCE_JOB, context, day_windows(first, last))
    assert result.status == "ok", result.error
    return result


def rows(data_dir, sql):
    return query(data_dir, sql).to_pylist()


def age_partitions(data_dir, seconds=3600):
    """Make the landed partitions look old, as they are in production by the time a day is history."""
    past = time.time() - seconds
    for folder in (Path(data_dir) / "parquet").glob("*/date=*"):
        os.utime(folder, (past, past))


# ---------------------------------------------------------------- budgets

ACME_MONTH = BudgetConfig(name="acme-month", tenant="acme", amount_usd=100.0)


@pytest.fixture
def five_days(tmp_path):
    """acme spends 6, 8, 10, 12, 14 USD on Nov 1..5 (50 in all); another tenant spends 1000 a day."""
    data_dir = tmp_path / "data"
    records = []
    for day, spend in zip(range(1, 6), (6.0, 8.0, 10.0, 12.0, 14.0)):
        records.append(record(utc(2026, 11, day, 10), tenant="acme", cost_usd=spend / 2))
        records.append(record(utc(2026, 11, day, 20), tenant="acme", cost_usd=spend / 2))
        records.append(record(utc(2026, 11, day, 12), tenant="globex", cost_usd=1000.0))
    records.append(record(utc(2026, 11, 6, 9), tenant="acme", cost_usd=5.0))
    records.append(record(utc(2026, 11, 6, 9), tenant="acme", provider="mystery", response_model="m-7b"))  # unpriced
    land_records(data_dir, records)
    return data_dir


def test_overshoot_with_a_flat_forecast(five_days):
    run(five_days, utc(2026, 11, 6, 0, 30), utc(2026, 11, 5), utc(2026, 11, 5), [ACME_MONTH])
    [row] = rows(five_days, "SELECT * FROM budget_variance")
    # Nov 5 complete: 5 of 30 days elapsed; actual = 6+8+10+12+14 = 50
    assert row["actual_usd"] == pytest.approx(50.0)
    assert row["elapsed_days"] == pytest.approx(5.0)
    assert row["expected_to_date_usd"] == pytest.approx(100 * 5 / 30)  # 16.667
    assert row["variance_usd"] == pytest.approx(50 - 100 * 5 / 30)  # 33.333
    assert row["variance_pct"] == pytest.approx((50 - 100 / 6) / (100 / 6))  # 2.0
    assert row["spent_pct"] == pytest.approx(0.5)
    assert row["burn_rate_usd_per_day"] == pytest.approx(10.0)  # 50 / 5
    # 5 history days (< 14): flat run rate 50 / 5 = 10; 25 days left: 50 + 25 * 10 = 300
    assert (row["forecast_method"], row["history_days"]) == ("flat", 5)
    assert row["run_rate_usd_per_day"] == pytest.approx(10.0)
    assert row["forecast_usd"] == pytest.approx(300.0)
    assert row["forecast_pct"] == pytest.approx(3.0)
    assert row["forecast_variance_usd"] == pytest.approx(200.0)
    assert (row["period_start"].isoformat(), row["period_end"].isoformat()) == ("2026-11-01", "2026-12-01")
    assert json.loads(row["scope"]) == {"tenant": "acme"}
    metrics = {m["metric"]: m for m in rows(five_days, "SELECT * FROM job_metrics WHERE job = 'variance'")}
    forecast = metrics["budget.forecast_pct"]
    assert (forecast["value"], forecast["verdict"], forecast["threshold"]) == (pytest.approx(3.0), "over", 1.0)
    assert json.loads(forecast["labels"]) == {"budget": "acme-month"}
    detail = json.loads(forecast["detail"])
    assert (detail["amount_usd"], detail["period_end"]) == (100.0, "2026-12-01")
    assert (detail["actual_usd"], detail["forecast_usd"]) == (pytest.approx(50.0), pytest.approx(300.0))
    assert metrics["budget.spent_pct"]["value"] == pytest.approx(0.5)
    assert "budget.unit_cost_ratio" not in metrics  # no unit budget


def test_partial_day_forecast_counts_the_rest_of_the_day(five_days):
    run(five_days, utc(2026, 11, 6, 12), utc(2026, 11, 6), utc(2026, 11, 6), [ACME_MONTH])
    [row] = rows(five_days, "SELECT * FROM budget_variance")
    # now = Nov 6 12:00: 5.5 days elapsed; actual = 50 + 5 = 55; the unpriced record is counted, not priced
    assert (row["actual_usd"], row["unpriced_requests"]) == (pytest.approx(55.0), 1)
    assert row["expected_to_date_usd"] == pytest.approx(100 * 5.5 / 30)
    assert row["burn_rate_usd_per_day"] == pytest.approx(55 / 5.5)
    # run rate over the complete days Nov 1..5 = 10; left: half of Nov 6 + Nov 7..30 = 24.5 days
    # 55 + 24.5 * 10 = 300
    assert row["forecast_usd"] == pytest.approx(300.0)
    assert row["window_end"] > row["evaluated_at"]


@pytest.fixture
def two_weeks(tmp_path):
    """Nov 2 (Mon) .. Nov 15 (Sun): weekdays 10 USD, weekend days 30 USD."""
    data_dir = tmp_path / "data"
    records = []
    for day in range(2, 16):
        spend = 30.0 if utc(2026, 11, day).weekday() >= 5 else 10.0
        records.append(record(utc(2026, 11, day, 11), service_name="chat", cost_usd=spend))
    land_records(data_dir, records)
    return data_dir


def test_overshoot_with_weekday_seasonality(two_weeks):
    budget = BudgetConfig(name="chat", service="chat", amount_usd=400.0)
    run(two_weeks, utc(2026, 11, 16, 0, 30), utc(2026, 11, 15), utc(2026, 11, 15), [budget])
    [row] = rows(two_weeks, "SELECT * FROM budget_variance")
    # actual = 10 weekdays * 10 + 4 weekend days * 30 = 220; 15 of 30 days elapsed
    assert row["actual_usd"] == pytest.approx(220.0)
    assert row["expected_to_date_usd"] == pytest.approx(200.0)  # 400 * 15 / 30
    assert row["variance_usd"] == pytest.approx(20.0)
    # 14 history days: run rate = 220 / 14 = 15.714; factors: weekday 10 / 15.714, weekend 30 / 15.714.
    # Nov 16..30 = 11 weekdays + 4 weekend days: 220 + 15.714 * (11 * 10/15.714 + 4 * 30/15.714)
    #            = 220 + 11 * 10 + 4 * 30 = 450  (flat would give 220 + 15 * 15.714 = 455.71)
    assert (row["forecast_method"], row["history_days"]) == ("seasonal", 14)
    assert row["run_rate_usd_per_day"] == pytest.approx(220 / 14)
    assert row["forecast_usd"] == pytest.approx(450.0)
    assert row["forecast_pct"] == pytest.approx(1.125)


def test_week_budget_and_no_spend(two_weeks):
    weekly = BudgetConfig(name="chat-week", service="chat", period="week", amount_usd=70.0)
    idle = BudgetConfig(name="idle", tenant="nobody", amount_usd=10.0)
    run(two_weeks, utc(2026, 11, 12, 0, 30), utc(2026, 11, 11), utc(2026, 11, 11), [weekly, idle])
    found = {r["budget"]: r for r in rows(two_weeks, "SELECT * FROM budget_variance")}
    week = found["chat-week"]
    # ISO week Nov 9 (Mon) .. Nov 16; Nov 11 (Wed) complete: 3 days, actual 30, expected 70 * 3/7 = 30
    assert (week["period_start"].isoformat(), week["period_end"].isoformat()) == ("2026-11-09", "2026-11-16")
    assert week["actual_usd"] == pytest.approx(30.0)
    assert week["variance_usd"] == pytest.approx(0.0, abs=1e-9)
    # history Nov 2..11 = 10 days (< 14), flat: (5*10 + 2*30 + 3*10) / 10 = 14 a day; 4 days left: 30 + 56 = 86
    assert week["run_rate_usd_per_day"] == pytest.approx(14.0)
    assert week["forecast_usd"] == pytest.approx(86.0)
    nothing = found["idle"]
    assert (nothing["actual_usd"], nothing["forecast_usd"], nothing["forecast_method"]) == (0.0, 0.0, "burn_rate")


def test_unit_cost_per_decision_includes_human_review(tmp_path):
    data_dir = tmp_path / "data"
    at = utc(2026, 11, 3, 10)
    decisions = [record(at, service_name="fraud", decision_label=label, cost_usd=0.01)
                 for label in ("approve", "approve", "decline", "review")]
    enrichment = [record(at, service_name="fraud", cost_usd=0.005) for _ in range(2)]
    # the review comes from another service; it is attributed to the decision it reviews
    review = record(at + timedelta(hours=2), service_name="review-console", operation="review",
                    reviewed_span_id=decisions[3]["span_id"], review_outcome="decline", cost_usd=0.05)
    other = record(at, service_name="search", decision_label="approve", cost_usd=9.0)
    land_records(data_dir, decisions + enrichment + [review, other])
    budget = BudgetConfig(name="fraud-unit", service="fraud", unit="decision", unit_cost_usd=0.02)
    run(data_dir, utc(2026, 11, 4, 1), utc(2026, 11, 3), utc(2026, 11, 3), [budget])
    [row] = rows(data_dir, "SELECT * FROM budget_variance")
    # cost = 4 * 0.01 + 2 * 0.005 + 0.05 (review) = 0.10; units = 4 decisions; 0.10 / 4 = 0.025; / 0.02 = 1.25
    assert row["actual_usd"] == pytest.approx(0.10)
    assert row["units"] == 4
    assert row["unit_cost_usd"] == pytest.approx(0.025)
    assert row["unit_cost_ratio"] == pytest.approx(1.25)
    assert row["amount_usd"] is None and row["forecast_pct"] is None
    [metric] = rows(data_dir, "SELECT * FROM job_metrics WHERE metric = 'budget.unit_cost_ratio'")
    assert (metric["value"], metric["verdict"]) == (pytest.approx(1.25), "over")
    assert json.loads(metric["detail"])["units"] == 4


def test_inference_units_do_not_count_reviews(tmp_path):
    data_dir = tmp_path / "data"
    at = utc(2026, 11, 3, 10)
    calls = [record(at, service_name="chat", cost_usd=0.03) for _ in range(3)]
    review = record(at, service_name="chat", operation="review", cost_usd=0.03)  # nothing to attribute to
    land_records(data_dir, calls + [review])
    budget = BudgetConfig(name="chat-unit", service="chat", unit_cost_usd=0.03)
    run(data_dir, utc(2026, 11, 4, 1), utc(2026, 11, 3), utc(2026, 11, 3), [budget])
    [row] = rows(data_dir, "SELECT * FROM budget_variance")
    # 4 * 0.03 = 0.12 over 3 inferences = 0.04 each; 0.04 / 0.03 = 1.333
    assert (row["units"], row["unit_cost_usd"]) == (3, pytest.approx(0.04))
    assert row["unit_cost_ratio"] == pytest.approx(4 / 3)


def test_duplicate_budget_names_fail_the_run_with_a_clear_error(tmp_path):
    data_dir = tmp_path / "data"
    land_records(data_dir, [record(utc(2026, 11, 3, 10), cost_usd=1.0)])
    budgets = (BudgetConfig(name="x", amount_usd=1.0), BudgetConfig(name="x", amount_usd=2.0))
    result = run_job(VARIANCE_JOB, JobContext(data_dir, budgets=budgets, now=utc(2026, 11, 4)),
                     day_windows(utc(2026, 11, 3), utc(2026, 11, 3)))
    assert result.status == "failed"
    assert "budget names must be unique" in result.error


# ---------------------------------------------------------------- cost change

@pytest.fixture
def two_models_and_a_newcomer(tmp_path):
    """Previous week (Nov 2..8) against current week (Nov 9..15), service chat.

    previous: A 10 requests * 1000 tokens, 0.010 each (1e-5 a token); B 10 * 500 tokens, 0.002 each
    current:  A 12 requests * 1200 tokens, 0.018 each (1.5e-5 a token: a price change)
              B  6 * 500 tokens, 0.002 each; C (new) 6 * 2000 tokens, 0.004 each
    """
    data_dir = tmp_path / "data"
    records = []

    def add(day, model, count, input_tokens, output_tokens, cost):
        records.extend(record(utc(2026, 11, day, 12), service_name="chat", response_model=model,
                              input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost)
                       for _ in range(count))

    add(3, "A", 10, 800, 200, 0.010)
    add(4, "B", 10, 400, 100, 0.002)
    add(10, "A", 12, 1000, 200, 0.018)
    add(11, "B", 6, 400, 100, 0.002)
    add(12, "C", 6, 1500, 500, 0.004)
    records.append(record(utc(2026, 11, 12, 12), service_name="chat", response_model="mystery"))  # unpriced
    land_records(data_dir, records)
    return data_dir


def test_cost_change_effects_match_the_hand_computed_shapley_values(two_models_and_a_newcomer):
    data_dir = two_models_and_a_newcomer
    run(data_dir, utc(2026, 11, 16, 1), utc(2026, 11, 15), utc(2026, 11, 15))
    found = {(r["scope"], r["model"]): r for r in rows(data_dir, "SELECT * FROM cost_change")}
    total = found[("all", None)]
    # C0 = 0.10 + 0.02 = 0.12; C1 = 0.216 + 0.012 + 0.024 = 0.252
    assert (total["previous_cost_usd"], total["current_cost_usd"]) == (pytest.approx(0.12), pytest.approx(0.252))
    assert total["change_usd"] == pytest.approx(0.132)
    assert (total["previous_requests"], total["current_requests"], total["current_unpriced"]) == (20, 24, 1)
    assert (total["current_from"], total["current_to"]) == (utc(2026, 11, 9), utc(2026, 11, 16))
    assert (total["previous_from"], total["previous_to"]) == (utc(2026, 11, 2), utc(2026, 11, 9))
    # N: 20 -> 24. Model A: s 0.5 -> 0.5, t 1000 -> 1200, p 1e-5 -> 1.5e-5 (three factors move, s is a dummy).
    # Shapley for a product of three moving factors: phi_i = dx_i * [ (x0j x0k + x1j x1k)/3 + (x0j x1k + x1j x0k)/6 ]
    #   volume A = 4 * 0.5 * [ (0.010 + 0.018)/3 + (0.015 + 0.012)/6 ]           = 0.083/3  = 0.027667
    #   rate A   = 200 * 0.5 * [ (0.0002 + 0.00036)/3 + (0.0003 + 0.00024)/6 ]   = 0.166/6  = 0.027667
    #   price A  = 0.5e-5 * 0.5 * [ (20000 + 28800)/3 + (24000 + 24000)/6 ]      = 0.182/3  = 0.060667
    #   (sum 0.116 = 0.216 - 0.100)
    # Model B: N 20 -> 24, s 0.5 -> 0.25, t p = 0.002 per request fixed (two factors move):
    #   volume B = 4 * (0.5 + 0.25)/2 * 0.002 = 0.003;  mix B = -0.25 * (20 + 24)/2 * 0.002 = -0.011
    # Model C appears: s 0 -> 0.25, t and p taken from the current week (0.004 per request):
    #   volume C = 4 * (0 + 0.25)/2 * 0.004 = 0.002;    mix C = 0.25 * 22 * 0.004 = 0.022
    expected = {"volume": 0.083 / 3 + 0.003 + 0.002, "mix": -0.011 + 0.022, "rate": 0.166 / 6, "price": 0.182 / 3}
    for factor, value in expected.items():
        assert total[f"{factor}_effect_usd"] == pytest.approx(value, rel=1e-9), factor
    effects = sum(total[f"{f}_effect_usd"] for f in expected)
    assert effects == pytest.approx(total["change_usd"], rel=1e-12, abs=1e-15)
    model_a, model_c = found[("all", "A")], found[("all", "C")]
    assert (model_a["mix_effect_usd"], model_a["quantity"]) == (pytest.approx(0.0, abs=1e-15), "tokens")
    assert model_c["volume_effect_usd"] == pytest.approx(0.002)
    assert model_c["mix_effect_usd"] == pytest.approx(0.022)
    assert (model_c["rate_effect_usd"], model_c["price_effect_usd"]) == (0.0, 0.0)
    service = found[("service", None)]
    assert service["service"] == "chat"
    for factor in expected:
        assert service[f"{factor}_effect_usd"] == pytest.approx(total[f"{factor}_effect_usd"])


def test_decomposition_adds_up_when_a_model_disappears_and_a_key_is_new():
    previous = {"a": Cell(10, 5000, 0.5), "gone": Cell(4, 100, 0.3)}
    current = {"a": Cell(7, 9100, 0.8), "per-call": Cell(3, 0, 0.06)}  # no tokens: requests are its quantity
    effects = decompose(previous, current)
    assert sum(sum(e.values()) for e in effects.values()) == pytest.approx(0.86 - 0.8, rel=1e-12)
    assert effects["gone"]["rate"] == 0.0 and effects["gone"]["price"] == 0.0
    assert sum(effects["gone"].values()) == pytest.approx(-0.3)
    brand_new = decompose({}, {"x": Cell(5, 50, 1.0)})
    assert brand_new["x"] == {"volume": 1.0, "mix": 0.0, "rate": 0.0, "price": 0.0}


def test_shapley_of_a_two_factor_product():
    # (2 -> 3) * (5 -> 7): 15 = 21 - 10 + ... volume: 1 * (5 + 7)/2 = 6; other: 2 * (2 + 3)/2 = 5; 6 + 5 = 21 - 10
    assert shapley_product([2.0, 5.0], [3.0, 7.0]) == [6.0, 5.0]


# ---------------------------------------------------------------- savings

@pytest.fixture
def cached_and_batched(tmp_path):
    """Prices: tests/data/prices/acme.toml over genai-prices 0.2.3, on 2026-11-02 (µ$ = 1e-6 USD)."""
    data_dir = tmp_path / "data"
    at = utc(2026, 11, 2, 12)

    def tokens(i, o, cr=None, cw=None):
        return {"input_tokens": i, "output_tokens": o, "cache_read_tokens": cr, "cache_write_tokens": cw}

    land_records(data_dir, [
        # acme negotiated gpt-4o: input 2, cache read 1, output 8.
        #   600*2 + 400*1 + 200*8 = 3200; reads as input: 1000*2 + 1600 = 3600 -> saved 400
        record(at, service_name="chat", provider="openai", response_model="gpt-4o", **tokens(1000, 200, cr=400)),
        #   2000*2 + 1000*1 + 500*8 = 9000; reads as input: 3000*2 + 4000 = 10000 -> saved 1000
        record(at, service_name="chat", provider="openai", response_model="gpt-4o", **tokens(3000, 500, cr=1000)),
        # claude-sonnet-4 (list): input 3, cache write 3.75, cache read 0.30, output 15.
        #   1000*3 + 3000*0.30 + 1000*3.75 + 400*15 = 13650
        #   reads as input: 4000*3 + 3750 + 6000 = 21750 -> saved 8100
        #   writes as input: 2000*3 + 900 + 6000 = 12900 -> premium 13650 - 12900 = 750
        record(at, service_name="chat", provider="anthropic", response_model="claude-sonnet-4-20250514",
               **tokens(5000, 400, cr=3000, cw=1000)),
        # acme fine-tune, batch = half price: input 0.15, cache read 0.075, output 0.60
        #   8000*0.15 + 2000*0.075 + 1000*0.60 = 1950; standard 3900 -> batch saved 1950
        #   reads as input (batch): 10000*0.15 + 600 = 2100 -> saved 150
        record(at, service_name="score", provider="openai", response_model="ft:gpt-4o-mini-2024-07-18:acme::b7x2",
               pricing_tier="batch", **tokens(10000, 1000, cr=2000)),
        # acme long context, flex, above the 100k tier: 150000*1.00 + 1000*4 = 154000;
        # standard 150000*2.00 + 4000 = 304000 -> saved 150000
        record(at, service_name="score", provider="acme-ml", response_model="acme-lc-1", pricing_tier="flex",
               **tokens(150000, 1000)),
        record(at, service_name="chat", provider="mystery", response_model="m-7b", **tokens(1000, 10, cr=500)),
        record(at, service_name="chat", provider="openai", response_model="gpt-4o", cache_hit=True,
               **tokens(1000, 200, cr=400)),  # an application cache answered: no provider call, left out
        record(at, service_name="chat", provider="openai", response_model="gpt-4o", **tokens(1000, 200)),  # no cache
    ])
    return data_dir


def test_cache_and_batch_savings_with_a_real_price_book(cached_and_batched):
    book = load_book(PRICES / "acme.toml")
    run(cached_and_batched, utc(2026, 11, 3, 1), utc(2026, 11, 2), utc(2026, 11, 2), book=book)
    found = {(r["scope"], r["service"], r["model"]): r for r in rows(cached_and_batched, "SELECT * FROM savings")}
    total = found[("all", None, None)]
    assert total["cache_read_savings_usd"] == pytest.approx((400 + 1000 + 8100 + 150) * 1e-6)
    assert total["cache_write_premium_usd"] == pytest.approx(750e-6)
    assert total["cache_savings_usd"] == pytest.approx((9650 - 750) * 1e-6)
    assert total["batch_savings_usd"] == pytest.approx((1950 + 150000) * 1e-6)
    assert (total["cached_requests"], total["tier_requests"], total["unpriced_requests"]) == (5, 2, 1)
    assert total["cache_read_tokens"] == 400 + 1000 + 3000 + 2000 + 500
    assert total["reason"] is None
    gpt = found[("service_model", "chat", "gpt-4o")]
    assert gpt["cache_read_savings_usd"] == pytest.approx(1400e-6)
    assert gpt["cached_requests"] == 2
    flex = found[("service_model", "score", "acme-lc-1")]
    assert (flex["batch_savings_usd"], flex["cache_savings_usd"]) == (pytest.approx(0.15), 0.0)


def test_a_long_context_threshold_below_the_grouping_cutoff_is_not_approximated(tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text("""
[[model]]
id = "lab/tiny-context"
provider = "lab"
models = ["tiny"]
effective_from = 2025-01-01
input_mtok = { base = 1.00, tiers = [{ start = 1000, price = 2.00 }] }
cache_read_mtok = 0.10
output_mtok = 4.00
""")
    data_dir = tmp_path / "data"
    land_records(data_dir, [record(utc(2026, 11, 2, 12), service_name="chat", provider="lab", response_model="tiny",
                                   input_tokens=size, output_tokens=10, cache_read_tokens=100) for size in (500, 5000)])
    run(data_dir, utc(2026, 11, 3, 1), utc(2026, 11, 2), utc(2026, 11, 2), book=load_book(prices))
    total = rows(data_dir, "SELECT * FROM savings WHERE scope = 'all'")[0]
    # 500 and 5000 input tokens share a group, on both sides of the 1000-token tier: not priced from a mean
    assert (total["unpriced_requests"], total["cache_read_savings_usd"]) == (2, 0.0)
    assert "long-context threshold" in total["reason"]


def test_savings_without_a_price_book_are_null_with_a_reason(cached_and_batched):
    run(cached_and_batched, utc(2026, 11, 3, 1), utc(2026, 11, 2), utc(2026, 11, 2))
    [row] = rows(cached_and_batched, "SELECT * FROM savings")
    assert row["cache_savings_usd"] is None and row["batch_savings_usd"] is None
    assert "no price book" in row["reason"]


# ---------------------------------------------------------------- re-runs and history

def table_contents(data_dir):
    return {table: rows(data_dir, f"SELECT * EXCLUDE (evaluated_at) FROM {table} ORDER BY ALL")
            if table == "budget_variance" else rows(data_dir, f"SELECT * FROM {table} ORDER BY ALL")
            for table in ("budget_variance", "cost_change", "savings")}


def test_rerun_is_idempotent(two_weeks):
    budget = BudgetConfig(name="chat", service="chat", amount_usd=400.0)
    book = load_book()
    for _ in range(2):
        run(two_weeks, utc(2026, 11, 16, 0, 30), utc(2026, 11, 9), utc(2026, 11, 15), [budget], book)
        if _ == 0:
            first = table_contents(two_weeks)
    assert table_contents(two_weeks) == first
    assert len(first["budget_variance"]) == 7
    [count] = rows(two_weeks, "SELECT count(*) AS n FROM variance_daily WHERE kind = 'day'")
    assert count["n"] == 28 + 7  # the chunk from Nov 9 needs Oct 12 onward (28 days): one marker row a day


def test_history_comes_from_the_cache_until_a_day_changes(two_weeks):
    budget = BudgetConfig(name="chat", service="chat", amount_usd=400.0)
    age_partitions(two_weeks)
    run(two_weeks, utc(2026, 11, 15, 0, 30), utc(2026, 11, 14), utc(2026, 11, 14), [budget])
    # Nov 2..13 are now cached. Take Nov 3's records away: a run that reread it would lose 10 USD.
    moved = two_weeks.parent / "moved"
    shutil.move(two_weeks / "parquet" / "inferences" / "date=2026-11-03", moved)
    run(two_weeks, utc(2026, 11, 16, 0, 30), utc(2026, 11, 15), utc(2026, 11, 15), [budget])
    [row] = rows(two_weeks, "SELECT actual_usd FROM budget_variance WHERE window_start = TIMESTAMPTZ '2026-11-15'")
    assert row["actual_usd"] == pytest.approx(220.0)
    # a late record for Nov 4 changes that day: it is read again
    land_records(two_weeks, [record(utc(2026, 11, 4, 18), service_name="chat", cost_usd=5.0)])
    run(two_weeks, utc(2026, 11, 16, 0, 30), utc(2026, 11, 15), utc(2026, 11, 15), [budget])
    [row] = rows(two_weeks, "SELECT actual_usd FROM budget_variance WHERE window_start = TIMESTAMPTZ '2026-11-15'")
    assert row["actual_usd"] == pytest.approx(225.0)
