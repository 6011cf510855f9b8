"""Constructed warehouses with figures worked out by hand, for the report tests.

Records are landed through the real write-ahead log and lander (``land_records``);
job results are written with the jobs' own schemas through ``replace_windows``,
exactly as the runner writes them; alert events through the alert engine's log.
Ids are derived from a name, so sample order and golden files do not depend on
which tests ran before.

Weekly figures (ISO week 2026-W47 = Nov 16-22, against W46 = Nov 9-15):

    per day           W45, W46                        W47
    support/gpt-4o    10 x $1.00 (acme)    = $10.00   10 x $1.20 (acme)    = $12.00
    support/claude    -                               4 x $0.50 (globex)   =  $2.00
    fraud/fraud-gbm   20 x $0.05 (bank)    =  $1.00   20 x $0.05 (bank)    =  $1.00
    review            -                               1 x $1.50            =  $1.50
    unpriced          -                               2 x mystery-llm      =  unknown
    day total                              = $11.00                        = $16.50
    week total                             = $77.00                        = $115.50  (+50%)

Budget "all-ai": $300 a month (November: 30 days, $10 a day), so W47's share is
$70 and the week ran +65% over it. Budget "fraud-unit": $0.04 per decision, the
fraud model costs $0.05 (125%).
"""
from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from tests.warehouse.jobs.records import land_records
from warehouse.jobs.budgets import midnight
from warehouse.jobs.results import replace_windows
from warehouse.jobs.runner import METRICS_SCHEMA, METRICS_TABLE, Metric, metrics_table
from warehouse.jobs.variance import BUDGET_VARIANCE_SCHEMA, COST_CHANGE_SCHEMA, SAVINGS_SCHEMA

W45, W46, W47 = date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16)  # Mondays
REPORT_NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday 08:00 after W47


def ids(name: str) -> tuple[str, str]:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return digest[:32], digest[32:48]


def row(name: str, start: datetime, **fields) -> dict:
    """A record named ``name`` (its ids derive from it); a cost makes it ``computed`` unless a source is given."""
    trace_id, span_id = ids(name)
    values = {"trace_id": trace_id, "span_id": span_id, "start_time": start, "end_time": start + timedelta(seconds=1),
              "ingest_time": start + timedelta(seconds=2), "duration_ms": 1000.0, "status": "ok",
              "operation": "chat", "convention": "inferledger"}
    if fields.get("cost_usd") is not None:
        values["cost_source"] = "computed"
        values["computed_cost_usd"] = fields["cost_usd"]
    values.update(fields)
    return values


# ------------------------------------------------------------------------------------------- weekly

def weekly_day_rows(day: date, report_week: bool) -> list[dict]:
    at = lambda hour, minute=0: midnight(day) + timedelta(hours=hour, minutes=minute)  # noqa: E731
    rows = []
    for i in range(10):
        rows.append(row(f"{day}-gpt-{i}", at(9, i), service_name="support", provider="openai", request_model="gpt-4o",
                        response_model="gpt-4o", model_version="gpt-4o-2024-08-06", tenant="acme",
                        input_tokens=1000, output_tokens=200, cost_usd=1.20 if report_week else 1.00))
    for i in range(20):
        rows.append(row(f"{day}-fraud-{i}", at(12, i), service_name="fraud", provider="self", request_model="fraud-gbm",
                        model_version="v3", tenant="bank", operation="predict", decision_label="approve",
                        decision_score=0.1, cost_usd=0.05))
    if report_week:
        for i in range(4):
            rows.append(row(f"{day}-claude-{i}", at(15, i), service_name="support", provider="anthropic",
                            request_model="claude-3-5-sonnet", response_model="claude-3-5-sonnet", tenant="globex",
                            input_tokens=800, output_tokens=100, cost_usd=0.50))
        for i in range(2):
            rows.append(row(f"{day}-mystery-{i}", at(16, i), service_name="support", provider="acme-ai",
                            request_model="mystery-llm", tenant="acme", cost_source="unpriced"))
        rows.append(row(f"{day}-review", at(17), service_name="fraud", operation="review", tenant="bank",
                        review_outcome="upheld", review_duration_s=90.0, cost_usd=1.50, cost_source="human_review",
                        price_ref="config:pricing.reviewer_hour_usd=60"))
    return rows


