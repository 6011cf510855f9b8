"""Budget variance for one budget and one evaluation time: spend to date, burn rate, forecast, unit cost.

Pure arithmetic over a budget's daily series (spend, unpriced records, units per
UTC day); ``warehouse.jobs.variance`` builds the series from the warehouse. The
formulas are in warehouse/jobs/README.md ("Budget variance").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from warehouse.jobs.config import BudgetConfig
from warehouse.jobs.history import midnight

DAY = timedelta(days=1)
RUN_RATE_DAYS = 28  # complete days the run rate is the mean of
SEASONAL_MIN_DAYS = 14  # weekday seasonality once two of each weekday are known


@dataclass
class DailySeries:
    """A budget's figures per UTC day (days without records are absent: zero)."""

    spend: dict[date, float] = field(default_factory=dict)
    unpriced: dict[date, int] = field(default_factory=dict)
    units: dict[date, int] = field(default_factory=dict)
    seen: set[date] = field(default_factory=set)  # days with any record in the budget's scope


@dataclass(frozen=True)
class Forecast:
    run_rate: float | None  # USD per day
    method: str  # seasonal | flat | burn_rate | none
    history_days: int
    value: float


def period_bounds(period: str, day: date) -> tuple[date, date]:
    """[start, end) of the calendar month or ISO week (Monday first) containing ``day``."""
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def days_between(start: datetime, end: datetime) -> float:
    return (end - start) / DAY


def run_rate(series: DailySeries, evaluated_at: datetime) -> tuple[float | None, dict[int, float] | None, int]:
    """Mean daily spend over the last complete days (at most 28, from the scope's first record on).

    Returns (rate, weekday factors or None, number of history days). With at least
    14 history days each weekday's factor is its mean spend divided by the mean
    daily spend; with fewer, no seasonality.
    """
    last_complete = (evaluated_at - DAY).date()  # the newest day that ended at or before evaluated_at
    first_seen = min((d for d in series.seen if d <= last_complete), default=None)
    if first_seen is None:
        return None, None, 0
    first = max(first_seen, last_complete - timedelta(days=RUN_RATE_DAYS - 1))
    history = [first + timedelta(days=i) for i in range((last_complete - first).days + 1)]
    rate = sum(series.spend.get(d, 0.0) for d in history) / len(history)
    if len(history) < SEASONAL_MIN_DAYS or rate == 0:
        return rate, None, len(history)
    factors = {}
    for weekday in range(7):
        same = [series.spend.get(d, 0.0) for d in history if d.weekday() == weekday]
        factors[weekday] = sum(same) / len(same) / rate
    return rate, factors, len(history)


def forecast(series: DailySeries, actual: float, burn_rate: float | None, evaluated_at: datetime,
             period_end: date) -> Forecast:
    """Spend at period end: actual + each remaining (part of a) day × run rate × its weekday factor."""
    rate, factors, history_days = run_rate(series, evaluated_at)
    method = "seasonal" if factors else "flat"
    if rate is None:
        rate, method = burn_rate, "burn_rate" if burn_rate is not None else "none"
    remaining = _remaining_days(evaluated_at, midnight(period_end))
    if rate is None or not remaining:
        return Forecast(rate, method, history_days, actual)
    weights = sum(share * (factors[day.weekday()] if factors else 1.0) for day, share in remaining)
    return Forecast(rate, method, history_days, actual + rate * weights)


def _remaining_days(evaluated_at: datetime, period_end: datetime) -> list[tuple[date, float]]:
    """(day, share of it still to come) from ``evaluated_at`` to ``period_end``."""
    remaining, cursor = [], evaluated_at
    while cursor < period_end:
        next_midnight = midnight(cursor.date()) + DAY
        remaining.append((cursor.date(), days_between(cursor, min(next_midnight, period_end))))
        cursor = next_midnight
    return remaining


def evaluate(budget: BudgetConfig, series: DailySeries, day: date, evaluated_at: datetime) -> dict:
    """One ``budget_variance`` row: the budget's period to date as of ``evaluated_at`` (within ``day``)."""
    start, end = period_bounds(budget.period, day)
    to_date = [start + timedelta(days=i) for i in range((day - start).days + 1)]
    actual = sum(series.spend.get(d, 0.0) for d in to_date)
    units = sum(series.units.get(d, 0) for d in to_date)
    elapsed, length = days_between(midnight(start), evaluated_at), float((end - start).days)
    burn = actual / elapsed if elapsed > 0 else None
    projected = forecast(series, actual, burn, evaluated_at, end)
    amount = budget.amount_usd
    expected = amount * elapsed / length if amount is not None else None
    unit_cost = actual / units if units else None
    return {
        "budget": budget.name, "period": budget.period, "period_start": start, "period_end": end,
        "unit": budget.unit, "evaluated_at": evaluated_at, "elapsed_days": elapsed, "period_days": length,
        "amount_usd": amount, "actual_usd": actual,
        "unpriced_requests": sum(series.unpriced.get(d, 0) for d in to_date),
        "expected_to_date_usd": expected, "variance_usd": _minus(actual, expected),
        "variance_pct": _ratio(_minus(actual, expected), expected), "spent_pct": _ratio(actual, amount),
        "burn_rate_usd_per_day": burn, "run_rate_usd_per_day": projected.run_rate,
        "forecast_method": projected.method, "history_days": projected.history_days,
        "forecast_usd": projected.value, "forecast_pct": _ratio(projected.value, amount),
        "forecast_variance_usd": _minus(projected.value, amount),
        "units": units, "unit_cost_usd": unit_cost, "budget_unit_cost_usd": budget.unit_cost_usd,
        "unit_cost_ratio": _ratio(unit_cost, budget.unit_cost_usd),
        "day_cost_usd": series.spend.get(day, 0.0), "day_units": series.units.get(day, 0),
    }


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b
