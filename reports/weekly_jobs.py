"""The weekly email's sections that the scheduled jobs and the alert engine computed.

Read from their result tables (see warehouse/jobs/README.md): ``budget_variance``
(one row per budget and UTC day: period to date as of that day's end, forecast,
unit cost), ``cost_change`` (the 7 days ending on a day against the 7 before,
split into volume, mix, rate and price effects; the row of the week's last day
compares exactly the ISO week with the one before), ``savings`` (cache and batch
savings per day), ``retry_inflation``, ``job_metrics`` (drift verdicts) and
``alert_events``. A table that does not exist, or has no row for the week, gives
``None`` and a hint naming the job to run, never an error.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

from reports.config import ReportsConfig
from reports.sources import Warehouse
from warehouse.jobs.budgets import midnight
from warehouse.jobs.config import BudgetConfig

FLAGGED_DRIFT = ("minor", "major", "drift")
ALERT_EVENTS_SHOWN = ("firing", "resolved")
MAX_LISTED = 15


@dataclass
class JobSections:
    budgets: list[dict] = field(default_factory=list)
    burn: dict[str, list[dict]] = field(default_factory=dict)
    change: dict | None = None
    retries: dict | None = None
    savings: dict | None = None
    drift: dict | None = None
    alerts: dict | None = None
    missing: dict[str, str] = field(default_factory=dict)  # section -> what to do

    def headline(self, name: str | None, budgets: list[BudgetConfig]) -> dict | None:
        """The budget the subject compares with: ``name``, else the first all-traffic budget with an amount."""
        if name is None:
            name = next((b.name for b in budgets if b.amount_usd is not None and not b.scope()), None)
        found = next((b for b in self.budgets if b["budget"] == name), None)
        if found is None or found.get("week_budget_usd") is None or found["days"] < 7:
            return None
        return {"name": name, "week_actual": found["week_actual_usd"], "week_budget": found["week_budget_usd"],
                "vs_budget": found["week_vs_budget"]}


def read_job_sections(warehouse: Warehouse, budgets: list[BudgetConfig], week, config: ReportsConfig) -> JobSections:
    sections = JobSections()
    window = [week.start, week.end]
    _budgets(warehouse, sections, budgets, week)
    sections.change = _change(warehouse, week, config.top_movers) if warehouse.has_view("cost_change") else None
    sections.savings = _savings(warehouse, window) if warehouse.has_view("savings") else None
    sections.retries = _retries(warehouse, window, config.top_movers) if warehouse.has_view("retry_inflation") else None
    sections.drift = _drift(warehouse, window) if warehouse.has_view("job_metrics") else None
    sections.alerts = _alerts(warehouse, window) if warehouse.has_view("alert_events") else {"events": [], "counts": {}}
    for section, job in (("change", "variance"), ("savings", "variance"), ("retries", "retries"), ("drift", "drift")):
        if getattr(sections, section) is None:
            sections.missing[section] = f"not computed for this week: run `inferledger jobs run {job}`"
    return sections


def _budgets(warehouse: Warehouse, sections: JobSections, budgets: list[BudgetConfig], week) -> None:
    if not budgets:
        sections.missing["budgets"] = "no budgets configured: add `[[budgets]]` tables to the configuration"
        return
    if not warehouse.has_view("budget_variance"):
        sections.missing["budgets"] = "not computed for this week: run `inferledger jobs run variance`"
        return
    names = [b.name for b in budgets]
    first = min(week.first_day, week.last_day.replace(day=1))
    rows = warehouse.rows("budget variance per budget and day (variance job), for the week and its month", """
        SELECT window_start::DATE AS day, * EXCLUDE (window_start, window_end)
        FROM budget_variance
        WHERE window_start >= ? AND window_start < ? AND budget IN (SELECT unnest(?::VARCHAR[]))
        ORDER BY budget, window_start""", [midnight(first), week.end, names])
    for budget in budgets:
        own = [r for r in rows if r["budget"] == budget.name]
        latest = own[-1] if own else None
        if latest is None or latest["day"] < week.first_day:
            continue
        in_week = [r for r in own if week.first_day <= r["day"] <= week.last_day]
        sections.budgets.append(_budget_summary(budget, latest, in_week))
        sections.burn[budget.name] = [r for r in own if r["period_start"] == latest["period_start"]]
    if not sections.budgets:
        sections.missing["budgets"] = "not computed for this week: run `inferledger jobs run variance`"


def _budget_summary(budget: BudgetConfig, latest: dict, in_week: list[dict]) -> dict:
    """The budget as of the week's last computed day, and the week itself against its share of the amount."""
    week_actual = sum(r["day_cost_usd"] or 0.0 for r in in_week)
    week_units = sum(r["day_units"] or 0 for r in in_week)
    week_budget = (sum(r["amount_usd"] / r["period_days"] for r in in_week)
                   if budget.amount_usd is not None and in_week else None)
    return {
        **latest, "scope": ", ".join(f"{k}={v}" for k, v in budget.scope().items()) or "all traffic",
        "days": len(in_week), "week_actual_usd": week_actual, "week_budget_usd": week_budget,
        "week_vs_budget": week_actual / week_budget - 1 if week_budget else None,
        "week_units": week_units, "week_unit_cost_usd": week_actual / week_units if week_units else None,
        "week_unit_cost_ratio": (week_actual / week_units / budget.unit_cost_usd
                                 if week_units and budget.unit_cost_usd else None),
    }


