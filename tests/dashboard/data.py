"""A small warehouse whose every dashboard figure can be worked out by hand, and the real jobs run over it.

Fourteen complete UTC days ending yesterday (day 0 = 14 days ago, day 13 = yesterday), all
records at hour 10, so the figures do not depend on the time of day the tests run:

* **support-assistant**, openai / gpt-4o, tenant acme: 10 inferences a day for days
  0-6 and 20 a day for days 7-13, each 1,000 input + 100 output tokens at $0.10
  (priced by the book: ``computed``). Each day two of them are one retried request:
  attempt 0 failed (error, 1,000 input tokens, $0.10), attempt 1 answered.
  Cost: $1.00 a day, then $2.00 a day: $21.00 in 14 days, $14.00 in the last 7.
* **fraud-screening**, fraud-gbm v3 on the gpu pool, tenant bank-a: 20 decisions a day
  at $0.01 each (``capacity``), subject ``customer-<day>-<i>``: $2.80 in 14 days. Days
  0-6 decide 12 approve (score 0.1), 4 review (0.55), 4 decline (0.9); days 7-13 decide
  6 approve, 4 review, 10 decline: the label and score drift the drift job must find.
* **trading-signals**, selfhost / ranker-x: 2 inferences a day, no price (``unpriced``).

``EXPECTED`` has the totals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from tests.warehouse.jobs.records import land_records, record

DAYS = 14
SUPPORT_PER_DAY = (10,) * 7 + (20,) * 7
SCORES = {"approve": 0.1, "review": 0.55, "decline": 0.9}
LABELS_BEFORE = ("approve",) * 12 + ("review",) * 4 + ("decline",) * 4
LABELS_AFTER = ("approve",) * 6 + ("review",) * 4 + ("decline",) * 10
DECISIONS_PER_DAY = len(LABELS_BEFORE)
BUDGET_AMOUNT = 100.0


@dataclass(frozen=True)
class Expected:
    """Hand-computed figures of the 14 days (the 30-day overview sees all of them)."""

    support_cost: float = sum(SUPPORT_PER_DAY) * 0.10                          # 21.00
    fraud_cost: float = DAYS * DECISIONS_PER_DAY * 0.01                           # 2.80
    support_requests: int = sum(SUPPORT_PER_DAY)                                  # 210
    fraud_requests: int = DAYS * DECISIONS_PER_DAY                                 # 280
    unpriced_requests: int = DAYS * 2                                              # 28
    decisions: int = DAYS * DECISIONS_PER_DAY                                      # 280
    week_before_cost: float = 7 * (1.0 + 0.20)                                     # 8.40
    week_now_cost: float = 7 * (2.0 + 0.20)                                        # 15.40

    @property
    def total_cost(self) -> float:
        return self.support_cost + self.fraud_cost

    @property
    def requests(self) -> int:
        return self.support_requests + self.fraud_requests + self.unpriced_requests


EXPECTED = Expected()


@dataclass
class Built:
    data_dir: Path
    first_day: datetime
    last_day: datetime
    now: datetime
    subjects: list[str] = field(default_factory=list)
    server: Any = None  # the RunningServer, once started
    alert_run: Any = None
    webhook: Any = None

    def budget_spent(self) -> float:
        """What support-monthly spent in the current month (the budget's newest evaluation)."""
        month = (self.now.year, self.now.month)
        return sum((1.0 if index < 7 else 2.0) for index in range(DAYS)
                   if (day_start(self.now, index).year, day_start(self.now, index).month) == month)


def day_start(now: datetime, index: int) -> datetime:
    today = datetime.combine(now.date(), time(), UTC)
    return today - timedelta(days=DAYS - index)


def build_records(now: datetime) -> tuple[list[dict], list[str]]:
    rows, subjects = [], []
    for index in range(DAYS):
        at = day_start(now, index) + timedelta(hours=10)
        rows += _support_day(at, index, SUPPORT_PER_DAY[index])
        for i, label in enumerate(LABELS_BEFORE if index < 7 else LABELS_AFTER):
            subject = f"customer-{index}-{i}"
            subjects.append(subject)
            score = SCORES[label] + i / 1000
            rows.append(record(at + timedelta(minutes=i), service_name="fraud-screening", operation="predict",
                               request_model="fraud-gbm", response_model="fraud-gbm", model_version="v3",
                               provider="gpu-pool", compute_pool="gpu-pool", tenant="bank-a", cost_usd=0.01,
                               cost_source="capacity", decision_label=label, decision_score=score,
                               decision_reasons=["velocity", "amount"], subject_id=subject))
        for i in range(2):
            rows.append(record(at + timedelta(minutes=20 + i), service_name="trading-signals", provider="selfhost",
                               request_model="ranker-x", response_model="ranker-x", input_tokens=500,
                               output_tokens=5, cost_source="unpriced"))
    return rows, subjects


def _support_day(at: datetime, index: int, count: int) -> list[dict]:
    common = dict(service_name="support-assistant", provider="openai", request_model="gpt-4o",
                  response_model="gpt-4o", tenant="acme", feature="answers", input_tokens=1000, output_tokens=100,
                  cost_usd=0.10)
    rows = [record(at + timedelta(minutes=30 + i, seconds=5), **common) for i in range(count - 2)]
    key = f"ticket-{index}"
    rows.append(record(at + timedelta(minutes=55), **{**common, "output_tokens": None}, status="error",
                       error_type="invalid_output", request_key=key, attempt=0))
    rows.append(record(at + timedelta(minutes=56), **common, request_key=key, attempt=1))
    return rows


def land(data_dir: Path, now: datetime, pseudonymize) -> Built:
    """Land the records, subjects pseudonymized as the collector would."""
    rows, subjects = build_records(now)
    for row in rows:
        if row.get("subject_id"):
            row["subject_id"] = pseudonymize(row["subject_id"])
    land_records(data_dir, rows)
    return Built(data_dir, day_start(now, 0), day_start(now, DAYS - 1), now, subjects)


def run_all_jobs(data_dir: Path, now: datetime) -> None:
    """Every job over the 14 days (and today's partial window), as one scheduled catch-up would."""
    from warehouse.jobs.config import BudgetConfig, DriftConfig, JobsConfig
    from warehouse.jobs.registry import all_jobs
    from warehouse.jobs.runner import JobContext, run_job, windows_between
    from warehouse.pricing import load_book

    budgets = (BudgetConfig(name="support-monthly", amount_usd=BUDGET_AMOUNT, service="support-assistant"),)
    settings = JobsConfig(drift=DriftConfig(reference_days=7, current_days=7, min_samples=50))
    context = JobContext(data_dir, settings, budgets, now, load_book(None))
    for job in all_jobs():
        run = run_job(job, context, windows_between(job.granularity, day_start(now, 0), now), trigger="test")
        assert run.status == "ok", f"job {job.name} failed: {run.error}"
