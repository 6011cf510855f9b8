"""Page builders for the jobs' analyses: variance decomposition and savings, retry inflation, drift."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from inferledger.dashboard.charts import categories, chart, pivot
from inferledger.dashboard.costs import period_days

EFFECTS = ("volume", "mix", "rate", "price")


def variance_page(request) -> dict:
    """Week-over-week change of one day (the newest by default), its trend, and savings."""
    wh = request.warehouse
    days = period_days(request.params, default=30, choices=(7, 30, 90))
    if not wh.has_view("cost_change"):
        return {"has_data": False, "days": days}
    available = [row["day"] for row in wh.rows("variance days", """
        SELECT DISTINCT window_start::DATE AS day FROM cost_change ORDER BY day""")]
    if not available:
        return {"has_data": False, "days": days}
    day = _chosen_day(request.params.get("day"), available)
    start = datetime.combine(day, time(), UTC)
    rows = wh.rows("cost change of the day", """
        SELECT * FROM cost_change WHERE window_start = ?
        ORDER BY scope, abs(change_usd) DESC NULLS LAST, service NULLS FIRST, model NULLS FIRST""", [start])
    overall = next((r for r in rows if r["scope"] == "all" and r["model"] is None), None)
    trend = wh.rows("cost change trend", """
        SELECT window_start, change_usd, volume_effect_usd, mix_effect_usd, rate_effect_usd, price_effect_usd
        FROM cost_change WHERE scope = 'all' AND model IS NULL AND window_start > ? AND window_start <= ?
        ORDER BY window_start""", [start - timedelta(days=days), start])
    index = available.index(day)
    return {
        "has_data": True, "days": days, "day": day, "overall": overall,
        "earlier": available[index - 1] if index > 0 else None,
        "later": available[index + 1] if index + 1 < len(available) else None,
        "by_service": [r for r in rows if r["scope"] == "service" and r["model"] is None],
        "by_model": [r for r in rows if r["scope"] == "all" and r["model"] is not None],
        "effects_chart": _effects_chart(overall),
        "trend_chart": chart([r["window_start"] for r in trend], {
            "Change": [r["change_usd"] for r in trend],
            **{name.capitalize(): [r[f"{name}_effect_usd"] for r in trend] for name in EFFECTS}}, unit="usd"),
        "savings": savings(wh, start - timedelta(days=days - 1), start),
    }


def _chosen_day(text: str | None, available: list[date]) -> date:
    try:
        wanted = date.fromisoformat(text or "")
    except ValueError:
        return available[-1]
    return wanted if wanted in available else available[-1]


def _effects_chart(overall: dict | None) -> dict | None:
    if overall is None:
        return None
    values = [overall[f"{name}_effect_usd"] for name in EFFECTS] + [overall["change_usd"]]
    return categories([name.capitalize() for name in EFFECTS] + ["Total"], values, "usd", "Effect")


def savings(wh, first: datetime, last: datetime) -> dict:
    """Cache and batch savings over [first, last] days: the total and by service and model."""
    if not wh.has_view("savings"):
        return {"rows": [], "total": None}
    rows = wh.rows("savings", """
        SELECT scope, service, model, sum(cached_requests)::BIGINT AS cached_requests,
               sum(cache_read_tokens)::BIGINT AS cache_read_tokens,
               sum(cache_read_savings_usd) AS cache_read_savings_usd,
               sum(cache_write_premium_usd) AS cache_write_premium_usd, sum(cache_savings_usd) AS cache_savings_usd,
               sum(tier_requests)::BIGINT AS tier_requests, sum(batch_savings_usd) AS batch_savings_usd,
               sum(unpriced_requests)::BIGINT AS unpriced_requests, string_agg(DISTINCT reason, '; ') AS reason
        FROM savings WHERE window_start BETWEEN ? AND ? GROUP BY ALL
        ORDER BY scope, coalesce(sum(cache_savings_usd), 0) + coalesce(sum(batch_savings_usd), 0) DESC,
                 service, model""",
        [first, last])
    total = next((r for r in rows if r["scope"] == "all"), None)
    detail = [r for r in rows if r["scope"] != "all" and (r["cached_requests"] or r["tier_requests"])]
    return {"rows": detail, "total": total, "first": first.date(), "last": last.date()}


RETRY_SUMS = ("logical_requests", "attempts", "retried_requests", "failed_requests", "tokens_all_attempts",
              "tokens_final_attempts", "wasted_tokens", "unpriced_attempts", "retried_by_request_key",
              "retried_by_retry_link", "retried_by_sibling_spans", "retried_by_http_attempts")


def retries_page(request) -> dict:
    """Retry inflation over the period: totals, per day, and per provider, model and service."""
    wh = request.warehouse
    days = period_days(request.params, default=30, choices=(7, 30, 90))
    start = datetime.combine(request.now.date(), time(), UTC) - timedelta(days=days - 1)
    if not wh.has_view("retry_inflation"):
        return {"has_data": False, "days": days, "has_table": False}
    sums = ", ".join(f"sum({name})::BIGINT AS {name}" for name in RETRY_SUMS)
    rows = wh.rows("retry inflation by key", f"""
        SELECT provider, model, service, {sums}, sum(cost_all_attempts_usd) AS cost_all_attempts_usd,
               sum(cost_final_attempts_usd) AS cost_final_attempts_usd, sum(wasted_cost_usd) AS wasted_cost_usd
        FROM retry_inflation WHERE window_start >= ? GROUP BY ALL
        ORDER BY wasted_cost_usd DESC NULLS LAST, retried_requests DESC, provider, model, service""", [start])
    if not rows:
        return {"has_data": False, "days": days, "has_table": True}
    daily = wh.rows("retry inflation by day", """
        SELECT window_start, model, sum(wasted_cost_usd) AS wasted_cost_usd,
               sum(cost_all_attempts_usd) AS cost_all, sum(cost_final_attempts_usd) AS cost_final
        FROM retry_inflation WHERE window_start >= ? GROUP BY ALL ORDER BY window_start""", [start])
    for row in rows:
        _add_ratios(row)
    totals = _add_ratios({name: sum(row[name] or 0 for row in rows)
                          for name in (*RETRY_SUMS, "cost_all_attempts_usd", "cost_final_attempts_usd",
                                       "wasted_cost_usd")})
    return {"has_data": True, "days": days, "rows": rows, "totals": totals,
            "wasted_chart": chart(*pivot(daily, "window_start", "model", "wasted_cost_usd", skip_zero=True),
                                  unit="usd", kind="stacked"),
            "inflation_chart": _inflation_chart(daily)}


def _add_ratios(row: dict) -> dict:
    """Retry share and inflation (all attempts / final attempts - 1), as the retries job defines them."""
    row["retry_share"] = row["retried_requests"] / row["logical_requests"] if row["logical_requests"] else None
    final_tokens, final_cost = row["tokens_final_attempts"], row["cost_final_attempts_usd"]
    row["inflation_tokens"] = row["tokens_all_attempts"] / final_tokens - 1 if final_tokens else None
    row["inflation_cost"] = (row["cost_all_attempts_usd"] / final_cost - 1
                             if final_cost and row["cost_all_attempts_usd"] is not None else None)
    return row


def _inflation_chart(daily: list[dict]) -> dict:
    by_day: dict = {}
    for row in daily:
        totals = by_day.setdefault(row["window_start"], [0.0, 0.0])
        totals[0] += row["cost_all"] or 0.0
        totals[1] += row["cost_final"] or 0.0
    x = sorted(by_day)
    return chart(x, {"Retry inflation (cost)": [by_day[d][0] / by_day[d][1] - 1 if by_day[d][1] else None
                                                for d in x]}, unit="pct")


SEVERITY = {"drift": 0, "major": 0, "minor": 1, "none": 2, "insufficient": 3}
SEVERITY_SQL = ("CASE verdict WHEN 'drift' THEN 0 WHEN 'major' THEN 0 WHEN 'minor' THEN 1 WHEN 'none' THEN 2 "
                "ELSE 3 END")


def drift_page(request) -> dict:
    """The newest verdict of every (comparison, service, model, version, feature, test), worst first."""
    wh = request.warehouse
    days = period_days(request.params, default=30, choices=(7, 30, 90))
    if not wh.has_view("drift"):
        return {"has_data": False, "days": days}
    latest = wh.rows("latest drift verdicts", f"""
        SELECT * FROM drift
        QUALIFY row_number() OVER (PARTITION BY comparison, service, model, model_version, reference_version,
                                   feature, test ORDER BY window_start DESC, evaluated_at DESC) = 1
        ORDER BY {SEVERITY_SQL}, comparison DESC, service, model, model_version, feature, test""")
    if not latest:
        return {"has_data": False, "days": days}
    counts = {verdict: sum(1 for row in latest if row["verdict"] == verdict)
              for verdict in ("drift", "major", "minor", "none", "insufficient")}
    history = wh.rows("score and label drift by day", """
        SELECT window_start, service || ' · ' || coalesce(model, '?') || ' · ' || coalesce(model_version, '?')
               AS series, feature, effect
        FROM drift WHERE comparison = 'window' AND window_start >= ?
          AND ((feature = 'score' AND test = 'psi') OR feature = 'labels')
        ORDER BY window_start""", [request.now - timedelta(days=days)])
    return {"has_data": True, "days": days, "rows": latest, "counts": counts,
            "current_days": round((latest[0]["current_end"] - latest[0]["current_start"]).total_seconds() / 86400),
            "evaluated_at": max(row["evaluated_at"] for row in latest),
            "score_chart": _drift_chart([r for r in history if r["feature"] == "score"], "number"),
            "label_chart": _drift_chart([r for r in history if r["feature"] == "labels"], "pct")}


def _drift_chart(rows: list[dict], unit: str) -> dict | None:
    if not rows:
        return None
    return chart(*pivot(rows, "window_start", "series", "effect", fill=None), unit=unit)