def _change(warehouse: Warehouse, week, limit: int) -> dict | None:
    """The decomposition of the window ending with the week's last day: exactly this ISO week vs the last."""
    rows = warehouse.rows("week-over-week change: volume, mix, rate and price effects (variance job)", """
        SELECT * EXCLUDE (window_end) FROM cost_change WHERE window_start = ?
        ORDER BY scope, service NULLS FIRST, model NULLS FIRST""", [midnight(week.last_day)])
    total = next((r for r in rows if r["scope"] == "all" and r["model"] is None), None)
    if total is None:
        return None
    by_change = lambda r: (-abs(r["change_usd"] or 0.0), str(r["model"] or r["service"]))  # noqa: E731
    models = sorted((r for r in rows if r["scope"] == "all" and r["model"] is not None), key=by_change)
    services = sorted((r for r in rows if r["scope"] == "service" and r["model"] is None), key=by_change)
    return {"total": total, "models": models[:limit], "services": services[:limit],
            "partial": total["current_to"] < midnight(week.last_day + timedelta(days=1))}


def _savings(warehouse: Warehouse, window: list) -> dict | None:
    total = warehouse.one("cache and batch savings of the week (variance job)", """
        SELECT count(*) AS days, sum(cached_requests)::BIGINT AS cached_requests,
               sum(cache_read_savings_usd) AS cache_read_savings_usd,
               sum(cache_write_premium_usd) AS cache_write_premium_usd, sum(cache_savings_usd) AS cache_savings_usd,
               sum(tier_requests)::BIGINT AS tier_requests, sum(batch_savings_usd) AS batch_savings_usd,
               sum(unpriced_requests)::BIGINT AS unpriced_requests, string_agg(DISTINCT reason, '; ') AS reason
        FROM savings WHERE scope = 'all' AND window_start >= ? AND window_start < ?""", window)
    if not total.get("days"):
        return None
    top = warehouse.rows("cache and batch savings of the week by service and model (variance job)", """
        SELECT service, model, sum(cache_savings_usd) AS cache_savings_usd, sum(batch_savings_usd) AS batch_savings_usd,
               sum(cached_requests)::BIGINT AS cached_requests, sum(tier_requests)::BIGINT AS tier_requests
        FROM savings WHERE scope = 'service_model' AND window_start >= ? AND window_start < ?
        GROUP BY ALL HAVING coalesce(sum(cache_savings_usd), 0) + coalesce(sum(batch_savings_usd), 0) <> 0
        ORDER BY coalesce(sum(cache_savings_usd), 0) + coalesce(sum(batch_savings_usd), 0) DESC, service, model
        LIMIT 5""", window)
    return {**total, "top": top}


def _retries(warehouse: Warehouse, window: list, limit: int) -> dict | None:
    """Retry inflation of the week: cost of attempts that did not produce the answer (retries job)."""
    sums = """sum(logical_requests)::BIGINT AS requests, sum(retried_requests)::BIGINT AS retried_requests,
               sum(wasted_cost_usd) AS wasted_cost_usd, sum(cost_final_attempts_usd) AS final_cost_usd,
               sum(cost_all_attempts_usd) / nullif(sum(cost_final_attempts_usd), 0) - 1 AS inflation"""
    total = warehouse.one("retry inflation of the week (retries job)", f"""
        SELECT count(*) AS rows, {sums} FROM retry_inflation WHERE window_start >= ? AND window_start < ?""", window)
    if not total.get("rows"):
        return None
    rows = warehouse.rows("retry inflation of the week by service, provider and model (retries job)", f"""
        SELECT service, provider, model, {sums}
        FROM retry_inflation WHERE window_start >= ? AND window_start < ?
        GROUP BY ALL HAVING sum(retried_requests) > 0
        ORDER BY wasted_cost_usd DESC NULLS LAST, service, provider, model LIMIT ?""", [*window, limit])
    return {"total": total, "rows": rows}


def _drift(warehouse: Warehouse, window: list) -> dict | None:
    """Each drift series' latest verdict in the week (drift job metrics); listed when not `none`."""
    rows = warehouse.rows("drift verdicts of the week: latest per test and series (drift job metrics)", """
        SELECT metric, labels, value, threshold, verdict, window_end
        FROM job_metrics
        WHERE job = 'drift' AND window_start >= ? AND window_start < ?
        QUALIFY row_number() OVER (PARTITION BY metric, labels ORDER BY window_end DESC) = 1
        ORDER BY metric, labels""", window)
    if not rows:
        return None
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"] or "none"] = counts.get(row["verdict"] or "none", 0) + 1
        row["labels"] = json.loads(row["labels"] or "{}")
    flagged = [r for r in rows if r["verdict"] in FLAGGED_DRIFT]
    flagged.sort(key=lambda r: (FLAGGED_DRIFT.index(r["verdict"]) * -1, r["metric"]))
    return {"checked": len(rows), "counts": counts, "flagged": flagged[:MAX_LISTED], "flagged_total": len(flagged)}


def _alerts(warehouse: Warehouse, window: list) -> dict:
    counts = {row["event"]: row["n"] for row in warehouse.rows("alert events of the week by kind", """
        SELECT event, count(*) AS n FROM alert_events WHERE event_time >= ? AND event_time < ? GROUP BY 1""", window)}
    events = warehouse.rows("alerts fired and resolved during the week", """
        SELECT event_time, rule, severity, event, metric, labels, value, threshold, verdict
        FROM alert_events WHERE event_time >= ? AND event_time < ? AND event IN ('firing', 'resolved')
        ORDER BY event_time LIMIT ?""", [*window, MAX_LISTED])
    for event in events:
        event["labels"] = json.loads(event["labels"] or "{}")
    return {"events": events, "counts": counts}
