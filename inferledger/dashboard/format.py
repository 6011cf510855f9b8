"""How the dashboard writes numbers: dollars, percentages, counts, times.

Registered as Jinja filters. ``None`` (no data, unpriced) prints as an en dash, never
as 0: an unknown cost is not a free one.
"""
from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

MISSING = "–"


def _usable(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) and math.isfinite(value)


def usd(value: Any, signed: bool = False) -> str:
    """``$1,234.56``; amounts under a dollar keep three significant digits (``$0.00412``)."""
    if not _usable(value):
        return MISSING
    sign = "-" if value < 0 else ("+" if signed and value > 0 else "")
    amount = abs(value)
    if amount == 0 or amount >= 1:
        text = f"{amount:,.2f}"
    elif amount >= 0.01:
        text = f"{amount:.3f}".rstrip("0") if amount < 0.1 else f"{amount:.2f}"
    else:
        text = f"{amount:.3g}" if amount >= 1e-6 else f"{amount:.2e}"
    return f"{sign}${text}"


def pct(value: Any, digits: int = 1, signed: bool = False) -> str:
    """A ratio as a percentage: 0.234 -> ``23.4%``."""
    if not _usable(value):
        return MISSING
    sign = "+" if signed and value > 0 else ""
    return f"{sign}{value * 100:,.{digits}f}%"


def count(value: Any) -> str:
    """Thousands separators; floats keep two decimals."""
    if not _usable(value):
        return MISSING
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def number(value: Any, digits: int = 3) -> str:
    """A statistic (PSI, score, p-value) with ``digits`` significant digits."""
    if not _usable(value):
        return MISSING
    return f"{value:.{digits}g}"


TIME_FORMATS = {"second": "%Y-%m-%d %H:%M:%S", "minute": "%Y-%m-%d %H:%M", "short": "%m-%d %H:%M"}


def when(value: Any, precision: str = "minute") -> str:
    """UTC timestamps as ``2026-11-03 14:05`` (``short``: ``11-03 14:05``); dates as ``2026-11-03``."""
    if isinstance(value, datetime):
        return value.strftime(TIME_FORMATS.get(precision, "%Y-%m-%d %H:%M"))
    if isinstance(value, date):
        return value.isoformat()
    return MISSING if value is None else str(value)


def labels(value: Any) -> str:
    """A metric's labels (JSON text, sorted keys) as ``key=value, key=value``."""
    if value in (None, "", "{}"):
        return "(all)"
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    if not isinstance(parsed, dict):
        return str(parsed)
    return ", ".join(f"{key}={item}" for key, item in sorted(parsed.items()) if item not in (None, "")) or "(all)"


def sign_class(value: Any) -> str:
    """CSS class for a signed change: spending more is ``up`` (bad), less is ``down``."""
    if not _usable(value) or value == 0:
        return ""
    return "up" if value > 0 else "down"


FILTERS = {"usd": usd, "pct": pct, "count": count, "number": number, "when": when, "labels": labels,
           "sign_class": sign_class}
