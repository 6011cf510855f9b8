"""``cost_change`` rows: the 7 days ending with a window against the 7 days before, decomposed.

For a complete day window d the current period is [d−6, d+1) and the previous one
[d−13, d−6). For the current, partial day both end at the last complete hour H:
[d−6, H) against [d−13, H−7 days), so a partial day is compared with the same
hours a week earlier. Only priced requests enter the decomposition (an unpriced
request has no cost to split); unpriced counts are reported beside it.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from warehouse.jobs.decompose import FACTORS, Cell, counts_tokens, decompose
from warehouse.jobs.runner import floor_time

WEEK = timedelta(days=7)


def periods(window: tuple[datetime, datetime], now: datetime) -> tuple[tuple[datetime, datetime], ...]:
    """(previous, current) periods compared for ``window``."""
    start, end = window
    cutoff = floor_time(min(end, max(now, start)), "hour")
    current = (start - timedelta(days=6), cutoff)
    return (current[0] - WEEK, current[1] - WEEK), current


def cost_change_rows(cube: pa.Table, windows: list[tuple[datetime, datetime]], now: datetime) -> list[dict]:
    rows = []
    for window in windows:
        previous, current = periods(window, now)
        figures = [_cells(cube, *period) for period in (previous, current)]
        services = sorted({service for cells, _ in figures for service, _ in cells}, key=lambda s: (s is None, s))
        keys = [("all", None, lambda key: True)] + [("service", s, lambda key, s=s: key[0] == s) for s in services]
        for scope, service, belongs in keys:
            before, after = (_by_model(cells, belongs) for cells, _ in figures)
            unpriced = [sum(n for key, n in counts.items() if belongs(key)) for _, counts in figures]
            rows.extend(_key_rows(window, previous, current, scope, service, before, after, unpriced))
    return rows


def _cells(cube: pa.Table, start: datetime, end: datetime) -> tuple[dict, dict]:
    """({(service, model): Cell}, {(service, model): unpriced requests}) over the hours in [start, end)."""
    hours = cube["hour"]
    part = cube.filter(pc.and_(pc.greater_equal(hours, pa.scalar(start, hours.type)),
                               pc.less(hours, pa.scalar(end, hours.type))))
    sums = part.group_by(["service", "model"], use_threads=False).aggregate(
        [("priced", "sum"), ("tokens", "sum"), ("cost_usd", "sum"), ("unpriced", "sum")])
    cells, unpriced = {}, {}
    for row in sums.to_pylist():
        key = (row["service"], row["model"])
        cells[key] = Cell(row["priced_sum"], row["tokens_sum"], row["cost_usd_sum"])
        unpriced[key] = row["unpriced_sum"]
    return cells, unpriced


def _by_model(cells: dict, belongs) -> dict[str, Cell]:
    merged: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for key, cell in cells.items():
        if belongs(key):
            totals = merged[key[1]]
            totals[0] += cell.requests
            totals[1] += cell.tokens
            totals[2] += cell.cost
    return {model: Cell(*totals) for model, totals in merged.items() if totals[0] > 0}


def _key_rows(window, previous, current, scope, service, before: dict[str, Cell], after: dict[str, Cell],
              unpriced: list[int]) -> list[dict]:
    effects = decompose(before, after)
    base = {"window_start": window[0], "window_end": window[1], "scope": scope, "service": service,
            "previous_from": previous[0], "previous_to": previous[1],
            "current_from": current[0], "current_to": current[1]}
    total = _figures(list(before.values()), list(after.values()))
    total.update({f"{f}_effect_usd": sum(e[f] for e in effects.values()) for f in FACTORS})
    rows = [{**base, "model": None, **total, "previous_unpriced": unpriced[0], "current_unpriced": unpriced[1]}]
    for model, parts in effects.items():
        cells = before.get(model, Cell()), after.get(model, Cell())
        quantity = "tokens" if counts_tokens(cells) else "requests"
        rows.append({**base, "model": model, **_figures([cells[0]], [cells[1]]), "quantity": quantity,
                     **{f"{f}_effect_usd": parts[f] for f in FACTORS}})
    return rows


def _figures(before: list[Cell], after: list[Cell]) -> dict:
    previous, current = sum(c.cost for c in before), sum(c.cost for c in after)
    return {
        "previous_requests": int(sum(c.requests for c in before)),
        "current_requests": int(sum(c.requests for c in after)),
        "previous_tokens": sum(c.tokens for c in before), "current_tokens": sum(c.tokens for c in after),
        "previous_cost_usd": previous, "current_cost_usd": current, "change_usd": current - previous,
        "change_pct": (current - previous) / previous if previous else None,
    }
