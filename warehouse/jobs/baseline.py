"""A robust, weekday-aware baseline: which past periods are comparable, and the expected range.

Comparable periods of a period starting at ``t`` are those starting at ``t − k days``
(k = 1 … baseline_days) whose day is of the same *day class*: Monday to Friday, or
Saturday and Sunday. Same-weekday-only would leave 4 samples in 28 days, too few
for a median; the weekday/weekend split keeps the weekly pattern that dominates
cost (20 weekday and 8 weekend samples in 28 days). An hourly period is compared
with the same hour of comparable days, a day-to-date period with the same hours
(midnight to the same hour) of comparable days.

expected = median(x); spread = max(1.4826 · MAD, min_spread_ratio · expected),
MAD = median(|x − expected|) (1.4826 · MAD estimates the standard deviation of
normal data, and unlike it ignores the outliers the baseline may contain);
range = [max(0, expected − k · spread), expected + k · spread], k = threshold_mads.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Range:
    expected: float
    low: float
    high: float
    mad: float
    samples: int


def day_class(moment: datetime) -> str:
    return "weekend" if moment.weekday() >= 5 else "weekday"


def comparable_starts(start: datetime, baseline_days: int) -> list[datetime]:
    """Starts of the comparable past periods, newest first: same time of day, same day class.

    The caller drops those before a key's first record: a key cannot be compared with
    days it did not exist.
    """
    candidates = (start - timedelta(days=k) for k in range(1, baseline_days + 1))
    return [c for c in candidates if day_class(c) == day_class(start)]


def expected_range(samples: list[float], threshold_mads: float, min_spread_ratio: float) -> Range:
    expected = median(samples)
    mad = median(abs(x - expected) for x in samples)
    spread = max(MAD_TO_SIGMA * mad, min_spread_ratio * expected)
    return Range(expected, max(0.0, expected - threshold_mads * spread), expected + threshold_mads * spread, mad,
                 len(samples))


def verdict(observed: float, found: Range | None, min_history: int, partial: bool) -> tuple[str, str | None]:
    """(verdict, direction). A partial period can only be flagged high: its cost is still growing."""
    if found is None or found.samples < min_history:
        return "insufficient", None
    if observed > found.high:
        return "anomaly", "high"
    if observed < found.low and not partial:
        return "anomaly", "low"
    return "ok", None
