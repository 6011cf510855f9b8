"""Metrics of the hourly rollups: how much of the spend is unpriced, and the spend per service.

An unpriced record has no cost (NULL, never 0), so its share of *spend* is not
known; counting records would rate a $0.0001 embedding like a $2 long-context
call. The share is therefore estimated: each unpriced record is valued at the
window's mean priced rate, per token when it reports tokens (input + output), per
record otherwise, and

    unpriced_share = estimated unpriced cost / (priced cost + estimated unpriced cost)

The rates are the window's, over all keys: an unknown model has no price of its
own to average. With nothing priced in the window there is no rate: the share is
1 when anything is unpriced (all spend is unknown), else 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from warehouse.jobs.runner import Metric, Window

_COUNTS = ["requests", "unpriced_requests", "unpriced_tokenless", "unpriced_input_tokens", "unpriced_output_tokens"]
_TOTALS = [*_COUNTS, "cost_usd", "priced_tokens", "priced_token_cost_usd"]


@dataclass(frozen=True)
class Totals:
    requests: int
    unpriced_requests: int
    unpriced_tokenless: int
    cost_usd: float | None
    priced_tokens: int | None
    priced_token_cost_usd: float | None
    unpriced_input_tokens: int
    unpriced_output_tokens: int

    @property
    def priced_requests(self) -> int:
        return self.requests - self.unpriced_requests


@dataclass(frozen=True)
class Rates:
    """The window's mean priced cost per token and per record (None: nothing to average)."""

    per_token: float | None
    per_record: float | None

    @classmethod
    def of(cls, totals: Totals) -> "Rates":
        per_token = (totals.priced_token_cost_usd or 0.0) / totals.priced_tokens if totals.priced_tokens else None
        per_record = (totals.cost_usd or 0.0) / totals.priced_requests if totals.priced_requests else None
        return cls(per_token, per_record)


def estimated_unpriced_usd(totals: Totals, rates: Rates) -> float | None:
    if rates.per_record is None:
        return None
    with_tokens = totals.unpriced_requests - totals.unpriced_tokenless
    tokens = totals.unpriced_input_tokens + totals.unpriced_output_tokens
    tokened = tokens * rates.per_token if rates.per_token is not None else with_tokens * rates.per_record
    return tokened + totals.unpriced_tokenless * rates.per_record


def unpriced_share(totals: Totals, rates: Rates) -> float:
    if totals.unpriced_requests == 0:
        return 0.0
    estimate = estimated_unpriced_usd(totals, rates)
    if estimate is None:
        return 1.0
    spend = (totals.cost_usd or 0.0) + estimate
    return estimate / spend if spend > 0 else 0.0


def rollup_metrics(rollup: pa.Table, windows: list[Window]) -> list[Metric]:
    """``pricing.unpriced_share`` ({} and per provider and model) and ``cost.total_usd`` per service."""
    overall = {row["window_start"]: row for row in _totals(rollup, [])}
    metrics = []
    for window in windows:
        totals = _as_totals(overall.get(window[0]))
        metrics.append(_share_metric(window, {}, totals, Rates.of(totals)))
    for row in _totals(rollup, ["provider", "model"]):
        window = _window_of(row, windows)
        rates = Rates.of(_as_totals(overall[row["window_start"]]))
        metrics.append(_share_metric(window, {"provider": row["provider"], "model": row["model"]},
                                     _as_totals(row), rates))
    for row in _totals(rollup, ["service"]):
        totals = _as_totals(row)
        metrics.append(Metric(_window_of(row, windows), "cost.total_usd", totals.cost_usd, {"service": row["service"]},
                              detail={"requests": totals.requests, "unpriced_requests": totals.unpriced_requests}))
    return metrics


def _share_metric(window: Window, labels: dict, totals: Totals, rates: Rates) -> Metric:
    estimate = estimated_unpriced_usd(totals, rates)
    return Metric(window, "pricing.unpriced_share", unpriced_share(totals, rates), labels, detail={
        "basis": "estimated share of spend", "requests": totals.requests,
        "unpriced_requests": totals.unpriced_requests, "priced_cost_usd": totals.cost_usd,
        "estimated_unpriced_usd": estimate, "usd_per_token": rates.per_token, "usd_per_record": rates.per_record})


def _totals(rollup: pa.Table, keys: list[str]) -> list[dict]:
    grouped = rollup.group_by(["window_start", *keys]).aggregate([(name, "sum") for name in _TOTALS])
    return grouped.rename_columns([name.removesuffix("_sum") for name in grouped.column_names]).to_pylist()


def _as_totals(row: dict | None) -> Totals:
    row = row or {}
    counts = {name: row.get(name) or 0 for name in _COUNTS}
    return Totals(**counts, cost_usd=row.get("cost_usd"), priced_tokens=row.get("priced_tokens"),
                  priced_token_cost_usd=row.get("priced_token_cost_usd"))


def _window_of(row: dict, windows: list[Window]) -> Window:
    return next(window for window in windows if window[0] == row["window_start"])
