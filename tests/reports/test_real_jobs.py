"""The weekly report over results the real jobs computed (rollups_daily, variance), not hand-written rows."""
from __future__ import annotations

from datetime import timedelta

import pytest

from reports.weekly import IsoWeek, build_weekly
from tests.reports.conftest import report_config
from tests.reports.data import REPORT_NOW, W45, land_weekly
from warehouse.jobs.budgets import midnight
from warehouse.jobs.rollups import ROLLUPS_DAILY_JOB
from warehouse.jobs.runner import JobContext, run_job, windows_between
from warehouse.jobs.variance import VARIANCE_JOB


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("real-jobs") / "data"
    land_weekly(data_dir)
    config = report_config(data_dir)
    context = JobContext(data_dir, config.jobs, tuple(config.budgets), REPORT_NOW)
    trend_start = midnight(W45) - timedelta(weeks=1)
    for job in (ROLLUPS_DAILY_JOB, VARIANCE_JOB):
        record = run_job(job, context, windows_between("day", trend_start, midnight(REPORT_NOW.date())))
        assert record.status == "ok", record.error
    return data_dir


def test_figures_from_the_daily_rollups_match_the_records(jobs_dir):
    config = report_config(jobs_dir)
    report = build_weekly(jobs_dir, config.reports, config.budgets, IsoWeek(2026, 47), REPORT_NOW)
    assert report.facts_source == {"rolled_up_days": 28, "record_days": 0}  # no pass over the records
    assert report.spend["current"] == pytest.approx(115.5) and report.spend["previous"] == pytest.approx(77.0)
    assert report.unpriced["requests"] == 14 and report.human_review["review_cost"] == pytest.approx(10.5)
    assert {r["key"]: r["change"] for r in report.movers["service"]} == {
        "support": pytest.approx(28.0), "fraud": pytest.approx(10.5)}


def test_budget_and_change_from_the_variance_job(jobs_dir):
    config = report_config(jobs_dir)
    report = build_weekly(jobs_dir, config.reports, config.budgets, IsoWeek(2026, 47), REPORT_NOW)
    budgets = {b["budget"]: b for b in report.jobs.budgets}
    assert budgets["all-ai"]["actual_usd"] == pytest.approx(14 * 11 + 7 * 16.5)  # November to date
    assert budgets["all-ai"]["week_actual_usd"] == pytest.approx(115.5)
    assert report.headline_budget["vs_budget"] == pytest.approx(0.65)
    assert report.subject == "AI inference $116, +65% vs budget (2026-W47)"
    # the fraud decisions' cost includes their human reviews: ($7.00 + $10.50) / 140 decisions
    assert budgets["fraud-unit"]["week_unit_cost_usd"] == pytest.approx(17.5 / 140)
    change = report.jobs.change["total"]
    assert change["previous_cost_usd"] == pytest.approx(77.0) and change["current_cost_usd"] == pytest.approx(115.5)
    effects = sum(change[f"{name}_effect_usd"] for name in ("volume", "mix", "rate", "price"))
    assert effects == pytest.approx(38.5)
