"""What the drift job compares, and the time slices it reads the warehouse in. Pure functions.

A *comparison* holds two *sides*, each a key (service, model, model version) over a
time range: the key's reference window against its current window, or a new model
version's first days against the same span just before, of the version it replaced.
All ranges of one compute call are cut into *slices* at every range boundary, so the
warehouse is read once, per (key, slice), and any side is a run of whole slices.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from warehouse.jobs.config import DriftConfig
from warehouse.jobs.runner import Window

Key = tuple[str | None, str | None, str | None]  # service, model, model_version
SAMPLED = ("score", "input_tokens", "output_tokens", "latency")  # numeric features with a KS test
COUNTED = ("records",) + SAMPLED  # presence counts per feature
HOUR_US = 3_600_000_000
HASH_MAX = 2**64 - 1  # DuckDB hash() is a UBIGINT
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Side:
    key: Key
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Comparison:
    window: Window
    evaluated_at: datetime
    kind: str  # "window" | "version"
    reference: Side
    current: Side


@dataclass(frozen=True)
class WindowPlan:
    """One job window evaluated at min(end, now): current = the current_days before, reference before that."""

    window: Window
    evaluated_at: datetime
    reference: tuple[datetime, datetime]
    current: tuple[datetime, datetime]

    @property
    def earliest(self) -> datetime:
        """Start of everything this window may read: its reference, or a version's matched span."""
        first = floor_hour(self.current[0])
        return min(self.reference[0], first - matched_length(first, self.evaluated_at))


@dataclass
class Presence:
    """Per key: its first record in the range read, and record counts per hour and feature (raw, for sizing)."""

    first_seen: datetime
    hours: np.ndarray  # hour index (epoch hours)
    counts: np.ndarray  # hours x len(COUNTED)

    def estimate(self, start: datetime, end: datetime, feature: str) -> float:
        """Records with ``feature`` in [start, end), partial hours pro rata (only sizes samples)."""
        start_us, end_us = _epoch_us(start), _epoch_us(end)
        hour_start = self.hours * HOUR_US
        overlap = np.clip(np.minimum(hour_start + HOUR_US, end_us) - np.maximum(hour_start, start_us), 0, None)
        return float((self.counts[:, COUNTED.index(feature)] * overlap / HOUR_US).sum())


class Slices:
    """Sorted boundary instants; slice i is [bounds[i], bounds[i + 1])."""

    def __init__(self, instants):
        self.bounds = sorted(set(instants))

    def __len__(self) -> int:
        return max(len(self.bounds) - 1, 0)

    @property
    def start(self) -> datetime:
        return self.bounds[0]

    @property
    def end(self) -> datetime:
        return self.bounds[-1]

    def of(self, side: Side) -> range:
        return range(self._position(side.start), self._position(side.end))

    def _position(self, instant: datetime) -> int:
        position = bisect_left(self.bounds, instant)
        if position == len(self.bounds) or self.bounds[position] != instant:
            raise ValueError(f"{instant} is not a slice boundary")
        return position


def plan_windows(windows: list[Window], now: datetime, settings: DriftConfig) -> list[WindowPlan]:
    """Windows that have started, each with its evaluation time and ranges."""
    current, reference = timedelta(days=settings.current_days), timedelta(days=settings.reference_days)
    plans = []
    for start, end in windows:
        if start >= now:
            continue
        evaluated = min(end, now)
        plans.append(WindowPlan((start, end), evaluated, (evaluated - current - reference, evaluated - current),
                                (evaluated - current, evaluated)))
    return plans


def window_comparisons(plans: list[WindowPlan], presence: dict[Key, Presence]) -> list[Comparison]:
    """Every key with records in a window's reference or current range, against itself."""
    comparisons = []
    for plan in plans:
        for key in sorted(presence, key=key_order):
            if presence[key].estimate(plan.reference[0], plan.current[1], "records") > 0:
                comparisons.append(Comparison(plan.window, plan.evaluated_at, "window", Side(key, *plan.reference),
                                              Side(key, *plan.current)))
    return comparisons


