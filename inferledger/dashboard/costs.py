"""Page builders for spend: the cost overview (trend, budgets) and price coverage.

They read the rollup and budget tables only (a few rows per model and day, whatever
the traffic), never ``inferences``.
"""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from inferledger.dashboard.charts import chart, epoch, pivot

PERIODS = (1, 7, 30, 90)  # days; 1 = the last 24 hours by hour
DEFAULT_DAYS = 30
SOURCE_NAMES = (("reported", "reported_usd"), ("price book", "computed_usd"), ("capacity pool", "capacity_usd"))


def period_days(params: dict, default: int = DEFAULT_DAYS, choices: tuple[int, ...] = PERIODS) -> int:
    """``?days=`` when it is one of the offered periods, else the default."""
    text = params.get("days", "")
    return int(text) if text.isdigit() and int(text) in choices else default


def period_start(now: datetime, days: int) -> tuple[str, datetime]:
    """The rollup table and the first window of the period ending now."""
    if days == 1:
        return "rollup_hourly", now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    today = datetime.combine(now.date(), time(), UTC)
    return "rollup_daily", today - timedelta(days=days - 1)


def overview_page(request) -> dict:
    wh, now = request.warehouse, request.now
    days = period_days(request.params)
    table, start = period_start(now, days)
    context = {"days": days, "periods": PERIODS, "budgets": budget_status(wh, now)}
    if not wh.has_view(table):
        return {**context, "has_data": False, "has_table": False}
    rows = wh.rows("cost by key and window", f"""
        SELECT window_start, service, provider, model, sum(requests)::BIGINT AS requests, sum(errors)::BIGINT AS errors,
               sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
               sum(cost_usd) AS cost_usd,
               sum(unpriced_requests)::BIGINT AS unpriced_requests
        FROM {table} WHERE window_start >= ? GROUP BY ALL ORDER BY window_start""", [start])
    if not rows:
        return {**context, "has_data": False, "has_table": True}
    step = timedelta(hours=1) if days == 1 else timedelta(days=1)
    previous = wh.one("previous period", f"""
        SELECT sum(cost_usd) AS cost_usd, sum(requests)::BIGINT AS requests FROM {table}
        WHERE window_start >= ? AND window_start < ?""", [start - step * _windows(days), start])
    return {**context, "has_data": True, "totals": _totals(rows, previous),
            "by_model": _grouped(rows, ("provider", "model")), "by_service": _grouped(rows, ("service",)),
            "model_chart": chart(*pivot(rows, "window_start", "model", "cost_usd"), unit="usd", kind="stacked"),
            "service_chart": chart(*pivot(rows, "window_start", "service", "cost_usd"), unit="usd")}


def _windows(days: int) -> int:
    return 24 if days == 1 else days


def _totals(rows: list[dict], previous: dict) -> dict:
    cost = sum(row["cost_usd"] or 0.0 for row in rows)
    requests = sum(row["requests"] for row in rows)
    unpriced = sum(row["unpriced_requests"] for row in rows)
    before = previous.get("cost_usd")
    return {"cost_usd": cost, "requests": requests, "unpriced_requests": unpriced,
            "unpriced_share": unpriced / requests if requests else None,
            "cost_per_request": cost / (requests - unpriced) if requests > unpriced else None,
            "previous_cost_usd": before, "change_pct": (cost - before) / before if before else None}


def _grouped(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Rows summed by ``keys``, biggest cost first, with each key's share of the total."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        group = groups.setdefault(key, {**{k: row[k] for k in keys}, "requests": 0, "errors": 0, "input_tokens": 0,
                                        "output_tokens": 0, "cost_usd": None, "unpriced_requests": 0})
        for name in ("requests", "errors", "input_tokens", "output_tokens", "unpriced_requests"):
            group[name] += row[name] or 0
        if row["cost_usd"] is not None:  # a key with only unpriced records has no cost, not $0
            group["cost_usd"] = (group["cost_usd"] or 0.0) + row["cost_usd"]
    total = sum(group["cost_usd"] or 0.0 for group in groups.values())
    for group in groups.values():
        group["share"] = group["cost_usd"] / total if total and group["cost_usd"] is not None else None
    return sorted(groups.values(),
                  key=lambda g: (-(g["cost_usd"] or 0.0), -g["requests"], str(tuple(g[k] for k in keys))))


