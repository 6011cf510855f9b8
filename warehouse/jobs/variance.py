"""The ``variance`` job, per UTC day: budget variance and forecast, week-over-week cost change, savings.

Tables (formulas in warehouse/jobs/README.md):

* ``budget_variance``: per budget and day, the period (month or ISO week) to date:
  actual spend, amount, variance, burn rate, period-end forecast, unit cost;
* ``cost_change``: the 7 days ending with the day against the 7 days before, split
  into volume, mix, rate and price effects, overall and per service (and per model);
* ``savings``: cache and batch savings, priced with the price book;
* ``variance_daily``: the job's own daily and hourly cost cubes, kept so a run
  reads the warehouse only for its own days (``warehouse.jobs.history``).

Metrics ``budget.forecast_pct``, ``budget.spent_pct`` and ``budget.unit_cost_ratio``
(labels {budget}; 1.0 = 100% of the budget) carry the figures an alert needs in
their detail.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from warehouse.jobs.budgets import DAY, RUN_RATE_DAYS, DailySeries, evaluate
from warehouse.jobs.config import BudgetConfig
from warehouse.jobs.cost_change import cost_change_rows
from warehouse.jobs.history import cached_history, has_records, midnight, refresh_history, wall_clock
from warehouse.jobs.results import with_window
from warehouse.jobs.runner import Job, JobContext, JobOutput, Metric, Window, connect
from warehouse.jobs.savings import NO_BOOK, price_groups, savings_rows
from warehouse.jobs.variance_cube import CUBE_FIELDS, conform, read_cubes

CACHE_TABLE = "variance_daily"
TIMESTAMP = pa.timestamp("us", tz="UTC")
F64, I64, STR = pa.float64(), pa.int64(), pa.string()
BUDGET_VARIANCE_SCHEMA = with_window([
    ("budget", STR), ("period", STR), ("period_start", pa.date32()), ("period_end", pa.date32()),
    ("scope", STR), ("unit", STR), ("evaluated_at", TIMESTAMP), ("elapsed_days", F64), ("period_days", F64),
    ("amount_usd", F64), ("actual_usd", F64), ("unpriced_requests", I64), ("expected_to_date_usd", F64),
    ("variance_usd", F64), ("variance_pct", F64), ("spent_pct", F64), ("burn_rate_usd_per_day", F64),
    ("run_rate_usd_per_day", F64), ("forecast_method", STR), ("history_days", I64), ("forecast_usd", F64),
    ("forecast_pct", F64), ("forecast_variance_usd", F64), ("units", I64), ("unit_cost_usd", F64),
    ("budget_unit_cost_usd", F64), ("unit_cost_ratio", F64), ("day_cost_usd", F64), ("day_units", I64),
])
COST_CHANGE_SCHEMA = with_window([
    ("scope", STR), ("service", STR), ("model", STR), ("quantity", STR),
    ("previous_from", TIMESTAMP), ("previous_to", TIMESTAMP), ("current_from", TIMESTAMP), ("current_to", TIMESTAMP),
    ("previous_requests", I64), ("current_requests", I64), ("previous_tokens", F64), ("current_tokens", F64),
    ("previous_cost_usd", F64), ("current_cost_usd", F64), ("change_usd", F64), ("change_pct", F64),
    ("volume_effect_usd", F64), ("mix_effect_usd", F64), ("rate_effect_usd", F64), ("price_effect_usd", F64),
    ("previous_unpriced", I64), ("current_unpriced", I64),
])
SAVINGS_SCHEMA = with_window([
    ("scope", STR), ("service", STR), ("model", STR), ("cached_requests", I64), ("cache_read_tokens", I64),
    ("cache_write_tokens", I64), ("cache_read_savings_usd", F64), ("cache_write_premium_usd", F64),
    ("cache_savings_usd", F64), ("tier_requests", I64), ("batch_savings_usd", F64), ("unpriced_requests", I64),
    ("reason", STR),
])
VARIANCE_DAILY_SCHEMA = with_window(CUBE_FIELDS + [("computed_at", TIMESTAMP)])


def compute_variance(context: JobContext, windows: list[Window]) -> JobOutput:
    """All of a chunk's days from one warehouse query plus the cached cubes of the days before."""
    _check_budget_names(context.budgets)
    computed_at = wall_clock()
    first, end = windows[0][0], windows[-1][1]
    chunk_days = [start.date() for start, _ in windows]
    con = connect(context)
    try:
        cached, stale = cached_history(con, context.data_dir, CACHE_TABLE, history_start(first), first, DAY)
        read_from = min([midnight(day) for day in stale] + [first])
        slot = context.book.slot_minutes if context.book is not None else 0
        to_read = [day for day in stale + chunk_days if has_records(context.data_dir, day)]
        fresh, groups = read_cubes(con, to_read, read_from, end, first.date() if context.book is not None else None,
                                   slot)
    finally:
        con.close()
    cache = _cache_rows(fresh, stale + chunk_days, computed_at)
    refresh_history(context.data_dir, CACHE_TABLE, "variance", VARIANCE_DAILY_SCHEMA,
                    [(midnight(day), midnight(day) + DAY) for day in stale], _rows_of_days(cache, stale))
    cube = pa.concat_tables([conform(cached), fresh])
    budget_rows, metrics = _budget_variance(cube, context, windows)
    savings = (savings_rows(price_groups(groups, context.book, slot), windows) if groups is not None
               else savings_rows([], windows, reason=NO_BOOK))
    return JobOutput(tables={
        "budget_variance": pa.Table.from_pylist(budget_rows, schema=BUDGET_VARIANCE_SCHEMA),
        "cost_change": pa.Table.from_pylist(_change_rows(cube, windows, context.now), schema=COST_CHANGE_SCHEMA),
        "savings": pa.Table.from_pylist(savings, schema=SAVINGS_SCHEMA),
        CACHE_TABLE: _rows_of_days(cache, chunk_days),
    }, metrics=metrics)