def land_weekly(data_dir: Path) -> None:
    rows = []
    for monday in (W45, W46, W47):
        for offset in range(7):
            rows += weekly_day_rows(monday + timedelta(days=offset), report_week=monday == W47)
    land_records(data_dir, rows)


def write_weekly_job_results(data_dir: Path) -> None:
    """Variance, drift and alert results for W47, as the jobs and the alert engine write them."""
    _budget_variance(data_dir)
    _cost_change(data_dir)
    _savings(data_dir)
    _retries(data_dir)
    _drift_metrics(data_dir)
    _alert_events(data_dir)


def _day_windows(first: date, days: int) -> list[tuple[datetime, datetime]]:
    return [(midnight(first + timedelta(days=i)), midnight(first + timedelta(days=i + 1))) for i in range(days)]


def _budget_variance(data_dir: Path) -> None:
    """November 1-22: every day's spend is known from the rows above (Nov 1 has none: W45 starts Nov 2)."""
    rows, actual, fraud_actual, decisions = [], 0.0, 0.0, 0
    for start, end in _day_windows(date(2026, 11, 1), 22):
        day = start.date()
        spend = 0.0 if day < W45 else (16.50 if day >= W47 else 11.00)
        units = 0 if day < W45 else 20
        actual += spend
        decisions += units
        elapsed = float(day.day)
        forecast = actual + (actual / elapsed) * (30 - elapsed)
        common = {"window_start": start, "window_end": end, "period": "month", "period_start": date(2026, 11, 1),
                  "period_end": date(2026, 12, 1), "evaluated_at": end, "elapsed_days": elapsed, "period_days": 30.0,
                  "forecast_method": "flat", "history_days": int(elapsed)}
        rows.append({**common, "budget": "all-ai", "scope": "all", "unit": "inference", "amount_usd": 300.0,
                     "actual_usd": actual, "expected_to_date_usd": 10.0 * elapsed,
                     "variance_usd": actual - 10.0 * elapsed, "variance_pct": actual / (10.0 * elapsed) - 1,
                     "spent_pct": actual / 300.0, "forecast_usd": forecast, "forecast_pct": forecast / 300.0,
                     "forecast_variance_usd": forecast - 300.0, "day_cost_usd": spend, "day_units": 30,
                     "units": 30 * int(elapsed)})
        fraud = 1.0 if units else 0.0
        fraud_actual += fraud
        rows.append({**common, "budget": "fraud-unit", "scope": "service=fraud", "unit": "decision",
                     "actual_usd": fraud_actual, "units": decisions, "day_cost_usd": fraud, "day_units": units,
                     "unit_cost_usd": 0.05 if decisions else None, "budget_unit_cost_usd": 0.04,
                     "unit_cost_ratio": 1.25 if decisions else None,
                     "forecast_usd": fraud_actual + 1.0 * (30 - elapsed)})
    windows = _day_windows(date(2026, 11, 1), 22)
    replace_windows(data_dir, "budget_variance", "variance", BUDGET_VARIANCE_SCHEMA, windows,
                    pa.Table.from_pylist(rows, schema=BUDGET_VARIANCE_SCHEMA))


def _cost_change(data_dir: Path) -> None:
    """The window of Nov 22 compares W47 with W46; effects add up to the change of +$38.50."""
    start, end = midnight(date(2026, 11, 22)), midnight(date(2026, 11, 23))
    base = {"window_start": start, "window_end": end, "previous_from": midnight(W46), "previous_to": midnight(W47),
            "current_from": midnight(W47), "current_to": end}
    cells = [  # scope, service, model, previous, current, volume, mix, rate, price
        ("all", None, None, 77.0, 115.5, 20.0, 6.5, 0.0, 12.0),
        ("all", None, "gpt-4o", 70.0, 84.0, 6.0, -4.0, 0.0, 12.0),
        ("all", None, "claude-3-5-sonnet", 0.0, 14.0, 4.0, 10.0, 0.0, 0.0),
        ("all", None, "(human review)", 0.0, 10.5, 8.0, 2.5, 0.0, 0.0),
        ("all", None, "fraud-gbm", 7.0, 7.0, 2.0, -2.0, 0.0, 0.0),
        ("service", "support", None, 70.0, 98.0, 10.0, 6.0, 0.0, 12.0),
        ("service", "fraud", None, 7.0, 17.5, 10.0, 0.5, 0.0, 0.0),
    ]
    rows = [{**base, "scope": scope, "service": service, "model": model, "previous_cost_usd": before,
             "current_cost_usd": after, "change_usd": after - before,
             "change_pct": (after - before) / before if before else None, "volume_effect_usd": volume,
             "mix_effect_usd": mix, "rate_effect_usd": rate, "price_effect_usd": price}
            for scope, service, model, before, after, volume, mix, rate, price in cells]
    replace_windows(data_dir, "cost_change", "variance", COST_CHANGE_SCHEMA, [(start, end)],
                    pa.Table.from_pylist(rows, schema=COST_CHANGE_SCHEMA))


