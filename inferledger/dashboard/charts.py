"""Chart data for ``static/charts.js``: x values (unix seconds) and named series, as JSON.

The server shapes the data (pivoting, top-N, "other") so the browser only draws;
the same rows feed the table under each chart.
"""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any, Iterable

OTHER = "other"


def epoch(moment: datetime | date) -> int:
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(), timezone.utc)
    return int(moment.timestamp())


def chart(x: list, series: dict[str, list], unit: str, kind: str = "line", dashed: Iterable[str] = (),
          **extra: Any) -> dict:
    """A chart spec: ``series`` maps a label to values aligned with ``x`` (None = gap); ``dashed``
    labels are drawn dashed (forecasts, limits)."""
    dashed = set(dashed)
    return {"x": [epoch(value) for value in x], "unit": unit, "kind": kind,
            "series": [{"label": label, "values": values, "dash": label in dashed} for label, values in series.items()],
            **extra}


def pivot(rows: Iterable[dict], x_key: str, series_key: str, value_key: str, top: int = 8,
          fill: float | None = 0.0, skip_zero: bool = False) -> tuple[list, dict[str, list]]:
    """Long rows -> (sorted x values, {series: values}); beyond ``top`` series (by total) sum into "other".

    ``skip_zero`` leaves out series that are zero throughout (nothing to see on the chart)."""
    cells: dict[tuple, float] = {}
    totals: dict[str, float] = {}
    xs = set()
    for row in rows:
        name = row[series_key] if row[series_key] not in (None, "") else "(none)"
        xs.add(row[x_key])
        if row[value_key] is None:  # no figure (insufficient data): a gap, not a zero
            continue
        value = row[value_key]
        cells[(row[x_key], name)] = cells.get((row[x_key], name), 0.0) + value
        totals[name] = totals.get(name, 0.0) + value
    ranked = sorted((name for name in totals if totals[name] or not skip_zero), key=lambda name: (-totals[name], name))
    kept = set(ranked[:top]) if len(ranked) > top + 1 else set(ranked)
    x = sorted(xs)
    series: dict[str, list] = {name: [] for name in ranked if name in kept}
    if len(kept) < len(ranked):
        series[OTHER] = []
    for moment in x:
        other = 0.0
        for name in ranked:
            value = cells.get((moment, name))
            if name in kept:
                series[name].append(value if value is not None else fill)
            elif value is not None:
                other += value
        if OTHER in series:
            series[OTHER].append(other)
    return x, series


def categories(labels: list[str], values: list[float | None], unit: str, label: str) -> dict:
    """A bar chart over named categories (x = 0, 1, 2, ... with ``labels`` on the axis)."""
    return {"x": list(range(len(labels))), "categories": labels, "unit": unit, "kind": "bars", "time": False,
            "series": [{"label": label, "values": values}]}
