"""Showing figures in the unit people think in: ratios as percentages, costs in dollars."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

PERCENT_UNITS = ("ratio", "share")


def format_value(value: Any, unit: str = "statistic") -> str:
    """``1.125`` as ``112.5%`` for ratios and shares, ``$1,234.50`` for dollars, counts as integers."""
    if value is None:
        return "n/a"
    if not isinstance(value, (int, float)):
        return str(value)
    if unit in PERCENT_UNITS:
        return f"{value * 100:,.1f}%"
    if unit == "usd":
        return f"${value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"${value:.4g}"
    if unit in ("count", "flag") and float(value).is_integer():
        return f"{int(value):,}"
    if unit == "p_value":
        return f"{value:.2g}"
    return f"{value:,.4g}"


def format_change(change: float, measure: str, unit: str) -> str:
    """A change with its sign: ``+62.5%`` (relative) or ``+$3.10`` (absolute, in the metric's unit)."""
    if measure == "relative":
        return f"{change * 100:+,.1f}%"
    text = format_value(abs(change), unit)
    return ("-" if change < 0 else "+") + text


def format_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "n/a"


def format_labels(labels: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items())) or "(all)"
