"""The weekly cost-variance email's content: a plain data structure, built from the warehouse.

Spend, movers, unpriced requests and human review come from a small temporary
table of daily figures (``reports.weekly_facts``: the daily rollups, or the
records for days not rolled up) covering the trend chart's weeks, which include
the report's week and the one before. Budgets, the cost-change
decomposition, retry inflation, savings and drift come from the jobs' result
tables (``reports.weekly_jobs``), so the email shows the figures the jobs and the
alerts computed, not a second opinion. Every section has a "no data" form.

Spend is every cost of the week, human reviews included (as in the budgets); the
cost of reviews (``cost_source = 'human_review'``, priced by reviewer time) is
also shown in its own section, next to the inference cost. A record without a
cost is unpriced: counted, never taken as $0. Weeks are ISO weeks in UTC.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from reports.config import ReportsConfig
from reports.formatting import money_short, signed_percent
from reports.sources import Warehouse
from reports.weekly_facts import load_facts
from reports.weekly_jobs import JobSections, read_job_sections
from warehouse.jobs.config import BudgetConfig

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
NO_MODEL = "(no model)"
MOVER_DIMENSIONS = {"service": ("service_name", "(none)"), "model": ("model", NO_MODEL), "tenant": ("tenant", "(none)")}


@dataclass(frozen=True)
class IsoWeek:
    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> "IsoWeek":
        """``2026-W47``; anything else is a ValueError with the expected form."""
        match = _WEEK.match(text.strip())
        if not match:
            raise ValueError(f"bad week {text!r}: use the ISO form YYYY-Www, e.g. 2026-W47")
        year, week = int(match.group(1)), int(match.group(2))
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError:
            raise ValueError(f"bad week {text!r}: {year} has no ISO week {week}") from None
        return cls(year, week)

    @classmethod
    def containing(cls, day: date) -> "IsoWeek":
        year, week, _ = day.isocalendar()
        return cls(year, week)

    @classmethod
    def last_complete(cls, now: datetime) -> "IsoWeek":
        """The newest ISO week that ended at or before ``now`` (UTC)."""
        return cls.containing(now.astimezone(UTC).date() - timedelta(days=7))

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def first_day(self) -> date:
        return date.fromisocalendar(self.year, self.week, 1)

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=6)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(), UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    def previous(self) -> "IsoWeek":
        return IsoWeek.containing(self.first_day - timedelta(days=7))


@dataclass
class WeeklyReport:
    week: IsoWeek
    generated_at: datetime
    subject: str
    spend: dict  # current, previous, change, change_pct, requests, previous_requests
    headline_budget: dict | None  # name, week_actual, week_budget, vs_budget
    movers: dict[str, list[dict]]
    unpriced: dict
    human_review: dict
    trend: list[dict]  # day, model, cost (top models + "other")
    trend_weeks: int
    jobs: JobSections
    complete: bool  # False when the week has not ended yet (a preview)
    facts_source: dict  # days read from the daily rollups / from the records
    charts: dict[str, bytes] = field(default_factory=dict)  # content id -> PNG


def build_weekly(data_dir: Path, config: ReportsConfig, budgets: list[BudgetConfig], week: IsoWeek,
                 now: datetime | None = None) -> WeeklyReport:
    now = now or datetime.now(UTC)
    with Warehouse(data_dir) as warehouse:
        facts_source = load_facts(warehouse, week.end - timedelta(weeks=config.trend_weeks), week.end)
        spend = _spend(warehouse, week)
        jobs = read_job_sections(warehouse, budgets, week, config)
        report = WeeklyReport(
            week=week, generated_at=now, subject="", spend=spend,
            headline_budget=jobs.headline(config.headline_budget, budgets),
            movers={name: _movers(warehouse, week, column, missing, config.top_movers)
                    for name, (column, missing) in MOVER_DIMENSIONS.items()},
            unpriced=_unpriced(warehouse, week), human_review=_human_review(warehouse, week),
            trend=_trend(warehouse), trend_weeks=config.trend_weeks, jobs=jobs, complete=week.end <= now,
            facts_source=facts_source)
    report.subject = subject(report, config.currency_symbol)
    return report


def subject(report: WeeklyReport, symbol: str = "$") -> str:
    """``AI inference $41.2k, +18% vs budget (2026-W47)``; vs last week when no budget applies."""
    spent = money_short(report.spend["current"], symbol)
    budget = report.headline_budget
    if budget and budget.get("vs_budget") is not None:
        versus = f"{signed_percent(budget['vs_budget'])} vs budget"
    elif report.spend["change_pct"] is not None:
        versus = f"{signed_percent(report.spend['change_pct'])} vs last week"
    else:
        versus = "no spend the week before"
    preview = ", week not over yet" if not report.complete else ""
    return f"AI inference {spent}, {versus} ({report.week.label}{preview})"


def _week_filter(week: IsoWeek) -> list:
    return [week.first_day, week.last_day]


def _spend(warehouse: Warehouse, week: IsoWeek) -> dict:
    previous = week.previous()
    row = warehouse.one("inference spend and requests, this week and the week before", f"""
        SELECT sum(cost_usd) FILTER (WHERE day BETWEEN ? AND ?) AS current,
               sum(cost_usd) FILTER (WHERE day BETWEEN ? AND ?) AS previous,
               coalesce(sum(requests) FILTER (WHERE day BETWEEN ? AND ?), 0)::BIGINT AS requests,
               coalesce(sum(requests) FILTER (WHERE day BETWEEN ? AND ?), 0)::BIGINT AS previous_requests
        FROM weekly_facts""", [*_week_filter(week), *_week_filter(previous)] * 2)
    current, before = row.get("current") or 0.0, row.get("previous") or 0.0
    return {"current": current, "previous": before, "change": current - before,
            "change_pct": (current - before) / before if before else None,
            "requests": row.get("requests", 0), "previous_requests": row.get("previous_requests", 0),
            "cost_per_request": current / row["requests"] if row.get("requests") else None}


def _movers(warehouse: Warehouse, week: IsoWeek, column: str, missing: str, limit: int) -> list[dict]:
    """Keys with the largest absolute change in spend against the week before."""
    previous = week.previous()
    return warehouse.rows(f"top movers by {column}", f"""
        SELECT coalesce({column}, '{missing}') AS key,
               coalesce(sum(cost_usd) FILTER (WHERE day BETWEEN ? AND ?), 0) AS current,
               coalesce(sum(cost_usd) FILTER (WHERE day BETWEEN ? AND ?), 0) AS previous,
               current - previous AS change,
               CASE WHEN previous > 0 THEN change / previous END AS change_pct,
               coalesce(sum(requests) FILTER (WHERE day BETWEEN ? AND ?), 0)::BIGINT AS requests
        FROM weekly_facts WHERE day BETWEEN ? AND ?
        GROUP BY 1 HAVING current <> 0 OR previous <> 0
        ORDER BY round(abs(change), 6) DESC, key LIMIT ?""",
        [*_week_filter(week), *_week_filter(previous), *_week_filter(week), previous.first_day, week.last_day, limit])


def _unpriced(warehouse: Warehouse, week: IsoWeek) -> dict:
    """Requests without a price: their spend is unknown, never counted as zero."""
    models = warehouse.rows("unpriced requests of the week by provider and model", f"""
        SELECT coalesce(provider, '(none)') AS provider, coalesce(model, '{NO_MODEL}') AS model,
               sum(unpriced_requests)::BIGINT AS requests
        FROM weekly_facts WHERE unpriced_requests > 0 AND day BETWEEN ? AND ?
        GROUP BY ALL ORDER BY requests DESC, provider, model LIMIT 10""", _week_filter(week))
    totals = warehouse.one("unpriced share of the week's requests", """
        SELECT coalesce(sum(unpriced_requests), 0)::BIGINT AS requests,
               coalesce(sum(requests), 0)::BIGINT AS all_requests
        FROM weekly_facts WHERE day BETWEEN ? AND ?""", _week_filter(week))
    share = totals["requests"] / totals["all_requests"] if totals.get("all_requests") else None
    return {"requests": totals.get("requests", 0), "share": share, "models": models}


def _human_review(warehouse: Warehouse, week: IsoWeek) -> dict:
    row = warehouse.one("human review cost next to inference cost", """
        SELECT sum(review_cost_usd) AS review_cost, sum(cost_usd) - sum(review_cost_usd) AS inference_cost
        FROM weekly_facts WHERE day BETWEEN ? AND ?""", _week_filter(week))
    review, inference = row.get("review_cost") or 0.0, row.get("inference_cost") or 0.0
    total = review + inference
    return {"review_cost": review, "inference_cost": inference,
            "review_share": review / total if total else None}


def _trend(warehouse: Warehouse, top: int = 6) -> list[dict]:
    """Daily spend of the trend weeks, for the ``top`` models by spend and "other"."""
    return warehouse.rows(f"daily spend by model (top {top}) for the trend chart", f"""
        WITH ranked AS (
            SELECT model, row_number() OVER (ORDER BY sum(cost_usd) DESC NULLS LAST, model) AS model_rank
            FROM weekly_facts WHERE cost_usd IS NOT NULL GROUP BY model
        )
        SELECT day, CASE WHEN model_rank <= ? THEN coalesce(f.model, '{NO_MODEL}') ELSE 'other' END AS model,
               coalesce(sum(cost_usd), 0) AS cost_usd
        FROM weekly_facts f JOIN ranked r ON f.model IS NOT DISTINCT FROM r.model
        WHERE cost_usd IS NOT NULL
        GROUP BY ALL ORDER BY day, model""", [top])