def new_versions(plans: list[WindowPlan], presence: dict[Key, Presence]) -> list[tuple[WindowPlan, Key]]:
    """(plan, key) for keys first seen inside the plan's current range (before any lookback check)."""
    return [(plan, key) for plan in plans for key in sorted(presence, key=key_order)
            if plan.current[0] <= presence[key].first_seen < plan.current[1]]


def version_candidates(found: list[tuple[WindowPlan, Key]], presence: dict[Key, Presence]) -> list[Comparison]:
    """For each new version, one comparison per older version of the same service and model.

    New version over [f, evaluated) against an older version over [f - L, f), with f
    the hour of the new version's first record and L = evaluated - f rounded up to whole
    hours: the same length of time, just before. Whole hours keep the slice count small
    however many versions start. ``choose_replaced`` keeps one per new version.
    """
    comparisons = []
    for plan, key in found:
        seen = presence[key].first_seen
        first = floor_hour(seen)
        span = matched_length(first, plan.evaluated_at)
        for other in sorted(presence, key=key_order):
            if other[:2] == key[:2] and other != key and presence[other].first_seen < seen:
                comparisons.append(Comparison(plan.window, plan.evaluated_at, "version",
                                              Side(other, first - span, first), Side(key, first, plan.evaluated_at)))
    return comparisons


def choose_replaced(candidates: list[Comparison], presence: dict[Key, Presence],
                    records: dict[Side, int]) -> list[Comparison]:
    """Per (window, new version): the version it replaced.

    That is the previous version by first-seen time among the older versions of the
    same service and model that served records in the matched span; equal first-seen
    times go to the one with more records there.
    """
    chosen: dict[tuple[Window, Key], Comparison] = {}
    for candidate in candidates:
        if records.get(candidate.reference, 0) == 0:
            continue
        slot = (candidate.window, candidate.current.key)
        if slot not in chosen or _rank(candidate, presence, records) > _rank(chosen[slot], presence, records):
            chosen[slot] = candidate
    return list(chosen.values())


def _rank(comparison: Comparison, presence: dict[Key, Presence], records: dict[Side, int]):
    key = comparison.reference.key
    return presence[key].first_seen, records[comparison.reference], key_order(key)


def slices_for(plans: list[WindowPlan], comparisons: list[Comparison]) -> Slices:
    instants = {instant for plan in plans for instant in (*plan.reference, *plan.current)}
    sides = [side for c in comparisons for side in (c.reference, c.current)]
    instants |= {instant for side in sides for instant in (side.start, side.end)}
    return Slices(instants)


def sample_thresholds(comparisons: list[Comparison], presence: dict[Key, Presence], slices: Slices,
                      sample_size: int) -> dict[tuple[Key, int], dict[str, int]]:
    """Hash thresholds per (key, slice) and feature for a uniform sample of about ``sample_size`` per side.

    A record is in the sample of a feature when DuckDB's hash(span_id) <= threshold.
    A side's rate is min(1, sample_size / its record count); a slice in several sides
    gets the smallest of their rates. Thresholds nest (a lower one keeps a subset), so a
    side is then read at the smallest threshold among its slices: a uniform sample of
    at most about ``sample_size`` records, never the whole of a large side.
    """
    thresholds: dict[tuple[Key, int], dict[str, int]] = {}
    for comparison in comparisons:
        for side in (comparison.reference, comparison.current):
            for feature in SAMPLED:
                count = presence[side.key].estimate(side.start, side.end, feature)
                if count == 0:
                    continue
                rate = 1.0 if count <= sample_size else sample_size / count
                threshold = min(HASH_MAX, int(rate * HASH_MAX))
                for index in slices.of(side):
                    slot = thresholds.setdefault((side.key, index), {})
                    slot[feature] = min(slot.get(feature, HASH_MAX), threshold)
    return thresholds


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def matched_length(first: datetime, evaluated_at: datetime) -> timedelta:
    """evaluated_at - first in whole hours, rounded up."""
    return timedelta(hours=-((first - evaluated_at) // timedelta(hours=1)))


def key_order(key: Key) -> tuple[str, str, str]:
    return tuple("" if part is None else part for part in key)


def _epoch_us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)