def history_start(first: datetime) -> datetime:
    """Earliest day a chunk starting at ``first`` needs: its month's start, the run rate's 28 days, last week."""
    return min(first.replace(day=1), first - timedelta(days=RUN_RATE_DAYS))


def _check_budget_names(budgets: tuple[BudgetConfig, ...]) -> None:
    repeated = [name for name, count in Counter(b.name for b in budgets).items() if count > 1]
    if repeated:
        raise ValueError(f"budget names must be unique (they label the results): {', '.join(repeated)}")


def _cache_rows(cube: pa.Table, days: list[date], computed_at: datetime) -> pa.Table:
    """``variance_daily`` rows: the cube rows plus one marker row per day read (so empty days are known)."""
    markers = conform(pa.table({"kind": pa.array(["day"] * len(days), pa.string()),
                                "day": pa.array(days, pa.date32())}))
    rows = pa.concat_tables([cube, markers])
    starts = pc.cast(pc.cast(rows["day"], pa.timestamp("us")), TIMESTAMP)
    rows = rows.append_column("window_start", starts)
    rows = rows.append_column("window_end", pc.add(starts, pa.scalar(DAY, pa.duration("us"))))
    rows = rows.append_column("computed_at", pa.array([computed_at] * rows.num_rows, TIMESTAMP))
    return rows.select(VARIANCE_DAILY_SCHEMA.names).cast(VARIANCE_DAILY_SCHEMA)


def _rows_of_days(rows: pa.Table, days: list[date]) -> pa.Table:
    return rows.filter(pc.is_in(rows["day"], value_set=pa.array(days, pa.date32())))


def _budget_variance(cube: pa.Table, context: JobContext, windows: list[Window]) -> tuple[list[dict], list[Metric]]:
    budget_cube = cube.filter(pc.equal(cube["kind"], "budget"))
    rows, metrics = [], []
    for budget in context.budgets:
        series = _series(budget_cube, budget)
        for window in windows:
            evaluated_at = max(window[0], min(window[1], context.now))
            row = evaluate(budget, series, window[0].date(), evaluated_at)
            row.update(window_start=window[0], window_end=window[1], scope=json.dumps(budget.scope(), sort_keys=True))
            rows.append(row)
            metrics.extend(_budget_metrics(window, row))
    return rows, metrics


def _series(cube: pa.Table, budget: BudgetConfig) -> DailySeries:
    """The budget's daily spend, unpriced records and units from the cube rows in its scope."""
    mask = pa.array([True] * cube.num_rows, pa.bool_())
    for column, value in budget.scope().items():
        mask = pc.and_(mask, pc.fill_null(pc.equal(cube[column], value), False))
    sums = cube.filter(mask).group_by("day", use_threads=False).aggregate(
        [(c, "sum") for c in ("cost_usd", "unpriced", "requests", "decisions", "reviews")])
    series = DailySeries()
    for row in sums.to_pylist():
        day = row["day"]
        series.spend[day] = row["cost_usd_sum"]
        series.unpriced[day] = row["unpriced_sum"]
        series.units[day] = row["decisions_sum"] if budget.unit == "decision" else row["requests_sum"]
        if row["requests_sum"] or row["reviews_sum"]:
            series.seen.add(day)
    return series


def _budget_metrics(window: Window, row: dict) -> list[Metric]:
    labels = {"budget": row["budget"]}
    detail = {key: row[key] for key in ("amount_usd", "actual_usd", "forecast_usd", "expected_to_date_usd",
                                        "unpriced_requests", "forecast_method", "evaluated_at")}
    detail.update(period_start=row["period_start"].isoformat(), period_end=row["period_end"].isoformat())
    metrics = []
    if row["amount_usd"] is not None:
        for name, key in (("budget.forecast_pct", "forecast_pct"), ("budget.spent_pct", "spent_pct")):
            metrics.append(Metric(window, name, row[key], labels, _over(row[key]), 1.0, detail))
    if row["budget_unit_cost_usd"] is not None:
        unit_detail = {**detail, "unit": row["unit"], "units": row["units"], "unit_cost_usd": row["unit_cost_usd"],
                       "budget_unit_cost_usd": row["budget_unit_cost_usd"]}
        ratio = row["unit_cost_ratio"]
        metrics.append(Metric(window, "budget.unit_cost_ratio", ratio, labels,
                              "insufficient" if ratio is None else _over(ratio), 1.0, unit_detail))
    return metrics


def _over(ratio: float | None) -> str | None:
    return None if ratio is None else "over" if ratio > 1.0 else "ok"


def _change_rows(cube: pa.Table, windows: list[Window], now: datetime) -> list[dict]:
    return cost_change_rows(cube.filter(pc.equal(cube["kind"], "change")), windows, now)


VARIANCE_JOB = Job(
    name="variance",
    description="Budget variance and period-end forecast, week-over-week cost change by effect, cache and "
                "batch savings, per UTC day.",
    schedule="30 0 * * *",
    granularity="day",
    tables={"budget_variance": BUDGET_VARIANCE_SCHEMA, "cost_change": COST_CHANGE_SCHEMA,
            "savings": SAVINGS_SCHEMA, CACHE_TABLE: VARIANCE_DAILY_SCHEMA},
    compute=compute_variance,
)