def _savings(data_dir: Path) -> None:
    windows = _day_windows(W47, 7)
    rows = []
    for start, end in windows:
        common = {"window_start": start, "window_end": end}
        rows.append({**common, "scope": "all", "cached_requests": 5, "cache_read_savings_usd": 0.40,
                     "cache_write_premium_usd": 0.10, "cache_savings_usd": 0.30, "tier_requests": 0,
                     "batch_savings_usd": 0.0, "unpriced_requests": 0})
        rows.append({**common, "scope": "service_model", "service": "support", "model": "gpt-4o", "cached_requests": 5,
                     "cache_read_savings_usd": 0.40, "cache_write_premium_usd": 0.10, "cache_savings_usd": 0.30,
                     "tier_requests": 0, "batch_savings_usd": 0.0, "unpriced_requests": 0})
    replace_windows(data_dir, "savings", "variance", SAVINGS_SCHEMA, windows,
                    pa.Table.from_pylist(rows, schema=SAVINGS_SCHEMA))


def _retries(data_dir: Path) -> None:
    """One of gpt-4o's 10 daily requests needed a second attempt ($1.20 wasted): +10% on $84 of answers."""
    from warehouse.jobs.retries import RETRY_SCHEMA

    windows = _day_windows(W47, 7)
    rows = []
    for start, end in windows:
        common = {"window_start": start, "window_end": end, "service": "support"}
        rows.append({**common, "provider": "openai", "model": "gpt-4o", "logical_requests": 10, "attempts": 11,
                     "retried_requests": 1, "cost_all_attempts_usd": 13.2, "cost_final_attempts_usd": 12.0,
                     "wasted_cost_usd": 1.2, "inflation_cost": 0.1})
        rows.append({**common, "provider": "anthropic", "model": "claude-3-5-sonnet", "logical_requests": 4,
                     "attempts": 4, "retried_requests": 0, "cost_all_attempts_usd": 2.0,
                     "cost_final_attempts_usd": 2.0, "wasted_cost_usd": 0.0, "inflation_cost": 0.0})
    replace_windows(data_dir, "retry_inflation", "retries", RETRY_SCHEMA, windows,
                    pa.Table.from_pylist(rows, schema=RETRY_SCHEMA))


def _drift_metrics(data_dir: Path) -> None:
    window = (midnight(date(2026, 11, 20)), midnight(date(2026, 11, 21)))
    labels = {"service": "fraud", "model": "fraud-gbm", "model_version": "v3"}
    metrics = [Metric(window, "drift.labels", 0.12, labels, verdict="major", threshold=0.05),
               Metric(window, "drift.score_psi", 0.02, labels, verdict="none", threshold=0.1),
               Metric(window, "drift.latency_psi", 0.15, labels, verdict="minor", threshold=0.1)]
    replace_windows(data_dir, METRICS_TABLE, "drift", METRICS_SCHEMA, [window],
                    metrics_table("drift", metrics, window[1]))


def _alert_events(data_dir: Path) -> None:
    from alerts.state import EVENTS_SCHEMA, EVENTS_TABLE, append_log

    fired = midnight(date(2026, 11, 18)) + timedelta(hours=9, minutes=30)
    event = {"alert_id": "a1", "rule": "budget-forecast", "metric": "budget.forecast_pct",
             "labels": json.dumps({"budget": "all-ai"}), "severity": "warning", "value": 1.55, "threshold": 1.1}
    append_log(data_dir, EVENTS_TABLE, EVENTS_SCHEMA, [
        {**event, "event_time": fired, "event": "firing", "from_state": "pending", "to_state": "firing"},
        {**event, "event_time": fired + timedelta(days=1), "event": "reminder", "from_state": "firing",
         "to_state": "firing"},
    ], fired)