def budget_status(wh, now: datetime) -> list[dict]:
    """Each budget's newest evaluation, with the burn chart of its current period."""
    if not wh.has_view("budget_variance"):
        return []
    latest = wh.rows("latest budget rows", """
        SELECT * FROM budget_variance QUALIFY row_number() OVER (PARTITION BY budget ORDER BY window_start DESC) = 1
        ORDER BY forecast_pct DESC NULLS LAST, budget""")
    if not latest:
        return []
    history = wh.rows("budget burn", """
        SELECT b.budget, b.window_end, b.evaluated_at, b.actual_usd FROM budget_variance b
        JOIN (SELECT budget, max(period_start) AS period_start FROM budget_variance GROUP BY budget) p
          ON b.budget = p.budget AND b.period_start = p.period_start
        ORDER BY b.budget, b.window_start""")
    return [{**row, "period_last": row["period_end"] - timedelta(days=1),
             "chart": _burn_chart(row, [h for h in history if h["budget"] == row["budget"]])} for row in latest]


def _burn_chart(row: dict, history: list[dict]) -> dict | None:
    """Spend to date (at the end of each day), the straight way to the forecast, and the budget."""
    if row["amount_usd"] is None:
        return None
    start = datetime.combine(row["period_start"], time(), UTC)
    end = datetime.combine(row["period_end"], time(), UTC)
    points = [(start, 0.0)] + [(min(h["window_end"], h["evaluated_at"]), h["actual_usd"]) for h in history]
    last_moment, last_actual = points[-1]
    x = [moment for moment, _ in points] + ([end] if end > last_moment else [])
    actual = [value for _, value in points] + ([None] if end > last_moment else [])
    projection = [None] * (len(points) - 1) + [last_actual] + ([row["forecast_usd"]] if end > last_moment else [])
    return chart(x, {"Spend to date": actual, "Forecast": projection, "Budget": [row["amount_usd"]] * len(x)},
                 unit="usd", dashed=("Forecast", "Budget"), height=200,
                 markers=[{"x": epoch(last_moment), "label": "now"}] if end > last_moment else [])


def prices_page(request) -> dict:
    """Every provider/model seen in the period: requests, unpriced requests, the price entry that matches."""
    wh = request.warehouse
    days = period_days(request.params, default=30, choices=(7, 30, 90))
    _, start = period_start(request.now, days)
    context = {"days": days}
    if not wh.has_view("rollup_daily"):
        return {**context, "has_data": False}
    rows = wh.rows("price coverage", """
        SELECT provider, model, sum(requests)::BIGINT AS requests, sum(unpriced_requests)::BIGINT AS unpriced_requests,
               sum(unpriced_input_tokens)::BIGINT AS unpriced_input_tokens,
               sum(unpriced_output_tokens)::BIGINT AS unpriced_output_tokens, sum(cost_usd) AS cost_usd,
               sum(cost_reported_usd) AS reported_usd, sum(cost_computed_usd) AS computed_usd,
               sum(cost_capacity_usd) AS capacity_usd, max(window_start)::DATE AS last_seen
        FROM rollup_daily WHERE window_start >= ? GROUP BY ALL
        ORDER BY unpriced_requests DESC, requests DESC, provider, model""", [start])
    if not rows:
        return {**context, "has_data": False}
    matches = _price_entries(wh, request.site.price_book(), start)
    for row in rows:
        row["entry"], row["match_kind"] = matches.get((row["provider"], row["model"]), (None, "none"))
        row["unpriced_share"] = row["unpriced_requests"] / row["requests"] if row["requests"] else None
        row["sources"] = [name for name, key in SOURCE_NAMES if row[key]]
    requests = sum(row["requests"] for row in rows)
    unpriced = sum(row["unpriced_requests"] for row in rows)
    return {**context, "has_data": True, "rows": rows, "requests": requests, "unpriced_requests": unpriced,
            "unpriced_models": sum(1 for row in rows if row["unpriced_requests"]),
            "unpriced_share": unpriced / requests if requests else None}


def _price_entries(wh, book, start: datetime) -> dict[tuple, tuple[str | None, str]]:
    """The price book's match per (provider, model), via ``warehouse.pricing.price_coverage``.

    Fed one row per key from the rollup (its newest day), not the inference records.
    """
    from warehouse.pricing import price_coverage

    relation = f"""(SELECT provider, model AS response_model, model AS request_model, NULL::VARCHAR AS compute_pool,
        max(window_start) AS start_time, max(window_start) AS ingest_time FROM rollup_daily
        WHERE window_start >= TIMESTAMPTZ '{start.isoformat()}' GROUP BY provider, model)"""
    return {(c.provider, c.model): (c.entry_id, c.match_kind) for c in price_coverage(wh.con, book, relation)}
