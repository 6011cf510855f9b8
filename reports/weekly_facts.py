"""The weekly email's daily figures: from the daily rollups where they are complete, else from the records.

``weekly_facts`` (a temporary table) holds per UTC day, service, model, tenant and
provider: requests, cost, human-review cost and unpriced requests, with the
rollups' definitions (model = response model, else requested model; unpriced =
no cost; human review = ``cost_source = 'human_review'``).

A day is taken from ``rollup_daily`` when a successful ``rollups_daily`` run
covered it and finished after the day ended (so the day was complete when rolled
up). Other days (before the jobs ran, or a job that failed) are read from the
``inferences`` view, whose deduplication costs seconds per million records: with
the rollups in place the email needs no pass over the records at all.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from reports.sources import Warehouse

ROLLUP_JOB, ROLLUP_TABLE = "rollups_daily", "rollup_daily"


def load_facts(warehouse: Warehouse, start: datetime, end: datetime) -> dict:
    """Fill ``weekly_facts`` for the days of [start, end); returns how many days came from where."""
    days = [start.date() + timedelta(days=i) for i in range((end - start).days)]
    rolled = _rolled_up_days(warehouse, start, end)
    missing = [day for day in days if day not in rolled]
    parts, params = [], []
    if rolled:
        parts.append(f"""
        SELECT window_start::DATE AS day, service AS service_name, model, tenant, provider,
               sum(requests)::BIGINT AS requests, sum(cost_usd) AS cost_usd,
               sum(cost_human_review_usd) AS review_cost_usd, sum(unpriced_requests)::BIGINT AS unpriced_requests
        FROM {ROLLUP_TABLE}
        WHERE window_start >= ? AND window_start < ? AND window_start::DATE IN (SELECT unnest(?::DATE[]))
        GROUP BY ALL""")
        params += [start, end, sorted(rolled)]
    if missing:
        parts.append("""
        SELECT date AS day, service_name, coalesce(response_model, request_model) AS model, tenant, provider,
               count(*) AS requests, sum(cost_usd) AS cost_usd,
               coalesce(sum(cost_usd) FILTER (WHERE cost_source = 'human_review'), 0) AS review_cost_usd,
               count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_requests
        FROM inferences
        WHERE date BETWEEN ? AND ? AND date IN (SELECT unnest(?::DATE[])) AND start_time >= ? AND start_time < ?
        GROUP BY ALL""")
        params += [min(missing), max(missing), missing, start, end]
    source = f"{len(rolled)} days from {ROLLUP_TABLE}, {len(missing)} from the inferences view"
    warehouse.execute(f"daily requests and cost by service, model, tenant and provider ({source})",
                      "CREATE OR REPLACE TEMP TABLE weekly_facts AS" + "\nUNION ALL".join(parts), params)
    return {"rolled_up_days": len(rolled), "record_days": len(missing)}


def _rolled_up_days(warehouse: Warehouse, start: datetime, end: datetime) -> set[date]:
    if not (warehouse.has_view("job_runs") and warehouse.has_view(ROLLUP_TABLE)):
        return set()
    rows = warehouse.rows("days the daily rollups covered completely (job_runs)", """
        SELECT d::DATE AS day
        FROM range(?::TIMESTAMPTZ, ?::TIMESTAMPTZ, INTERVAL 1 DAY) AS days(d)
        WHERE EXISTS (SELECT 1 FROM job_runs r
                      WHERE r.job = ? AND r.status = 'ok' AND r.window_from <= d
                        AND r.window_to >= d + INTERVAL 1 DAY AND r.finished_at >= d + INTERVAL 1 DAY)""",
        [start, end, ROLLUP_JOB])
    return {row["day"] for row in rows}