# ------------------------------------------------------------------------------------------- audit

AUDIT_FROM, AUDIT_TO = date(2026, 11, 1), date(2026, 11, 4)  # Nov 3 has no record
CONTENT_ATTRIBUTES = '{"gen_ai.prompt.0.content":"Is txn 42 fraud?","gen_ai.prompt.0.role":"user","txn.amount":99}'


def audit_rows() -> list[dict]:
    """16 decisions of service ``fraud`` (v3 on Nov 1-2, v4 from Nov 2) and 3 chat records of ``support``."""
    plan = [(date(2026, 11, 1), "v3", 6), (date(2026, 11, 2), "v3", 4), (date(2026, 11, 2), "v4", 2),
            (date(2026, 11, 4), "v4", 4)]
    rows = []
    for day, version, count in plan:
        for i in range(count):
            label = "review" if (day.day == 4 and i == 3) else ("decline" if i % 3 == 2 else "approve")
            attributes = CONTENT_ATTRIBUTES if (day.day == 2 and version == "v4" and i == 0) else \
                json.dumps({"txn.amount": 10.0 * (i + 1), "txn.country": "DE"}, separators=(",", ":"))
            hour = 9 + i + (2 if version == "v4" else 0)
            rows.append(row(f"audit-{day}-{version}-{i}", midnight(day) + timedelta(hours=hour),
                            service_name="fraud", service_version="2.1", provider="self", request_model="fraud-gbm",
                            model_version=version, operation="predict", decision_label=label,
                            decision_score=round(0.1 * (i + 1), 2), decision_reasons=["amount", "velocity"],
                            subject_id=hashlib.sha256(f"subject-{i}".encode()).hexdigest(), attempt=0,
                            request_key=f"req-{day}-{version}-{i}", attributes=attributes, cost_usd=0.05))
    for i in range(3):
        rows.append(row(f"audit-chat-{i}", midnight(date(2026, 11, 4)) + timedelta(hours=20, minutes=i),
                        service_name="support", provider="openai", request_model="gpt-4o", response_model="gpt-4o",
                        model_version="gpt-4o-2024-08-06", input_tokens=500, output_tokens=50, cost_usd=0.01))
    return rows


def land_audit(data_dir: Path) -> list[dict]:
    """Land the audit rows, then one of them again in a second log file (an exporter retry)."""
    rows = audit_rows()
    land_records(data_dir, rows)
    land_records(data_dir, [rows[7]])
    _audit_drift(data_dir)
    _audit_alert(data_dir)
    return rows


def _audit_drift(data_dir: Path) -> None:
    from warehouse.jobs.drift import DRIFT_SCHEMA

    start, end = midnight(date(2026, 11, 2)), midnight(date(2026, 11, 3))
    common = {"window_start": start, "window_end": end, "evaluated_at": end, "comparison": "window",
              "service": "fraud", "model": "fraud-gbm", "model_version": "v4", "reference_version": "v4"}
    rows = [{**common, "feature": "labels", "test": "chi_square", "statistic": 14.2, "p_value": 0.0008,
             "effect": 0.21, "verdict": "major"},
            {**common, "feature": "score", "test": "psi", "statistic": 0.03, "effect": 0.03, "verdict": "none"}]
    replace_windows(data_dir, "drift", "drift", DRIFT_SCHEMA, [(start, end)],
                    pa.Table.from_pylist(rows, schema=DRIFT_SCHEMA))


def _audit_alert(data_dir: Path) -> None:
    from alerts.state import EVENTS_SCHEMA, EVENTS_TABLE, append_log

    at = midnight(date(2026, 11, 2)) + timedelta(hours=18)
    append_log(data_dir, EVENTS_TABLE, EVENTS_SCHEMA, [{
        "event_time": at, "alert_id": "d1", "rule": "drift-labels", "metric": "drift.labels",
        "labels": json.dumps({"service": "fraud"}), "severity": "critical", "event": "firing",
        "from_state": "ok", "to_state": "firing", "value": 0.21, "reason": "decision labels shifted"}], at)
